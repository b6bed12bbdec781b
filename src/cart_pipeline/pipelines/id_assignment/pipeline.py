from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import assign_identifiers, plot_identifier_prefixes


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                assign_identifiers,
                inputs=["fine_codes", "rqvae_model", "quantiser_diagnostics", "params:modality"],
                outputs=["semantic_ids", "id_statistics"],
                name="assign_identifiers",
            ),
            node(
                plot_identifier_prefixes,
                inputs=[
                    "candidate_features",
                    "semantic_ids",
                    "params:id_assignment",
                    "params:modality",
                    "params:seed",
                ],
                outputs="id_prefix_plot@figure",
                name="plot_identifier_prefixes",
            ),
        ]
    )
    return per_modality(template, modalities, shared_parameters=["id_assignment"])
