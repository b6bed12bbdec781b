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
SHARED_PARAMETERS = {"params:seed", "params:num_threads", "params:dataset_root", "params:device"}

# Kedro builds the pipelines before any hook sees the run's configuration, and
# `register_pipelines()` takes no arguments; so the command being run (cli.py: `kedro run`,
# `kedro resume`, `python -m cart_pipeline`) records its --env, --conf-source and --params here
# first, and the `modalities` list is read with them, as Kedro itself will read the parameters.
_RUN_CONFIG: dict[str, Any] = {}


def configure_run(
    env: str | None = None, conf_source: str | None = None, runtime_params: dict | None = None
) -> None:
    """The configuration of the command being run, for :func:`configured_modalities`."""
    _RUN_CONFIG.update(env=env, conf_source=conf_source, runtime_params=runtime_params or {})


def configured_modalities(conf_source: Path | None = None) -> list[str]:
    """The `modalities` list of the project's parameters: base, then the run's environment
    (`local` by default) and its runtime --params."""
    from kedro.config import OmegaConfigLoader

    source = conf_source or _RUN_CONFIG.get("conf_source") or _project_conf()
    if not Path(source).is_dir():
        return list(DEFAULT_MODALITIES)
    from cart_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        str(source),
        env=_RUN_CONFIG.get("env"),
        runtime_params=_RUN_CONFIG.get("runtime_params") or None,
        **CONFIG_LOADER_ARGS,
    )
    return list(loader["parameters"].get("modalities", DEFAULT_MODALITIES))


def _project_conf() -> Path:
    """The conf folder of the Kedro project around the current folder (as Kedro finds it)."""
    from kedro.framework.project import settings
    from kedro.utils import find_kedro_project

    project = find_kedro_project(Path.cwd()) or Path(__file__).resolve().parents[3]
    return Path(project) / settings.CONF_SOURCE


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
