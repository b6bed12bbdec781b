"""Project hooks."""

from __future__ import annotations

import logging

import torch
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class TorchThreadsHook:
    """Caps torch's intra-op threads at `num_threads` (parameters.yml) for the whole run.

    On a small machine torch's default (all cores, plus inter-op threads) oversubscribes the
    CPU as soon as media decoding threads run beside it.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        threads = context.params.get("num_threads")
        if threads:
            torch.set_num_threads(int(threads))
            logger.info("torch uses %d threads", int(threads))


class MlflowSaveVersionHook:
    """Tags the MLflow run of a `kedro run` with its Kedro save version.

    Versioned artifacts are saved under that timestamp, so `cart-search --run-id` can find the
    artifacts of any tracked run.
    """

    def __init__(self) -> None:
        self.save_version: str | None = None
        self.tagged = False

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        self.save_version, self.tagged = run_params.get("session_id"), False

    @hook_impl
    def before_node_run(self, node, catalog, inputs, is_async, run_id) -> None:
        import mlflow

        if not self.tagged and self.save_version and mlflow.active_run() is not None:
            mlflow.set_tag("kedro_save_version", self.save_version)
            self.tagged = True
