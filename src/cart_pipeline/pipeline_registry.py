"""Project pipelines: one per stage of docs/architecture.md, `__default__` runs them all."""

from __future__ import annotations

from importlib import import_module

from kedro.pipeline import Pipeline

from cart_pipeline.pipelines.modalities import configured_modalities

# In run order. A stage module exposes `create_pipeline(modalities)`.
STAGES = (
    "ingest",
    "feature_extraction",
    "captioning",
    "dual_tower",
    "coarse_clustering",
    "rqvae_quantization",
    "id_assignment",
    "decoder_training",
    "evaluation",
)


def register_pipelines() -> dict[str, Pipeline]:
    modalities = configured_modalities()
    pipelines: dict[str, Pipeline] = {}
    for stage in STAGES:
        try:
            module = import_module(f"cart_pipeline.pipelines.{stage}")
        except ModuleNotFoundError as error:
            if error.name != f"cart_pipeline.pipelines.{stage}":
                raise
            continue  # stage not built yet
        pipelines[stage] = module.create_pipeline(modalities=modalities)
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
