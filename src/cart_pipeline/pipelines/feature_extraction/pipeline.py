from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import extract_candidate_features, extract_query_features, select_modality


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                select_modality,
                inputs=["ingested_candidates", "ingested_queries", "params:modality"],
                outputs=["candidates", "queries"],
                name="select_modality",
            ),
            node(
                extract_candidate_features,
                inputs=[
                    "candidates",
                    "params:feature_extraction",
                    "params:modality",
                    "params:dataset_root",
                    "params:device",
                ],
                outputs=["candidate_features", "feature_rejects"],
                name="extract_candidate_features",
            ),
            node(
                extract_query_features,
                inputs=["queries", "params:feature_extraction", "params:device"],
                outputs="query_features",
                name="extract_query_features",
            ),
        ]
    )
    return per_modality(
        template,
        modalities,
        shared_inputs={"ingested_candidates": "candidates", "ingested_queries": "queries"},
        shared_parameters=["feature_extraction"],
    )
