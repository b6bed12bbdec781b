"""Project hooks."""

from __future__ import annotations

import logging
import os
import signal
import socket

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



class RunInterrupted(Exception):  # noqa: N818 - it is what happened, not an error in the code
    """SIGINT or SIGTERM arrived during a `kedro run`."""


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
        raise RunInterrupted(f"run interrupted by {signal.Signals(signum).name}")

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._tagged = False
        try:
            self._previous = {sig: signal.signal(sig, self._interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
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
        stale = client.search_runs(experiments, filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'")
        for run in stale:
            pid = int(run.data.tags.get("pid", "0"))
            if pid and pid != os.getpid() and not _process_alive(pid):
                client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
                logger.warning("MLflow run %s (pid %d) was killed mid-run; marked KILLED", run.info.run_id, pid)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
