"""`kedro run --pipeline add_items`: not a stage of the full build (`__default__`), but an
update of the index the last build published. It reads that search index under a second
catalog name (`<modality>.indexed_search_index`, the same files) because a Kedro pipeline
cannot read and write one dataset; what it saves is a new version of `<modality>.search_index`,
so the previous index stays loadable and nothing of it changes until the new one is complete."""

from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.captioning.nodes import build_training_pairs
from cart_pipeline.pipelines.ingest.nodes import validate
from cart_pipeline.pipelines.modalities import per_modality
from cart_pipeline.pipelines.serving.nodes import register_served_model

from .nodes import (
    add_to_index,
    caption_new_items,
    encode_new_pairs,
    extract_new_features,
    select_new_items,
)


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    validation = Pipeline(
        [
            node(
                validate,
                inputs=["new_items_manifest", "params:ingest", "params:dataset_root"],
                outputs=["new_valid_manifest", "new_rejected_items"],
                name="validate_new_items",
            )
        ]
    )
    template = Pipeline(
        [
            node(
                select_new_items,
                inputs=[
                    "manifest",
                    "valid_manifest",
                    "indexed_search_index",
                    "params:ingest",
                    "params:modality",
                ],
                outputs=["new_candidates", "new_queries", "new_item_rejects"],
                name="select_new_items",
            ),  # fmt: skip
            node(
                extract_new_features,
                inputs=[
                    "new_candidates",
                    "valid_manifest",
                    "manifest_rejects",
                    "new_item_rejects",
                    "params:ingest",
                    "params:feature_extraction",
                    "params:modality",
                    "params:dataset_root",
                    "params:device",
                ],
                outputs=["new_candidate_features", "new_feature_rejects"],
                name="extract_new_features",
            ),
            node(
                caption_new_items,
                inputs=[
                    "indexed_search_index",
                    "new_candidates",
                    "new_queries",
                    "new_candidate_features",
                    "params:captioning",
                    "params:feature_extraction.text_encoder",
                    "params:modality",
                    "params:dataset_root",
                    "params:seed",
                ],
                outputs=["new_pseudo_queries", "new_caption_report"],
                name="caption_new_items",
            ),
            node(
                build_training_pairs,
                inputs=["new_queries", "new_pseudo_queries", "params:captioning"],
                outputs="new_training_pairs",
                name="build_new_training_pairs",
            ),
            node(
                encode_new_pairs,
                inputs=["new_training_pairs", "params:feature_extraction", "params:device"],
                outputs="new_pair_features",
                name="encode_new_training_pairs",
            ),
            node(
                add_to_index,
                inputs=[
                    "indexed_search_index",
                    "new_candidates",
                    "new_queries",
                    "new_candidate_features",
                    "new_training_pairs",
                    "new_pair_features",
                    "params:add_items",
                    "params:decoder_training",
                    "params:feature_extraction.text_encoder",
                    "params:modality",
                    "params:seed",
                    "params:device",
                ],
                outputs=["search_index", "add_items_report"],
                name="add_to_index",
            ),
            node(
                register_served_model,
                inputs=["search_index", "new_queries", "params:evaluation"],
                outputs="served_model",
                name="register_served_model",
            ),
        ]
    )
    shared = ["ingest", "feature_extraction", "feature_extraction.text_encoder", "captioning",
              "add_items", "decoder_training", "evaluation"]  # fmt: skip
    return validation + per_modality(
        template,
        modalities,
        shared_inputs={"manifest": "new_items_manifest", "valid_manifest": "new_valid_manifest",
                       "manifest_rejects": "new_rejected_items"},
        shared_parameters=shared,
    )  # fmt: skip
