"""Driving several tracked `kedro run`s from Python: the ablation and the seed runners.

Each run is a real `kedro run` subprocess (its own Kedro session, its own MLflow run); its
results are read back from the versioned metrics.json it saved, matched by the run's
`config.run_label` (and seed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

METRICS = Path("data/08_reporting/metrics.json")


def kedro(project: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """`kedro run ARGS` in ``project``; ``env`` adds to the environment."""
    command = [str(Path(sys.executable).parent / "kedro"), "run", *args]
    logger.info("$ %s%s", "".join(f"{k}={v} " for k, v in (env or {}).items()), " ".join(command))
    subprocess.run(
        command, cwd=project, check=True, env={**os.environ, "DO_NOT_TRACK": "1", **(env or {})}
    )


def saved_metrics(project: Path) -> list[dict]:
    """Every saved version of metrics.json, oldest first (versions are timestamps)."""
    versions = sorted((project / METRICS).glob(f"*/{METRICS.name}"))
    return [json.loads(v.read_text()) for v in versions]


def latest_by(project: Path, keys: list, key_of) -> dict:
    """The newest saved metrics for each of ``keys``, where ``key_of(metrics)`` names a run."""
    latest = {key_of(m): m for m in saved_metrics(project)}
    missing = [k for k in keys if k not in latest]
    if missing:
        raise FileNotFoundError(
            f"no saved metrics.json for {missing}; run them first (without --report-only)"
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
