"""Per-modality instantiation of the stage pipelines.

Each modality is its own corpus with its own index (docs/architecture.md), so a stage is written once
as a template and instantiated under one namespace per modality: `image.semantic_ids`,
`audio.semantic_ids`, ... . Parameter groups stay shared (one `parameters_<stage>.yml`);
a group may hold `by_modality: {audio: {...}}` overrides, merged by :func:`for_modality`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kedro.pipeline import Pipeline, pipeline

DEFAULT_MODALITIES = ("image", "audio")
SHARED_PARAMETERS = {"params:seed", "params:num_threads", "params:dataset_root"}


def configured_modalities(conf_source: Path | None = None) -> list[str]:
    """The `modalities` list of the project's parameters (base + local)."""
    from kedro.config import OmegaConfigLoader

    conf_source = conf_source or Path(__file__).resolve().parents[3] / "conf"
    if not conf_source.is_dir():
        return list(DEFAULT_MODALITIES)
    from cart_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(conf_source), **CONFIG_LOADER_ARGS)
    return list(loader["parameters"].get("modalities", DEFAULT_MODALITIES))


def per_modality(
    template: Pipeline,
    modalities: Iterable[str],
    shared_inputs: Iterable[str] | dict[str, str] = (),
    shared_parameters: Iterable[str] = (),
) -> Pipeline:
    """One namespaced copy of `template` per modality.

    `shared_inputs` (e.g. the ingest tables; a dict renames them) and `shared_parameters`
    keep their names;
    every other dataset becomes `<modality>.<name>` and `params:modality` resolves to
    `params:<modality>.modality`.
    """
    # Kedro refuses to map a parameter the template does not use.
    parameters = (
        SHARED_PARAMETERS | {f"params:{p}" for p in shared_parameters}
    ) & template.inputs()
    inputs = dict(shared_inputs) if isinstance(shared_inputs, dict) else set(shared_inputs)
    return sum(
        (pipeline(template, namespace=m, inputs=inputs, parameters=parameters) for m in modalities),
        Pipeline([]),
    )


def for_modality(group: dict[str, Any], modality: str) -> dict[str, Any]:
    """A parameter group with its `by_modality[modality]` overrides applied."""
    merged = {k: v for k, v in group.items() if k != "by_modality"}
    merged.update((group.get("by_modality") or {}).get(modality) or {})
    return merged
