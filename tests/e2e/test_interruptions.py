"""Interrupted runs, for real: a `kedro run` subprocess signalled mid-stage on a small slice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import KEDRO, make_slice, run


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Its own copy (not the shared trained one): these runs fail on purpose."""
    project = tmp_path_factory.mktemp("interrupted")
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", project / "conf" / "base")
    shutil.copytree(PROJECT_ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dataset = make_slice(project / "dataset", n_images=24, n_audio=8)
    (project / "conf" / "local").mkdir(parents=True)
    (project / "conf" / "local" / "globals.yml").write_text(f"dataset_root: {dataset}\n")
    result = run([KEDRO, "run", "--pipeline", "ingest"], cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    return project


def runs(project: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def start_and_wait_until_running(project: Path) -> tuple[subprocess.Popen, str]:
    """Start feature extraction; return once its MLflow run is RUNNING and tagged with its pid."""
    env = {**os.environ, "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen([KEDRO, "run", "--pipeline", "feature_extraction"], cwd=project, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if (project / "mlflow.db").exists():
            mine = [r for r in runs(project) if r.data.tags.get("pid") == str(process.pid) and r.info.status == "RUNNING"]
            if mine:
                return process, mine[0].info.run_id
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.5)
    process.kill()
    raise AssertionError("the run never showed up as RUNNING in MLflow")


def status(project: Path, run_id: str) -> str:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").get_run(run_id).info.status


def test_sigint_ends_the_mlflow_run_failed_not_finished(project):
    process, run_id = start_and_wait_until_running(project)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode != 0
    assert "interrupted by SIGINT" in stderr
    assert status(project, run_id) == "FAILED"


def test_a_killed_run_is_marked_killed_by_the_next_run(project):
    process, run_id = start_and_wait_until_running(project)
    process.kill()  # SIGKILL: nothing in the process can react
    process.wait(timeout=60)
    assert status(project, run_id) == "RUNNING"

    result = run([KEDRO, "run", "--pipeline", "ingest"], cwd=project)

    assert result.returncode == 0, result.stderr[-2000:]
    assert status(project, run_id) == "KILLED"
