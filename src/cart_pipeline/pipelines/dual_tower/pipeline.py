from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import fit_dual_tower


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                fit_dual_tower,
                inputs=[
                    "training_pairs",
                    "query_features",
                    "pseudo_query_features",
                    "candidate_features",
                    "params:dual_tower",
                    "params:modality",
                    "params:seed",
                    "params:device",
                ],
                outputs="dual_tower",
                name="fit_dual_tower",
            ),
        ]
    )
    return per_modality(template, modalities, shared_parameters=["dual_tower"])
