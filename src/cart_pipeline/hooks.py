"""Project hooks."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from pathlib import Path

import torch
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from cart_pipeline import run_lock
from cart_pipeline.core.config import ConfigError
from cart_pipeline.core.errors import RunInterrupted
from cart_pipeline.io.atomic import write_atomically
from cart_pipeline.pipelines.modalities import use_run_modalities
from cart_pipeline.pipelines.parameters import check_parameters
from cart_pipeline.pipelines.tracking import mark_model_training, rebase_artifact_paths

logger = logging.getLogger(__name__)

JOURNAL_FOLDER = Path("data/09_tracking/runs")  # one record per `kedro run` (RunJournalHook)
RESUMES_ENV = "CART_RESUMES"  # set by `kedro resume`: the session id of the run it completes


def run_parameters(context) -> dict:
    """The run's merged parameters (base, its environment, its --params): what Kedro's
    ``context.params`` holds, read without Kedro's type validation against the pipelines,
    which would build the pipelines before the run's modalities are known."""
    return context.config_loader["parameters"]


class ParametersHook:
    """Checks every parameter of the run before anything runs (`pipelines/parameters.py`):
    an unknown key, a bad value, an unavailable device or a missing dataset folder stops the
    run with one line. Then hands the run's modalities to the pipeline registry, which Kedro
    calls next."""

    @hook_impl
    def after_context_created(self, context) -> None:
        params = run_parameters(context)
        check_parameters(params)
        root = Path(params["dataset_root"])
        root = root if root.is_absolute() else Path(context.project_path) / root
        if not (root / "manifest.csv").is_file():
            raise ConfigError(
                f"dataset_root {params['dataset_root']!r} holds no manifest.csv ({root}): set "
                'dataset_root to your collection\'s folder (README, "Your own collection")'
            )
        if use_run_modalities(params["modalities"]):  # built for others: build them again
            from kedro.framework.project import PACKAGE_NAME, pipelines

            pipelines.configure(f"{PACKAGE_NAME}.pipeline_registry")


class RunScopeHook:
    """One writer per project, and within a run only that run's versions.

    Takes the project's run lock (`run_lock.py`; `kedro run` and `kedro resume` take it before
    the session starts, this covers runs started from Python), then pins every versioned
    dataset of the run: one this run writes loads the version it wrote, any other the newest
    version at the run's start. Kedro would otherwise load the newest version on disk at the
    moment of loading, which another process may have written meanwhile.
    """

    def __init__(self) -> None:
        self._acquired = False

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        self._acquired = run_lock.acquire(self._project)
        pin_versions(catalog, pipeline, run_params["run_id"])

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._acquired:
            run_lock.release(self._project)
            self._acquired = False


def pin_versions(catalog, pipeline, save_version: str) -> dict[str, str]:
    """Fix the load version of every versioned dataset of ``pipeline`` for the run that saves
    ``save_version``: its own for what it writes, the newest at this moment for the rest.
    -> dataset name -> pinned load version."""
    from kedro.io import AbstractVersionedDataset, Version
    from kedro.io.core import DatasetError

    produced, pinned = pipeline.all_outputs(), {}
    catalog_logger = logging.getLogger("kedro.io.data_catalog")
    quiet = logging.Filter()
    quiet.filter = lambda record: not record.getMessage().startswith("Replacing dataset")
    catalog_logger.addFilter(quiet)  # re-registering a dataset is what pinning is
    try:
        for name in sorted(pipeline.datasets()):
            dataset = catalog.get(name)
            # kedro-datasets' datasets are all "versionable": versioned only when configured so
            if not isinstance(dataset, AbstractVersionedDataset) or not _versioned(dataset):
                continue
            if name in produced:
                load = save_version
            else:
                try:
                    load = dataset.resolve_load_version()
                except DatasetError:  # no version yet: loading it says so, naming the path
                    continue
            catalog[name] = catalog.get(name, version=Version(load, save_version))
            pinned[name] = load
    finally:
        catalog_logger.removeFilter(quiet)
    logger.info("%d versioned datasets pinned to this run's versions", len(pinned))
    return pinned


def _versioned(dataset) -> bool:
    """Whether a versionable dataset is configured as versioned (Kedro's resolvers say None
    for a dataset that is not)."""
    return dataset.resolve_save_version() is not None


class TorchThreadsHook:
    """Caps torch's intra-op threads at `num_threads` (parameters.yml) for the whole run.

    On a small machine torch's default (all cores, plus inter-op threads) oversubscribes the
    CPU as soon as media decoding threads run beside it.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        threads = int(run_parameters(context)["num_threads"])
        torch.set_num_threads(threads)
        logger.info("torch uses %d threads", threads)


class RunNamesHook:
    """Names each MLflow run by what it is — collection, pipelines, seed, label — instead of
    `__default__`, so runs tell apart in the runs table, and marks the experiment as model
    training so the MLflow UI (3.x) opens on that table rather than the GenAI overview.
    Before the run starts, points the store's artifact paths at this project's `mlruns/`,
    so that a copied or moved project never writes into the folder it came from."""

    def __init__(self) -> None:
        self._name: str | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = run_parameters(context)
        project = Path(context.project_path)
        moved = rebase_artifact_paths(project / "mlflow.db", project)
        if moved:
            logger.info("mlflow.db: %d artifact paths moved to %s/mlruns", moved, project)

    @hook_impl
    def before_pipeline_run(self, run_params: dict) -> None:
        params, names = self._params, run_params.get("pipeline_names") or ["__default__"]
        stages = "all stages" if names == ["__default__"] else "+".join(names)
        collection = Path(str(params["dataset_root"])).name
        self._name = f"{collection} · {stages} · seed {params['seed']} · {params['run_label']}"
        self._apply()

    @hook_impl
    def before_node_run(self) -> None:
        self._apply()

    def _apply(self) -> None:
        import mlflow

        run = mlflow.active_run()  # kedro-mlflow opens it in its own before_pipeline_run
        if self._name is None or run is None:
            return
        mlflow.set_tag("mlflow.runName", self._name)
        mark_model_training(run.info.experiment_id)
        self._name = None


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
        self._started = 0.0

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
            "node_seconds": {},  # wall time of each finished node, outputs saved
        }
        self._write()

    @hook_impl
    def before_node_run(self, node) -> None:
        self._entry["running"] = node.name
        self._unsaved = set(node.outputs)
        self._started = time.perf_counter()
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
        self._entry["node_seconds"][node.name] = round(time.perf_counter() - self._started, 3)
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
        write_atomically(self._path, json.dumps(self._entry, indent=1, default=str))
