from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import train_cart_decoder


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                train_cart_decoder,
                inputs=[
                    "training_pairs",
                    "semantic_ids",
                    "id_statistics",
                    "dual_tower",
                    "query_features",
                    "pseudo_query_features",
                    "candidate_features",
                    "params:decoder_training",
                    "params:feature_extraction.text_encoder",
                    "params:modality",
                    "params:seed",
                    "params:device",
                ],
                outputs=["cart_decoder", "decoder_history"],
                name="train_cart_decoder",
            ),
        ]
    )
    return per_modality(
        template,
        modalities,
        shared_parameters=["decoder_training", "feature_extraction.text_encoder"],
    )
