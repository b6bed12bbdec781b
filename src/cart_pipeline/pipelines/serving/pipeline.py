from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import package_search_index, register_served_model


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                package_search_index,
                inputs=[
                    "cart_decoder",
                    "candidates",
                    "queries",
                    "evaluation_metrics",
                    "dual_tower",
                    "candidate_features",
                    "training_pairs",
                    "query_features",
                    "pseudo_query_features",
                    "kmeans_centroids",
                    "rqvae_model",
                    "params:feature_extraction",
                    "params:feature_extraction.text_encoder",
                    "params:evaluation",
                    "params:device",
                    "params:modality",
                ],
                outputs="search_index",
                name="package_search_index",
            ),
            node(
                register_served_model,
                inputs=["search_index", "queries", "params:evaluation"],
                outputs="served_model",
                name="register_served_model",
            ),
        ]
    )
    shared = ["evaluation", "feature_extraction", "feature_extraction.text_encoder"]
    return per_modality(template, modalities, shared_parameters=shared)
