from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import cluster_candidates


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                cluster_candidates,
                inputs=[
                    "candidate_features",
                    "params:coarse_clustering",
                    "params:modality",
                    "params:seed",
                ],
                outputs=["kmeans_centroids", "coarse_assignments"],
                name="cluster_candidates",
            ),
        ]
    )
    return per_modality(template, modalities, shared_parameters=["coarse_clustering"])
