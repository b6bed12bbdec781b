from kedro.pipeline import Pipeline, node

from cart_pipeline.pipelines.modalities import per_modality

from .nodes import build_training_pairs, train_cart_decoder


def create_pipeline(modalities=("image", "audio"), **kwargs) -> Pipeline:
    template = Pipeline(
        [
            node(
                build_training_pairs,
                inputs=["queries", "pseudo_queries", "params:decoder_training", "params:seed"],
                outputs="training_pairs",
                name="build_training_pairs",
            ),
            node(
                train_cart_decoder,
                inputs=[
                    "training_pairs",
                    "semantic_ids",
                    "id_statistics",
                    "params:decoder_training",
                    "params:feature_extraction.text_encoder",
                    "params:modality",
                    "params:seed",
                ],
                outputs=["cart_decoder", "decoder_history"],
                name="train_cart_decoder",
            ),
        ]
    )
    return per_modality(template, modalities, shared_parameters=["decoder_training", "feature_extraction.text_encoder"])
