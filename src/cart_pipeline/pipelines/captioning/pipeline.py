from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.feature_extraction.nodes import extract_query_features
from cart_pipeline.pipelines.modalities import per_modality

from .nodes import build_training_pairs, generate_pseudo_queries


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                generate_pseudo_queries,
                inputs=[
                    "candidates",
                    "queries",
                    "candidate_features",
                    "params:captioning",
                    "params:feature_extraction.text_encoder",
                    "params:modality",
                    "params:dataset_root",
                    "params:seed",
                ],
                outputs=["pseudo_queries", "caption_report"],
                name="generate_pseudo_queries",
            ),
            node(
                extract_query_features,
                inputs=["pseudo_queries", "params:feature_extraction", "params:device"],
                outputs="pseudo_query_features",
                name="encode_pseudo_queries",
            ),
            node(
                build_training_pairs,
                inputs=["queries", "pseudo_queries", "params:captioning"],
                outputs="training_pairs",
                name="build_training_pairs",
            ),
        ]
    )
    return per_modality(
        template,
        modalities,
        shared_parameters=["captioning", "feature_extraction", "feature_extraction.text_encoder"],
    )
