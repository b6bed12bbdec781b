"""Project hooks."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from pathlib import Path

import torch
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from cart_pipeline.core.device import resolve_device
from cart_pipeline.core.errors import RunInterrupted

logger = logging.getLogger(__name__)

JOURNAL_FOLDER = Path("data/09_tracking/runs")  # one record per `kedro run` (RunJournalHook)
RESUMES_ENV = "CART_RESUMES"  # set by `kedro resume`: the session id of the run it completes


class TorchThreadsHook:
    """Caps torch's intra-op threads at `num_threads` (parameters.yml) for the whole run, and
    checks the `device` settings before any node runs.

    On a small machine torch's default (all cores, plus inter-op threads) oversubscribes the
    CPU as soon as media decoding threads run beside it.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        threads = context.params.get("num_threads")
        if threads:
            torch.set_num_threads(int(threads))
            logger.info("torch uses %d threads", int(threads))
        # an unavailable `device` (shared or a stage's own) stops the run before any node runs
        params = context.params
        for group in ("", *(k for k, v in params.items() if isinstance(v, dict) and "device" in v)):
            resolve_device(params[group]["device"] if group else params.get("device"))


class InterruptedRunsHook:
    """An interrupted run ends FAILED in MLflow; a killed one does not stay RUNNING forever.

    SIGINT and SIGTERM are turned into :class:`RunInterrupted` inside the run, so Kedro calls
    `on_pipeline_error` and kedro-mlflow ends the run FAILED (a KeyboardInterrupt would bypass
    that hook and MLflow's exit handler would mark the run FINISHED). Nothing runs on SIGKILL:
    instead each run tags its MLflow run with host and pid, and the next run on this host marks
    RUNNING runs whose process is gone as KILLED.
    """

    def __init__(self) -> None:
        self._previous: dict = {}
        self._tagged = False

    @staticmethod
    def _interrupt(signum, frame) -> None:
        RunInterrupted.received = signal.Signals(signum).name
        raise RunInterrupted(f"run interrupted by {RunInterrupted.received}")

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._tagged = False
        try:
            self._previous = {
                sig: signal.signal(sig, self._interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        except ValueError:  # not the main thread (e.g. a session driven from a worker thread)
            self._previous = {}
        self._mark_dead_runs_killed()

    @hook_impl
    def before_node_run(self) -> None:
        if self._tagged:
            return
        import mlflow

        if mlflow.active_run():  # kedro-mlflow opened it in its own before_pipeline_run
            mlflow.set_tags({"host": socket.gethostname(), "pid": str(os.getpid())})
            self._tagged = True

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._restore()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @staticmethod
    def _mark_dead_runs_killed() -> None:
        import mlflow
        from mlflow.entities import RunStatus

        client = mlflow.MlflowClient()
        experiments = [e.experiment_id for e in client.search_experiments()]
        if not experiments:
            return
        host = socket.gethostname()
        stale = client.search_runs(
            experiments, filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'"
        )
        for run in stale:
            pid = int(run.data.tags.get("pid", "0"))
            if pid and pid != os.getpid() and not process_alive(pid):
                client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
                logger.warning(
                    "MLflow run %s (pid %d) was killed mid-run; marked KILLED", run.info.run_id, pid
                )


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunJournalHook:
    """Writes, for every `kedro run`, which nodes it was asked to run and which finished.

    One JSON file per run under ``data/09_tracking/runs/<session id>.json``, rewritten
    atomically after every node, so even a SIGKILL leaves an exact record. `kedro resume`
    (:mod:`cart_pipeline.resume`) reads the newest one and runs precisely the nodes that did
    not finish, with the same parameters: the outputs of finished nodes are on disk, and every
    node downstream of an unfinished one is itself unfinished, so nothing stale is reused.
    """

    def __init__(self) -> None:
        self._path: Path | None = None
        self._entry: dict = {}
        self._unsaved: set[str] = set()

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project = Path(context.project_path)
        self._conf_source = str(getattr(context.config_loader, "conf_source", "") or "") or None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        session_id = run_params["run_id"]
        self._path = self._project / JOURNAL_FOLDER / f"{session_id}.json"
        self._entry = {
            "session_id": session_id,
            "status": "running",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "resumes": os.environ.get(RESUMES_ENV) or None,
            "env": run_params.get("env"),
            "conf_source": self._conf_source,
            "pipeline_names": list(run_params.get("pipeline_names") or []),
            "runtime_params": run_params.get("runtime_params") or {},
            "nodes": [node.name for node in pipeline.nodes],  # topological order
            "graph": {
                node.name: {"inputs": node.inputs, "outputs": node.outputs}
                for node in pipeline.nodes
            },
            # outputs that live only in memory: a resume must rerun their producers
            "ephemeral": sorted(
                name
                for node in pipeline.nodes
                for name in node.outputs
                if isinstance(catalog.get(name), (MemoryDataset, type(None)))
            ),
            "done": [],
            "running": None,
        }
        self._write()

    @hook_impl
    def before_node_run(self, node) -> None:
        self._entry["running"] = node.name
        self._unsaved = set(node.outputs)
        self._write()

    # Kedro calls after_node_run *before* it saves the node's outputs: a node is done only once
    # its last output is saved (a kill mid-save must leave it unfinished).
    @hook_impl
    def after_node_run(self, node) -> None:
        if not node.outputs:
            self._done(node)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node) -> None:
        self._unsaved.discard(dataset_name)
        if not self._unsaved and self._entry.get("running") == node.name:
            self._done(node)

    def _done(self, node) -> None:
        self._entry["done"].append(node.name)
        self._entry["running"] = None
        self._write()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._entry["status"] = "finished"
        self._write()

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        self._entry.update(status="failed", error=f"{type(error).__name__}: {error}"[:1000])
        self._write()

    def _write(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_name(self._path.name + ".partial")
        partial.write_text(json.dumps(self._entry, indent=1, default=str))
        os.replace(partial, self._path)
