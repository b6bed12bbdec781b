"""Project pipelines: one per stage of docs/architecture.md, `__default__` runs them all."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from cart_pipeline.pipelines import (
    add_items,
    captioning,
    coarse_clustering,
    decoder_training,
    dual_tower,
    evaluation,
    feature_extraction,
    id_assignment,
    ingest,
    rqvae_quantization,
    serving,
)
from cart_pipeline.pipelines.modalities import configured_modalities

# Every stage in run order: the one list that the registry, the experiment runners
# (experiments/runs.py) and `kedro resume` read.
STAGES = {
    "ingest": ingest,
    "feature_extraction": feature_extraction,
    "captioning": captioning,
    "dual_tower": dual_tower,
    "coarse_clustering": coarse_clustering,
    "rqvae_quantization": rqvae_quantization,
    "id_assignment": id_assignment,
    "decoder_training": decoder_training,
    "evaluation": evaluation,
    "serving": serving,
}


def register_pipelines() -> dict[str, Pipeline]:
    modalities = configured_modalities()
    pipelines = {
        name: stage.create_pipeline(modalities=modalities) for name, stage in STAGES.items()
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    # an update of a published index, not a stage of the build
    pipelines["add_items"] = add_items.create_pipeline(modalities=modalities)
    return pipelines
