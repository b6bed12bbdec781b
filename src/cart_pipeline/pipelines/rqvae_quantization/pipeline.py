from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import quantise_fine


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                quantise_fine,
                inputs=[
                    "candidate_features",
                    "kmeans_centroids",
                    "coarse_assignments",
                    "params:rqvae_quantization",
                    "params:id_variant",
                    "params:modality",
                    "params:seed",
                    "params:device",
                ],
                outputs=["rqvae_model", "fine_codes", "quantiser_diagnostics"],
                name="quantise_fine",
            )
        ]
    )
    return per_modality(
        template, modalities, shared_parameters=["rqvae_quantization", "id_variant"]
    )
