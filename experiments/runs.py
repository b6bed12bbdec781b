"""What the experiment runners share: tracked `kedro run`s driven from Python, and their results.

Each run is a real `kedro run` subprocess (its own Kedro session, its own MLflow run) whose
parameter overrides go in a temporary `--config` file, so any value YAML can hold (lists of
captioners included) reaches the run exactly. Results are read back from the versioned
metrics.json each run saved, matched by the run's recorded configuration (`run_label`, seed,
validation fold). A collection is a Kedro environment (`local`: the default, Tux Paint; `emoji`:
conf/emoji), and each writes under its own `data_dir` (conf/<env>/globals.yml).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cart_pipeline.pipeline_registry import STAGES
from cart_pipeline.search import data_dir

logger = logging.getLogger(__name__)

DEFAULT_ENV = "local"  # Kedro's default run environment: the project's default collection
CONF = Path(__file__).parent / "conf"  # levers/<name>.yml and ablations/<name>.yml


def stages(first: str, last: str = "evaluation") -> str:
    """The project's stages from ``first`` to ``last`` in run order, as `--pipelines` takes them.

    A runner's runs stop at `evaluation`: they measure, and never publish (the `serving` stage),
    so what `cart-search` and the model registry serve stays what the last `kedro run` made.
    """
    order = list(STAGES)
    return ",".join(order[order.index(first) : order.index(last) + 1])


def overrides(kind: str, name: str) -> dict[str, Any]:
    """The parameter overrides of lever or ablation ``name`` (experiments/conf/<kind>/<name>.yml)."""
    path = CONF / kind / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF / kind).glob("*.yml"))
        raise SystemExit(f"no {kind[:-1]} {name!r} in {CONF / kind}; known: {', '.join(known)}")
    return yaml.safe_load(path.read_text()) or {}


def available(kind: str) -> list[str]:
    return sorted(p.stem for p in (CONF / kind).glob("*.yml"))


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts merged key by key, later layers winning (as Kedro merges --params)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def dotted(params: str) -> dict[str, Any]:
    """`a.b=1,c=x` (a `kedro run --params` string) as a nested dict, values read as YAML."""
    nested: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, _, value = item.partition("=")
        *parents, leaf = key.strip().split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


def kedro_run(
    project: Path,
    pipelines: str,
    params: Mapping[str, Any],
    env: str = DEFAULT_ENV,
    environ: Mapping[str, str] | None = None,
) -> None:
    """`kedro run --env ENV --pipelines PIPELINES` with ``params`` as its runtime parameters
    (``environ``: extra process environment variables)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as config:
        yaml.safe_dump({"run": {"params": dict(params)}}, config)
    command = [str(Path(sys.executable).parent / "kedro"), "run", "--env", env]
    command += ["--pipelines", pipelines, "--config", config.name]
    logger.info("$ %s  # params %s", " ".join(command), json.dumps(params, sort_keys=True))
    try:
        environ = {**os.environ, "DO_NOT_TRACK": "1", **(environ or {})}
        subprocess.run(command, cwd=project, check=True, env=environ)
    finally:
        Path(config.name).unlink()


def saved_metrics(project: Path, env: str = DEFAULT_ENV) -> list[dict]:
    """Every saved version of an environment's metrics.json, oldest first (versions are times)."""
    folder = data_dir(project, env) / "08_reporting" / "metrics.json"
    return [json.loads(v.read_text()) for v in sorted(folder.glob("*/metrics.json"))]


def latest_by(
    project: Path, keys: list[Hashable], key_of: Callable[[dict], Hashable], env: str = DEFAULT_ENV
) -> dict:
    """The newest saved metrics for each of ``keys``, where ``key_of(metrics)`` names a run."""
    latest = {key_of(m): m for m in saved_metrics(project, env)}
    missing = [k for k in keys if k not in latest]
    if missing:
        raise FileNotFoundError(
            f"no saved metrics.json for {missing} in the {env!r} environment; "
            "run them first (without --report-only)"
        )
    return {k: latest[k] for k in keys}


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"
