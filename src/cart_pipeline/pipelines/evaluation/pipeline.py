from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import (
    SYSTEMS,
    evaluate_modality,
    rank_with_cart,
    rank_with_dual_tower,
    rank_with_pair_lookup,
    rank_zero_shot,
    rerank_cart_with_dual_tower,
    rerank_cart_with_pair_lookup,
    summarise,
)
from .report import build_report


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                rank_with_cart,
                inputs=[
                    "cart_decoder",
                    "queries",
                    "params:evaluation",
                    "params:feature_extraction.text_encoder",
                    "params:device",
                ],
                outputs=["cart_rankings", "cart_timing"],
                name="rank_with_cart",
            ),
            node(
                rerank_cart_with_dual_tower,
                inputs=[
                    "cart_rankings",
                    "cart_timing",
                    "dual_tower",
                    "query_features",
                    "candidate_features",
                ],
                outputs=["cart_rerank_rankings", "cart_rerank_timing"],
                name="rerank_cart_with_dual_tower",
            ),
            node(
                rerank_cart_with_pair_lookup,
                inputs=[
                    "cart_rankings",
                    "cart_timing",
                    "pair_lookup_timing",
                    "training_pairs",
                    "query_features",
                    "pseudo_query_features",
                    "candidate_features",
                ],
                outputs=["cart_lookup_rerank_rankings", "cart_lookup_rerank_timing"],
                name="rerank_cart_with_pair_lookup",
            ),
            node(
                rank_with_dual_tower,
                inputs=[
                    "dual_tower",
                    "queries",
                    "query_features",
                    "candidate_features",
                    "params:evaluation",
                    "params:feature_extraction.text_encoder",
                ],
                outputs=["dual_tower_rankings", "dual_tower_timing"],
                name="rank_with_dual_tower",
            ),
            node(
                rank_zero_shot,
                inputs=[
                    "queries",
                    "candidate_features",
                    "params:feature_extraction",
                    "params:evaluation",
                    "params:modality",
                    "params:device",
                ],
                outputs=["zero_shot_rankings", "zero_shot_timing"],
                name="rank_zero_shot",
            ),
            node(
                rank_with_pair_lookup,
                inputs=[
                    "training_pairs",
                    "queries",
                    "query_features",
                    "pseudo_query_features",
                    "candidate_features",
                    "params:evaluation",
                ],
                outputs=["pair_lookup_rankings", "pair_lookup_timing"],
                name="rank_with_pair_lookup",
            ),
            node(
                evaluate_modality,
                inputs={
                    "queries": "queries",
                    "semantic_ids": "semantic_ids",
                    "params": "params:evaluation",
                    "modality": "params:modality",
                    "seed": "params:seed",
                    **{
                        f"{s}_{kind}": f"{s}_{kind}"
                        for s in SYSTEMS
                        for kind in ("rankings", "timing")
                    },
                },
                outputs="evaluation_metrics",
                name="evaluate_modality",
            ),
        ]
    )
    shared = ["evaluation", "feature_extraction", "feature_extraction.text_encoder"]
    summary = Pipeline(
        [
            node(
                summarise,
                inputs=[
                    "params:dataset_root",
                    "params:id_variant",
                    "params:decoder_training",
                    "params:captioning",
                    "params:evaluation",
                    "params:ingest",
                    "params:seed",
                    "params:run_label",
                    *[f"{m}.evaluation_metrics" for m in modalities],
                ],
                outputs=["metrics", "recall_plot@figure"],
                name="summarise_metrics",
            ),
            node(
                build_report,
                inputs={
                    "metrics": "metrics",
                    "candidates": "candidates",
                    "queries": "queries",
                    "dataset_root": "params:dataset_root",
                    "params": "params:evaluation",
                    "recall_plot": "recall_plot@png",
                    **{
                        f"{m}_{s}_rankings": f"{m}.{s}_rankings"
                        for m in modalities
                        for s in SYSTEMS
                    },
                    **{f"{m}_id_statistics": f"{m}.id_statistics" for m in modalities},
                    **{f"{m}_id_prefix_plot": f"{m}.id_prefix_plot@png" for m in modalities},
                },
                outputs="report",
                name="build_report",
            ),
        ]
    )
    return per_modality(template, modalities, shared_parameters=shared) + summary
