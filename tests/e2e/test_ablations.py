"""The ablation runner on the slice; its `cart` run doubles as the reproducibility check.

`python -m experiments.ablations` reruns identifiers, decoder and evaluation for each variant.
Its `cart` run is the same configuration and seed as the module's trained project, so its
identifiers and every quality metric must come out identical. Its runs measure and never
publish: what `cart-search` serves is still the first run's index afterwards.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import FAST_PARAMS, quality, run

pytestmark = pytest.mark.slow  # the ablation runner's `kedro run`s


def _versions(path):
    return sorted(path.glob("*/" + path.name))


def ablations(project, *args: str):
    command = [sys.executable, "-m", "experiments.ablations", "--project", str(project), *args]
    return run(command, cwd=PROJECT_ROOT)  # the runners live beside the package, not in it


def test_ablation_command_writes_the_comparison_and_reproduces_the_default_run(trained_project):
    project, first = trained_project
    assert first.returncode == 0
    metrics_versions = project / "data/08_reporting/metrics.json"
    first_metrics = json.loads(_versions(metrics_versions)[0].read_text())
    ids = project / "data/05_model_input/image/semantic_ids.parquet"
    first_ids = pq.read_table(_versions(ids)[0])
    served = sorted(p.name for p in (project / "data/06_models/image/search_index.pt").iterdir())

    result = ablations(
        project, "--variants", "no_consistency", "cart", "--params", *FAST_PARAMS.split(",")
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

    # same seed, same configuration => same identifiers and the same metrics, exactly; and no
    # variant changes the identifiers (both rerun the RQ-VAE with the same seed)
    runs = {
        json.loads(v.read_text())["config"]["run_label"]: v for v in _versions(metrics_versions)
    }
    assert quality(json.loads(runs["cart"].read_text())) == quality(first_metrics)
    later_ids = [pq.read_table(v) for v in _versions(ids)[1:]]
    assert len(later_ids) == 2 and all(t.num_rows > 0 and t.equals(first_ids) for t in later_ids)
    # the runs measured, and published nothing: the same search index is served
    assert sorted(p.name for p in (project / "data/06_models/image/search_index.pt").iterdir()) == (
        served
    )

    # --report-only redraws the same table from the saved runs, without running anything
    (project / "data/08_reporting/ablations/comparison.csv").unlink()
    redraw = ablations(project, "--variants", "cart", "no_consistency", "--report-only")
    assert redraw.returncode == 0, redraw.stderr[-3000:]
    assert "$ " not in redraw.stderr  # no kedro command was launched
    table_again = pd.read_csv(project / "data/08_reporting/ablations/comparison.csv")
    pd.testing.assert_frame_equal(
        table_again.sort_values(["variant", "modality"], ignore_index=True),
        table.sort_values(["variant", "modality"], ignore_index=True),
    )
    missing = ablations(project, "--variants", "atomic", "--report-only")
    assert missing.returncode != 0 and "no saved metrics.json for ['atomic']" in missing.stderr
