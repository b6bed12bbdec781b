"""One end-to-end `kedro run` of every stage on a slice of the default dataset."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.e2e.conftest import KEDRO, run

pytestmark = pytest.mark.slow  # real `kedro run`s


def _latest(path):
    return sorted(path.glob("*/" + path.name))[-1]


def test_kedro_run_writes_metrics_report_and_tracks_mlflow(trained_project):
    project, result = trained_project
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    metrics = json.loads(_latest(project / "data/08_reporting/metrics.json").read_text())
    assert set(metrics["by_modality"]) == {"image", "audio", "video"}
    for modality, systems in metrics["by_modality"].items():
        assert {"cart", "dual_tower", "pair_lookup"} <= set(systems), modality
        assert systems["cart"]["n_queries"] > 0 and len(systems["cart"]["R@10_ci95"]) == 2
    for system in ("cart", "dual_tower"):
        overall = metrics["overall"][system]
        assert overall["n_queries"] > 0
        assert 0.0 <= overall["R@1"] <= overall["R@5"] <= overall["R@10"] <= 1.0
        assert metrics["by_modality"]["image"][system]["qps_search"] > 0

    report = (project / "data/08_reporting/report.html").read_text()
    assert "<table" in report and "data:image/png;base64" in report
    assert "<audio" in report and "data:video/mp4;base64" in report

    rejected = (project / "data/02_intermediate/rejected_items.csv").read_text()
    assert rejected.startswith("row,item_id,reason")

    with sqlite3.connect(project / "mlflow.db") as db:
        runs = db.execute("select run_uuid, status from runs order by start_time").fetchall()
        first = runs[0][0]  # the module's trained run (later tests may add runs of their own)
        params = dict(db.execute("select key, value from params where run_uuid = ?", (first,)))
        metric_keys = {
            k
            for (k,) in db.execute("select distinct key from metrics where run_uuid = ?", (first,))
        }
        tags = dict(db.execute("select key, value from tags where run_uuid = ?", (first,)))
        experiment_tags = dict(db.execute("select key, value from experiment_tags").fetchall())
    assert runs and all(status == "FINISHED" for _, status in runs)
    # named by what it is; the UI opens the experiment on its runs table
    assert tags["mlflow.runName"] == "dataset · all stages · seed 2025 · cart"
    assert experiment_tags["mlflow.experimentKind"] == "custom_model_development"
    assert params["decoder_training.epochs"] == "3"
    assert "overall.cart.R_at_1" in metric_keys and "image.decoder.loss" in metric_keys
    assert tags["id_variant"] == "cart"
    # the Kedro session id is the save version of every versioned artifact of the run
    assert (project / "data/06_models/image/cart_decoder.pt" / tags["run_id"]).is_dir()


def test_resume_from_a_node_reuses_saved_outputs(trained_project):
    project, first = trained_project
    assert first.returncode == 0
    result = run([KEDRO, "run", "--from-nodes", "summarise_metrics"], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Running node: build_report" in result.stdout + result.stderr


def test_kedro_viz_build_writes_the_lineage_page(trained_project):
    project, _ = trained_project
    result = run([KEDRO, "viz", "build"], cwd=project, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project / "build" / "index.html").is_file()
    assert (project / "build" / "api" / "main").is_file()
