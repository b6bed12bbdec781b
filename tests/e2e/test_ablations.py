"""The ablation command on the slice; its `cart` run doubles as the reproducibility check.

`python -m cart_pipeline.ablations` re-runs identifiers, decoder and evaluation for each
variant. Its `cart` run is the same configuration and seed as the session's first `kedro run`,
so its identifiers and every quality metric must come out identical. The runner runs `cart`
last whatever the order asked for, so the latest artifacts are again those of the default
configuration (for cart-search and the tests after this one).
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pyarrow.parquet as pq

from tests.e2e.conftest import FAST_PARAMS, quality, run


def _versions(path):
    return sorted(path.glob("*/" + path.name))


def test_ablation_command_writes_the_comparison_and_reproduces_the_default_run(trained_project):
    project, first = trained_project
    assert first.returncode == 0
    first_metrics = json.loads(_versions(project / "data/08_reporting/metrics.json")[0].read_text())
    first_ids = pq.read_table(
        _versions(project / "data/05_model_input/image/semantic_ids.parquet")[0]
    )

    result = run(
        [
            sys.executable,
            "-m",
            "cart_pipeline.ablations",
            "--project",
            str(project),
            "--variants",
            "cart",
            "no_consistency",
            "--params",
            FAST_PARAMS,
        ],
        cwd=project,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    table = pd.read_csv(project / "data/08_reporting/ablations/comparison.csv")
    assert set(table.variant) == {"no_consistency", "cart", "dual_tower", "pair_lookup"}
    assert set(table.modality) == {"image", "audio", "video", "overall"}
    assert table[["R@1", "R@5", "R@10"]].apply(lambda r: r.is_monotonic_increasing, axis=1).all()
    assert (
        "| variant | modality |"
        in (project / "data/08_reporting/ablations/comparison.md").read_text()
    )
    assert (project / "data/08_reporting/ablations/comparison.png").stat().st_size > 0

    # same seed, same configuration => same identifiers and the same metrics, exactly
    last_metrics = json.loads(_versions(project / "data/08_reporting/metrics.json")[-1].read_text())
    assert last_metrics["config"]["run_label"] == "cart"
    assert quality(last_metrics) == quality(first_metrics)
    last_ids = pq.read_table(
        _versions(project / "data/05_model_input/image/semantic_ids.parquet")[-1]
    )
    assert last_ids.num_rows > 0 and last_ids.equals(first_ids)

    # --report-only redraws the same table from the saved runs, without running anything
    (project / "data/08_reporting/ablations/comparison.csv").unlink()
    redraw = run(
        [
            sys.executable,
            "-m",
            "cart_pipeline.ablations",
            "--project",
            str(project),
            "--variants",
            "cart",
            "no_consistency",
            "--report-only",
        ],
        cwd=project,
    )
    assert redraw.returncode == 0, redraw.stderr[-3000:]
    assert "$ " not in redraw.stderr  # no kedro command was launched
    pd.testing.assert_frame_equal(
        pd.read_csv(project / "data/08_reporting/ablations/comparison.csv"), table
    )
    missing = run(
        [
            sys.executable,
            "-m",
            "cart_pipeline.ablations",
            "--project",
            str(project),
            "--variants",
            "atomic",
            "--report-only",
        ],
        cwd=project,
    )
    assert missing.returncode != 0 and "no saved metrics.json for ['atomic']" in missing.stderr
