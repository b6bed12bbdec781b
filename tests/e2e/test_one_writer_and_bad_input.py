"""Real `kedro run`s against what a hostile-but-realistic user does: two runs at once, a
misspelt or impossible parameter, a manifest in another encoding or with a NUL byte, a corrupt
run journal, a copied project. Each ends in one line that says what and why, and loses
nothing; a run that goes ahead gives exactly what it would have given alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import FAST_PARAMS, KEDRO, copy_project, quality, run

pytestmark = pytest.mark.slow  # real `kedro run`s

CART_SEARCH = str(Path(sys.executable).parent / "cart-search")
JOURNAL = Path("data/09_tracking/runs")


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The run's last stderr line, which must be its one `Error:` line (MLflow may log above)."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def outputs(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in (project / "data").glob("0[2-8]_*"))


def test_two_runs_at_once_one_refuses_in_one_line_and_the_other_equals_a_solo_run(
    trained_template, tmp_path
):
    solo_project, solo = trained_template
    assert solo.returncode == 0
    [solo_metrics] = sorted((solo_project / "data/08_reporting/metrics.json").glob("*/*.json"))
    project = copy_project(tmp_path / "project")

    command = [KEDRO, "run", "--params", FAST_PARAMS]
    both = [
        subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    finished = []
    for process in both:  # the refused one ends within seconds, so neither pipe fills up
        out, err = process.communicate(timeout=900)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))

    [ran] = [p for p, done in zip(both, finished, strict=True) if done.returncode == 0]
    [refused] = [done for done in finished if done.returncode != 0]
    refusal = one_error_line(refused)
    assert "another run is writing this project" in refusal and f"pid {ran.pid}" in refusal
    assert "kedro resume" not in refused.stderr  # nothing of the refused run to resume
    [metrics] = sorted((project / "data/08_reporting/metrics.json").glob("*/*.json"))
    assert quality(json.loads(metrics.read_text())) == quality(json.loads(solo_metrics.read_text()))


@pytest.mark.parametrize(
    "params, message",
    [
        ("decoder_training.epoch=5",
         "decoder_training has no parameter 'epoch' (did you mean 'epochs'?)"),
        ("decoder_training.epochs=abc", "decoder_training.epochs must be a whole number, got 'abc'"),
        ("decoder_training.n_heads=3",
         "decoder_training: d_model (256) must be divisible by n_heads (3)"),
        ("modalities=[]", "modalities is empty: list at least one of image, audio, video"),
        ("modalities=image", "modalities must be a list of strings, got 'image'"),
    ],
)  # fmt: skip
def test_a_bad_parameter_stops_the_run_before_anything_runs(tmp_path, params, message):
    project = copy_project(tmp_path / "project")
    result = run([KEDRO, "run", "--params", params], cwd=project)
    assert one_error_line(result) == f"Error: {message}"
    assert outputs(project) == [] and not list((project / JOURNAL).glob("*.json"))


def test_dataset_root_from_the_command_line_moves_the_manifest_with_the_media(tmp_path):
    project = copy_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(project / "dataset", elsewhere)  # conf/local still names the old folder
    result = run(
        [KEDRO, "run", "--pipelines", "ingest", "--params", f"dataset_root={elsewhere}"],
        cwd=project,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project / "data/02_intermediate/rejected_items.csv").read_text().count("\n") == 1
    missing = run([KEDRO, "run", "--pipelines", "ingest"], cwd=project)
    assert "holds no manifest.csv" in one_error_line(missing)


def test_a_manifest_in_another_encoding_or_with_a_nul_byte(tmp_path):
    project = copy_project(tmp_path / "project")
    manifest = project / "dataset" / "manifest.csv"
    lines = manifest.read_bytes().splitlines(keepends=True)
    original = b"".join(lines)
    lines[31] = lines[31].replace(b".,", "é.,".encode("latin-1"), 1)
    manifest.write_bytes(b"".join(lines))
    result = run([KEDRO, "run", "--pipelines", "ingest"], cwd=project)
    error = one_error_line(result)
    assert "manifest.csv is not UTF-8: line 32, data row 31" in error and "e9" in error

    rows = original.splitlines(keepends=True)
    rows[5] = rows[5].replace(b".jpg,", b"\x00.jpg,", 1).replace(b".ogg,", b"\x00.ogg,", 1)
    manifest.write_bytes(b"".join(rows))
    result = run([KEDRO, "run", "--pipelines", "ingest"], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    rejected = (project / "data/02_intermediate/rejected_items.csv").read_text()
    assert "5," in rejected and "NUL byte" in rejected  # a rejected row, the rest ingested


def test_a_corrupt_journal_and_a_non_utf8_query_file_are_named_in_one_line(
    trained_project, tmp_path
):
    project, first = trained_project
    assert first.returncode == 0
    corrupt = project / JOURNAL / "2999-01-01T00.00.00.000Z.json"
    corrupt.write_text('{"session_id": "2999-01-01T00.0')
    try:
        error = one_error_line(run([KEDRO, "resume"], cwd=project))
    finally:
        corrupt.unlink()
    assert f"the run journal {corrupt} cannot be read" in error

    queries = tmp_path / "queries.txt"
    queries.write_bytes("a brown hen\nun caf\xe9\n".encode("latin-1"))
    result = run([CART_SEARCH, "--queries", str(queries), "--project", str(project)], cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{queries} is not UTF-8: line 2" in result.stderr.strip().splitlines()[-1]


def test_a_copied_project_keeps_its_artifacts_to_itself(trained_project, tmp_path):
    project, first = trained_project
    assert first.returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)
    before = {p for p in (project / "mlruns").rglob("*")}

    result = run([KEDRO, "run", "--pipelines", "serving", "--params", FAST_PARAMS], cwd=copy)

    assert result.returncode == 0, result.stderr[-3000:]
    assert {p for p in (project / "mlruns").rglob("*")} == before  # nothing new in the original
    served = json.loads((copy / "data/08_reporting/image/served_model.json").read_text())
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    run_info = client.get_run(served["run_id"]).info
    assert run_info.artifact_uri.startswith(str(copy / "mlruns"))
    assert list((copy / "mlruns").rglob("search_index.pt"))
