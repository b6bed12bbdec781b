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

SHARED_PARAMETERS = {"params:seed", "params:num_threads", "params:dataset_root", "params:device"}

# The modalities of the run being set up. Kedro builds the pipelines (`register_pipelines()`,
# which takes no arguments) after it has loaded the run's configuration and called the
# `after_context_created` hooks, so `hooks.ParametersHook` records them here from the
# parameters Kedro itself loaded for this run (its --env, --conf-source and --params), once
# they passed `check_parameters`. Commands that build pipelines without a run (`kedro registry`)
# read the project's own configuration instead.
_run_modalities: list[str] | None = None
_built_for: list[str] | None = None  # what the last `configured_modalities()` answered


def use_run_modalities(modalities: list[str]) -> bool:
    """Record the run's modalities; True when pipelines were built for others already."""
    global _run_modalities
    _run_modalities = list(modalities)
    return _built_for is not None and _built_for != _run_modalities


def configured_modalities() -> list[str]:
    """The modalities of the run being set up, else of the project's conf (base + local)."""
    global _built_for
    _built_for = _run_modalities or _project_modalities()
    return list(_built_for)


def _project_modalities() -> list[str]:
    """`modalities` of conf/base, then conf/local, read as plain YAML: constructing another
    Kedro config loader here would re-bind OmegaConf's process-wide `globals` resolver to it,
    under the feet of the run's own loader."""
    import yaml
    from kedro.utils import find_kedro_project

    project = find_kedro_project(Path.cwd()) or Path(__file__).resolve().parents[3]
    modalities: list[str] = []
    for env in ("base", "local"):
        for path in sorted((Path(project) / "conf" / env).glob("parameters*.yml")):
            values = yaml.safe_load(path.read_text()) or {}
            modalities = list(values.get("modalities", modalities))
    return modalities


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
