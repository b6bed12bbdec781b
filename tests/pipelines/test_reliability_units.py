"""Reliability without starting a process: the run lock, versions pinned to a run, atomic
saves, UTF-8 input, resume corrections, the search page's limits and the MLflow store."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, Version
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner

from cart_pipeline import run_lock
from cart_pipeline.core.errors import InputError
from cart_pipeline.core.textfile import decode_utf8
from cart_pipeline.hooks import RunJournalHook, pin_versions
from cart_pipeline.io import CSVDataset, ManifestDataset, TextDataset, write_atomically
from cart_pipeline.resume import ResumeError, journal, plan_resume

# -- one writer per project ------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder_and_a_released_lock_is_taken(tmp_path):
    assert run_lock.acquire(tmp_path)
    assert not run_lock.acquire(tmp_path)  # this process holds it already: reentrant
    record = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    run_lock.release(tmp_path)

    # another holder: an exclusive flock on the file by another open file description
    path = tmp_path / run_lock.LOCK_FILE
    path.write_text(
        json.dumps({"pid": 4242, "host": "other", "started": "then", "command": "kedro run"})
    )
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(run_lock.ProjectLocked) as refused:
            run_lock.acquire(tmp_path)
        message = str(refused.value)
        assert "pid 4242 on other" in message and "kedro run" in message and "\n" not in message
    finally:
        os.close(fd)  # the holder ends (however it ends, the kernel drops its flock)
    assert run_lock.acquire(tmp_path)  # taken over, nothing stale to clean
    run_lock.release(tmp_path)


# -- every load of a run reads that run's version --------------------------------------------


def test_a_run_loads_the_versions_it_wrote_and_nothing_newer_from_elsewhere(tmp_path):
    def table(path: str, versioned: bool = True) -> CSVDataset:
        version = Version(None, None) if versioned else None
        return CSVDataset(
            filepath=str(tmp_path / path), version=version, save_args={"index": False}
        )

    # an input an earlier run wrote
    first = tmp_path / "source.csv" / "2026-01-01T00.00.00.000Z" / "source.csv"
    first.parent.mkdir(parents=True)
    pd.DataFrame({"x": [1]}).to_csv(first, index=False)

    newer_by_another_run = {}

    def produce(source: pd.DataFrame) -> pd.DataFrame:
        # meanwhile another process saves newer versions of both datasets
        for name, value in (("source", 99), ("made", 99)):
            path = tmp_path / f"{name}.csv" / "2999-01-01T00.00.00.000Z" / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"x": [value]}).to_csv(path, index=False)
            newer_by_another_run[name] = path
        return source.assign(x=source.x + 1)

    def consume(made: pd.DataFrame) -> pd.DataFrame:
        return made

    catalog = DataCatalog(
        {"source": table("source.csv"), "made": table("made.csv"), "result": table("result.csv", False)}
    )  # fmt: skip
    pipeline = Pipeline([node(produce, "source", "made"), node(consume, "made", "result")])
    pinned = pin_versions(catalog, pipeline, "2026-06-01T00.00.00.000Z")
    assert pinned == {"made": "2026-06-01T00.00.00.000Z", "source": "2026-01-01T00.00.00.000Z"}
    SequentialRunner().run(pipeline, catalog)

    assert newer_by_another_run  # the other writer did write newer versions
    # the run read the input as it was at its start and its own output, not the newer ones
    assert pd.read_csv(tmp_path / "result.csv").x.tolist() == [2]


# -- atomic saves ------------------------------------------------------------------------------


def test_saves_write_beside_the_file_under_a_unique_name_and_leave_nothing_when_they_fail(tmp_path):
    report = TextDataset(filepath=str(tmp_path / "report.html"))
    seen = []
    real_open = report._fs.fs.open

    def spying_open(path, mode="rb", **kwargs):
        seen.append(str(path))
        return real_open(path, mode, **kwargs)

    report._fs.fs.open = spying_open
    report.save("<p>one</p>")
    report.save("<p>two</p>")
    assert (tmp_path / "report.html").read_text() == "<p>two</p>"
    partials = {p for p in seen if p.endswith(".partial")}
    assert len(partials) == 2  # a temporary name of its own for each save
    assert all(f".{os.getpid()}-" in p for p in partials)

    def full_disk(*args):
        raise OSError("No space left on device")

    real_replace = os.replace
    os.replace = full_disk
    try:
        with pytest.raises(OSError):
            write_atomically(tmp_path / "out.csv", "a,b\n")
    finally:
        os.replace = real_replace
    assert not (tmp_path / "out.csv").exists()
    write_atomically(tmp_path / "out.csv", "a,b\n")
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


# -- text from users ---------------------------------------------------------------------------


def test_a_manifest_that_is_not_utf8_names_its_line_and_data_row(tmp_path):
    rows = ["item_id,modality,media_path,text"] + [
        f"i{i},image,a{i}.png,A hen {i}." for i in range(40)
    ]
    raw = ("\n".join(rows) + "\n").encode()
    cut = raw.index(b"A hen 30.")
    (tmp_path / "manifest.csv").write_bytes(raw[:cut] + "Caf\xe9".encode("latin-1") + raw[cut:])
    manifest = ManifestDataset(filepath=str(tmp_path / "manifest.csv"), load_args={"dtype": str})
    with pytest.raises(
        Exception, match=r"manifest.csv is not UTF-8: line 32, data row 31, col"
    ) as error:
        manifest.load()
    assert isinstance(error.value.__cause__, InputError)  # the one line `kedro run` prints
    (tmp_path / "good.csv").write_bytes(b"\xef\xbb\xbf" + raw)  # a byte-order mark is fine
    good = ManifestDataset(filepath=str(tmp_path / "good.csv"), load_args={"dtype": str}).load()
    assert list(good.columns) == ["item_id", "modality", "media_path", "text"] and len(good) == 40
    assert decode_utf8(b"ok\n", "q.txt") == "ok\n"


def test_a_nul_byte_in_a_media_path_is_a_rejected_row_not_a_crash(tmp_path):
    from cart_pipeline.core.manifest import validate_manifest

    (tmp_path / "a.png").write_bytes(b"")
    manifest = pd.DataFrame(
        {"item_id": ["a", "b"], "modality": ["image", "image"],
         "media_path": ["a.png", "b\x00.png"], "text": ["A.", "B."]}
    )  # fmt: skip
    valid, rejected = validate_manifest(manifest, tmp_path, ["image"], check_media=False)
    assert valid.item_id.tolist() == ["a"]
    assert rejected.row.tolist() == [2] and "NUL byte" in rejected.reason[0]


# -- resume ------------------------------------------------------------------------------------


def _journal_entry(folder: Path, name: str, **fields) -> None:
    entry = {"session_id": name, "status": "failed", "host": "elsewhere", "pid": 1,
             "nodes": ["a", "b"], "done": ["a"], "ephemeral": [], "running": None,
             "graph": {"a": {"inputs": [], "outputs": ["x"]}, "b": {"inputs": ["x"], "outputs": []}},
             "runtime_params": {"decoder_training": {"epochs": 3, "lr": 0.1}}, **fields}  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps(entry))


def test_resume_takes_corrections_unless_they_change_the_split_and_names_a_corrupt_journal(
    tmp_path,
):
    folder = tmp_path / "data/09_tracking/runs"
    folder.mkdir(parents=True)
    _journal_entry(folder, "2026-01-01T00.00.00.000Z")
    plan = plan_resume(tmp_path, corrections={"decoder_training": {"lr": 0.001}})
    assert plan.remaining == ["b"]
    assert plan.runtime_params == {"decoder_training": {"epochs": 3, "lr": 0.001}}
    for key in ("ingest", "dataset_root", "modalities"):
        with pytest.raises(ResumeError, match=f"--params {key} would change the data split"):
            plan_resume(tmp_path, corrections={key: "x"})

    (folder / "2026-01-02T00.00.00.000Z.json").write_text('{"session_id": "trunc')
    with pytest.raises(
        ResumeError, match=r"the run journal .*2026-01-02T00.00.00.000Z.json cannot be read"
    ):
        journal(tmp_path)


# -- the search page's limits ------------------------------------------------------------------


class _Retriever:
    """Only what the page's handler reads when it refuses a request."""

    dataset_root = None
    items: dict = {}
    indexes: dict = {}


@pytest.fixture
def page(monkeypatch):
    from cart_pipeline import web

    monkeypatch.setattr(web, "CONNECTION_TIMEOUT_S", 1)
    server = web.BoundedServer(
        ("127.0.0.1", 0), web.make_handler(_Retriever(), web.LOOPBACK_HOSTS), max_connections=2
    )
    server.RequestHandlerClass.timeout = 1
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _get(port: int, path: str, host: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_page_answers_loopback_names_only_refuses_nul_and_bounds_its_connections(page):
    port = page.server_address[1]
    assert _get(port, "/media/x.png") == HTTPStatus.NOT_FOUND  # loopback: served (not an item)
    assert _get(port, "/media/x.png", host=f"localhost:{port}") == HTTPStatus.NOT_FOUND
    assert _get(port, "/", host="attacker.example") == HTTPStatus.BAD_REQUEST
    assert _get(port, "/media/a%00.png") == HTTPStatus.BAD_REQUEST

    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # hold both slots
    time.sleep(0.2)
    try:
        assert _get(port, "/") == HTTPStatus.SERVICE_UNAVAILABLE
    finally:
        for connection in idle:
            connection.close()
    deadline = time.monotonic() + 10  # idle connections are let go after the timeout
    while _get(port, "/media/x.png") != HTTPStatus.NOT_FOUND:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# -- the MLflow store follows the project ----------------------------------------------------


def test_a_copied_project_writes_its_artifacts_into_its_own_mlruns(tmp_path):
    import shutil

    import mlflow

    from cart_pipeline.pipelines.tracking import rebase_artifact_paths

    original = tmp_path / "original"
    original.mkdir()
    cwd = Path.cwd()
    os.chdir(original)  # MLflow resolves a local artifact root against the working folder
    try:
        mlflow.set_tracking_uri(f"sqlite:///{original}/mlflow.db")
        experiment = mlflow.create_experiment("cart_pipeline")
        with mlflow.start_run(experiment_id=experiment):
            mlflow.log_text("first", "first.txt")
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri(None)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)

    assert rebase_artifact_paths(copy / "mlflow.db", copy) >= 2  # the experiment and its run
    assert rebase_artifact_paths(copy / "mlflow.db", copy) == 0  # idempotent
    os.chdir(copy)
    try:
        mlflow.set_tracking_uri(f"sqlite:///{copy}/mlflow.db")
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_text("second", "second.txt")
        uri = run.info.artifact_uri
        read_back = mlflow.artifacts.load_text(f"{uri}/second.txt")
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri(None)
    assert read_back == "second" and str(copy) in uri
    assert not list((original / "mlruns").rglob("second.txt"))  # nothing written into the original
    assert list((copy / "mlruns").rglob("first.txt"))  # the copy's own earlier artifacts


def test_the_run_journal_times_each_node_once_its_outputs_are_saved(tmp_path):
    """`kedro resume` reads `done`; benchmarks read `node_seconds` (where a run's time goes)."""

    def slow(x):
        time.sleep(0.05)
        return x

    pipeline = Pipeline([node(slow, "a", "b", name="first"), node(slow, "b", "c", name="second")])
    hook = RunJournalHook()
    hook._project, hook._conf_source = tmp_path, None
    hook.before_pipeline_run({"run_id": "s1"}, pipeline, DataCatalog())
    for step in pipeline.nodes:
        hook.before_node_run(step)
        slow(None)
        hook.after_node_run(step)  # Kedro calls it before saving: not done yet
        assert (
            step.name
            not in json.loads((tmp_path / "data/09_tracking/runs/s1.json").read_text())["done"]
        )
        hook.after_dataset_saved(step.outputs[0], step)
    entry = json.loads((tmp_path / "data/09_tracking/runs/s1.json").read_text())
    assert entry["done"] == ["first", "second"]
    assert set(entry["node_seconds"]) == {"first", "second"}
    assert all(s >= 0.05 for s in entry["node_seconds"].values())  # each slept 0.05 s
