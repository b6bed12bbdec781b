"""Reliability, for real: `kedro run` subprocesses on a small slice, interrupted and fed bad input.

Each case of issue #14 that needs a whole run lives here: SIGINT and SIGKILL mid-stage and
what MLflow records, a kill in feature extraction and one in decoder training followed by
`kedro resume` (the result equals an uninterrupted run's, and metrics.json and `cart-search`
describe the same models), and bad manifests or an unwritable data folder ending in one short
message. The cases a unit or slice test covers are tested there: hostile manifest rows and
paths outside the dataset (tests/pipelines/ingest), bounded media decoding
(tests/core/test_encoders.py), override merging (tests/pipelines/test_config.py), top-k bounds
(tests/e2e/test_search_cli.py), atomic saves (tests/core/test_atomic_saves.py).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from cart_pipeline.resume import unfinished_nodes
from tests.e2e.conftest import FAST_PARAMS, JOURNAL, KEDRO, kill_at_node, quality, run, start
from tests.e2e.conftest import copy_project as make_project

pytestmark = pytest.mark.slow  # real `kedro run`s, killed and resumed

CART_SEARCH = str(Path(sys.executable).parent / "cart-search")


def copy_project(root: Path, dataset: Path | None = None) -> Path:
    """A project copy of its own (not the shared trained one): these runs fail on purpose."""
    return make_project(root, dataset, n_images=24, n_audio=18, n_videos=12)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("interrupted"))
    result = run([KEDRO, "run", "--pipelines", "ingest"], cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    return project


def mlflow_runs(project: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def status(project: Path, run_id: str) -> str:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    return client.get_run(run_id).info.status


def wait_until_running(project: Path, process: subprocess.Popen) -> str:
    """Return the MLflow run id once the run is RUNNING and tagged with the process's pid."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if (project / "mlflow.db").exists():
            for r in mlflow_runs(project):
                if r.data.tags.get("pid") == str(process.pid) and r.info.status == "RUNNING":
                    return r.info.run_id
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.5)
    process.kill()
    raise AssertionError("the run never showed up as RUNNING in MLflow")


def versions(path: Path) -> list[str]:
    return sorted(p.parent.name for p in path.glob(f"*/{path.name}"))


# The interrupted runs are whole builds: a single short stage can finish before the signal
# arrives when another process slows the poll (seen under pytest-xdist).
def test_sigint_ends_the_mlflow_run_failed_not_finished(project):
    process = start(project, "run", "--params", FAST_PARAMS)
    run_id = wait_until_running(project, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode != 0
    assert "interrupted by SIGINT" in stderr and "kedro resume" in stderr
    assert "Traceback" not in stderr
    assert status(project, run_id) == "FAILED"


def test_a_killed_run_is_marked_killed_by_the_next_run(project):
    process = start(project, "run", "--params", FAST_PARAMS)
    run_id = wait_until_running(project, process)
    process.kill()  # SIGKILL: nothing in the process can react
    process.wait(timeout=60)
    assert status(project, run_id) == "RUNNING"

    result = run([KEDRO, "run", "--pipelines", "ingest"], cwd=project)

    assert result.returncode == 0, result.stderr[-2000:]
    assert status(project, run_id) == "KILLED"


def test_killed_runs_resume_to_the_uninterrupted_result_and_serve_what_was_measured(project):
    run_all = ["run", "--params", FAST_PARAMS]
    first = run([KEDRO, *run_all], cwd=project)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics_path = project / "data/08_reporting/metrics.json"
    uninterrupted = json.loads(
        (metrics_path / versions(metrics_path)[-1] / "metrics.json").read_text()
    )

    # killed in feature extraction, then its resume killed in decoder training
    killed = kill_at_node(project, start(project, *run_all), "image.extract_candidate_features")
    assert killed["status"] == "running" and "image.train_cart_decoder" not in killed["done"]
    resumed_once = kill_at_node(project, start(project, "resume"), "image.train_cart_decoder")
    assert resumed_once["resumes"] == killed["session_id"]
    assert resumed_once["runtime_params"] == killed["runtime_params"]
    assert "image.extract_candidate_features" in resumed_once["done"]

    result = run([KEDRO, "resume"], cwd=project)

    assert result.returncode == 0, result.stderr[-3000:]
    last = json.loads(sorted((project / JOURNAL).glob("*.json"))[-1].read_text())
    assert last["status"] == "finished" and last["resumes"] == killed["session_id"]
    assert set(last["nodes"]) == unfinished_nodes(resumed_once)  # only what had not finished
    assert (
        "image.train_cart_decoder" in last["nodes"]
        and "image.extract_candidate_features" not in last["nodes"]
    )
    metrics = json.loads((metrics_path / versions(metrics_path)[-1] / "metrics.json").read_text())
    assert quality(metrics) == quality(uninterrupted), (
        "the resumed run must equal an uninterrupted one"
    )
    for modality in ("image", "audio", "video"):
        decoders = versions(project / f"data/06_models/{modality}/cart_decoder.pt")
        measured = metrics["models"][modality]["cart_decoder"]
        assert measured == decoders[-1], f"{modality}: metrics.json measured an older decoder"
        assert measured > killed["session_id"], (
            f"{modality}: a decoder from before the interruption"
        )
    search = run([CART_SEARCH, "a brown hen", "--verbose", "--project", str(project)], cwd=project)
    assert search.returncode == 0, search.stderr
    served = dict(
        pair.split()
        for pair in search.stderr.split("decoder versions: ")[1].splitlines()[0].split(", ")
    )
    assert served == {m: metrics["models"][m]["cart_decoder"] for m in ("image", "audio", "video")}
    assert not [r for r in mlflow_runs(project) if r.info.status == "RUNNING"]

    again = run([KEDRO, "resume"], cwd=project)
    assert again.returncode == 1 and "nothing to resume" in again.stderr


@pytest.mark.parametrize(
    "manifest, message",
    [
        (b"", "manifest.csv: the file is empty"),
        (b"item_id,modality,media_path,text\n", "no data rows"),
        (b"item_id,modality,media_path\na,image,x.jpg\n", "missing required column(s) ['text']"),
        (
            b"item_id,modality,media_path,text\na,image,missing.jpg,A hen.\n",
            "1 of 1 manifest rows rejected",
        ),
    ],
    ids=["zero-bytes", "header-only", "missing-column", "only-bad-rows"],
)
def test_a_bad_manifest_ends_with_one_short_message(tmp_path, manifest, message):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "manifest.csv").write_bytes(manifest)
    project = copy_project(tmp_path / "project", dataset)

    result = run([KEDRO, "run", "--pipelines", "ingest"], cwd=project)

    assert result.returncode == 1
    error, hint = result.stderr.strip().splitlines()[
        -2:
    ]  # before them: only MLflow creating its db
    assert error.startswith("Error: ") and message in error and "kedro resume" in hint
    assert "Traceback" not in result.stderr
    verbose = run([KEDRO, "run", "--pipelines", "ingest", "--verbose"], cwd=project)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_an_unwritable_data_folder_is_one_message_and_resume_finishes(tmp_path):
    project = copy_project(tmp_path / "project")
    (project / "data").mkdir()
    (project / "data" / "02_intermediate").write_text(
        ""
    )  # a file where a folder must go (we run as root)

    result = run([KEDRO, "run", "--pipelines", "ingest"], cwd=project)

    assert result.returncode == 1
    assert "cannot write" in result.stderr and "02_intermediate" in result.stderr
    assert "Traceback" not in result.stderr
    (project / "data" / "02_intermediate").unlink()
    resumed = run([KEDRO, "resume"], cwd=project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (project / "data/02_intermediate/candidates.parquet").is_file()


def test_an_env_with_a_modalities_override_runs_only_those_modalities(tmp_path):
    project = copy_project(tmp_path / "project")
    env = project / "conf" / "audio_only"
    env.mkdir()
    # an env replaces conf/local, so it names the dataset too
    shutil.copy(project / "conf" / "local" / "globals.yml", env / "globals.yml")
    (env / "parameters.yml").write_text("modalities: [audio]\n")

    result = run(
        [KEDRO, "run", "--env", "audio_only", "--pipelines", "ingest,feature_extraction"],
        cwd=project,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    journal = json.loads(sorted((project / JOURNAL).glob("*.json"))[-1].read_text())
    assert journal["env"] == "audio_only" and journal["status"] == "finished"
    assert {"audio.extract_candidate_features", "audio.extract_query_features"} <= set(
        journal["nodes"]
    )
    assert not [node for node in journal["nodes"] if node.startswith("image.")]


def test_an_unavailable_device_stops_the_run_before_any_node(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    project = copy_project(tmp_path / "project")

    result = run(
        [KEDRO, "run", "--pipelines", "ingest", "--params", "decoder_training.device=cuda"],
        cwd=project,
    )

    assert result.returncode == 1
    assert (
        "Error: decoder_training.device: device=cuda: torch sees no CUDA GPU" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert not (project / "data/02_intermediate/candidates.parquet").exists()
