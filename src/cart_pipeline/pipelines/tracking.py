"""MLflow logging from nodes (kedro-mlflow opens the run around every `kedro run`)."""

from __future__ import annotations

import math
from numbers import Number
from pathlib import Path
from typing import Any


def log_metrics(metrics: dict[str, Any], prefix: str = "", step: int | None = None) -> None:
    """Log the finite numeric entries of `metrics` to the active MLflow run, if there is one."""
    import mlflow

    if mlflow.active_run() is None:
        return
    numeric = {
        f"{prefix}{key}".replace("@", "_at_"): float(value)
        for key, value in metrics.items()
        if isinstance(value, Number) and not isinstance(value, bool) and math.isfinite(value)
    }
    if numeric:
        mlflow.log_metrics(numeric, step=step)


def epoch_logger(prefix: str):
    """An `on_epoch(epoch, metrics)` callback for the core training loops."""
    return lambda epoch, metrics: log_metrics(metrics, prefix=prefix, step=epoch)


# The MLflow UI (3.x) opens an experiment on its GenAI overview unless the experiment says
# it is model development; then it opens on the runs table.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def mark_model_training(experiment_id: str) -> None:
    """Tag the experiment as model training (idempotent)."""
    import mlflow

    client = mlflow.MlflowClient()
    key, value = EXPERIMENT_KIND
    if client.get_experiment(experiment_id).tags.get(key) != value:
        client.set_experiment_tag(experiment_id, key, value)


# Where the sqlite store keeps absolute artifact paths (MLflow resolves every local artifact
# location to an absolute path when it creates an experiment, a run or a model version).
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)


def rebase_artifact_paths(db: Path, project: Path) -> int:
    """Point the store's artifact paths at this project's ``mlruns/``.

    MLflow stores them absolute, so a copied or moved project (and its mlflow.db) would go on
    reading and writing the artifacts of the folder it came from. Every path of the form
    ``<root>/mlruns/...`` with another root is moved to this project's root; paths elsewhere
    (a remote store, a shared folder) are left alone. -> the number of values changed."""
    import sqlite3

    if not db.is_file():
        return 0
    here = str(project.resolve())
    changed = 0
    with sqlite3.connect(db) as connection:
        tables = {name for (name,) in connection.execute("select name from sqlite_master")}
        for table, column in ARTIFACT_COLUMNS:
            if table not in tables:
                continue
            for (value,) in connection.execute(f"select distinct {column} from {table}").fetchall():
                moved = _rebased(value, here)
                if moved != value:
                    cursor = connection.execute(
                        f"update {table} set {column} = ? where {column} = ?", (moved, value)
                    )
                    changed += cursor.rowcount
    return changed


def _rebased(value: str | None, root: str) -> str | None:
    if not value:
        return value
    scheme = "file://" if value.startswith("file://") else ""
    path = value.removeprefix(scheme)
    head, marker, tail = path.partition("/mlruns")
    if not marker or not head.startswith("/") or head == root or tail[:1] not in ("", "/"):
        return value
    return f"{scheme}{root}/mlruns{tail}"
