"""MLflow logging from nodes (kedro-mlflow opens the run around every `kedro run`)."""

from __future__ import annotations

import math
from numbers import Number
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
