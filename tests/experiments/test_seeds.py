"""The seed runner's summary: mean ± sd over the seeds' saved metrics, as tables and a page."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import pandas as pd
import pytest

from experiments import seeds
from tests.conftest import PROJECT_ROOT


def saved_run(project, version: str, seed: int, label: str, r1: dict, same_r1: float) -> None:
    """A metrics.json version as the evaluation stage saves it (only the keys the runner reads)."""
    systems = {
        system: {"R@1": value, "R@10": value + 0.3, "same_description": {"R@1": same_r1}}
        for system, value in r1.items()
    }
    metrics = {
        "config": {"seed": seed, "run_label": label, "collection": "tuxpaint"},
        "by_modality": {"image": systems},
        "overall": systems,
    }
    path = project / "data/08_reporting/metrics.json" / version / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metrics))


class Cells(HTMLParser):
    """The text of every table cell, and whether it was bold."""

    def __init__(self):
        super().__init__()
        self.cells, self.bold, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._in = ""
            self.bold.append(False)
        elif tag == "b" and self._in is not None:
            self.bold[-1] = True

    def handle_data(self, data):
        if self._in is not None:
            self._in += data

    def handle_endtag(self, tag):
        if tag == "td":
            self.cells.append(self._in)
            self._in = None


def test_report_only_summarises_the_newest_run_of_each_seed(tmp_path):
    shutil.copytree(PROJECT_ROOT / "conf" / "base", tmp_path / "conf" / "base")
    (tmp_path / "conf" / "local").mkdir()
    saved_run(
        tmp_path, "2026-01-01T00.00.00.000Z", 1, "seed-1", {"cart": 0.1, "pair_lookup": 0.3}, 0.2
    )
    saved_run(
        tmp_path, "2026-01-02T00.00.00.000Z", 2, "seed-2", {"cart": 0.3, "pair_lookup": 0.2}, 0.4
    )
    # a newer run of seed 2 under another label (a lever) is not a seed run
    saved_run(
        tmp_path, "2026-01-03T00.00.00.000Z", 2, "lever-x", {"cart": 0.9, "pair_lookup": 0.9}, 0.9
    )

    assert seeds.main(["--report-only", "--project", str(tmp_path), "--seeds", "1", "2"]) == 0

    out = tmp_path / "data/08_reporting/seeds"
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.collection) == {"tuxpaint"}
    summary = summary.set_index(["modality", "system", "metric"])
    cart_r1 = summary.loc[("image", "cart", "R@1")]
    assert cart_r1["mean"] == pytest.approx(0.2) and cart_r1.sd == pytest.approx(0.1414, abs=1e-4)
    assert cart_r1.n_seeds == 2 and cart_r1.seeds == "1 2"
    assert summary.loc[("image", "cart", "same_description.R@1"), "mean"] == pytest.approx(0.3)
    assert summary.loc[("overall", "pair_lookup", "R@10"), "mean"] == pytest.approx(0.55)
    assert "0.200 ± 0.141" in (out / "summary.md").read_text()

    page = (out / "report.html").read_text()
    cells = Cells()
    cells.feed(page)
    row = cells.cells.index("cart")  # the image rows come first: cart, then the lookup
    # R@1, R@10, same-description R@1 as mean ± sd in %; the lookup's mean R@1 is the best
    assert cells.cells[row + 1 : row + 4] == ["20.0 ± 14.1", "50.0 ± 14.1", "30.0 ± 14.1"]
    assert not cells.bold[row + 1] and cells.bold[row + 5]
    assert cells.cells[row + 5 : row + 8] == ["25.0 ± 7.1", "55.0 ± 7.1", "30.0 ± 14.1"]
    # seed by seed (modality and system are plain cells there): R@1 for seeds 1, 2, then R@10
    row = next(
        i for i in range(len(cells.cells)) if cells.cells[i : i + 2] == ["tuxpaint · image", "cart"]
    )
    assert cells.cells[row + 2 : row + 6] == ["10.0", "30.0", "40.0", "60.0"]


def test_resume_runs_only_the_seeds_without_saved_metrics(tmp_path, monkeypatch):
    shutil.copytree(PROJECT_ROOT / "conf" / "base", tmp_path / "conf" / "base")
    (tmp_path / "conf" / "local").mkdir()
    for seed in (1, 2):
        saved_run(tmp_path, f"2026-01-0{seed}T00.00.00.000Z", seed, f"seed-{seed}",
                  {"cart": 0.1 * seed}, 0.2)  # fmt: skip
    calls = []

    def kedro_run(project, stages, params, env):  # stands in for a training run: saves seed 3
        calls.append((stages.split(",")[0], params.get("seed")))
        if "seed" in params:
            saved_run(project, "2026-01-03T00.00.00.000Z", params["seed"],
                      params["run_label"], {"cart": 0.3}, 0.2)  # fmt: skip

    monkeypatch.setattr(seeds, "kedro_run", kedro_run)
    argv = ["--resume", "--project", str(tmp_path), "--seeds", "1", "2", "3"]
    assert seeds.main(argv) == 0
    assert calls == [("ingest", None), ("captioning", 3)]
    calls.clear()
    assert seeds.main(argv) == 0 and calls == []  # all saved: nothing runs, the summary is made
    summary = pd.read_csv(tmp_path / "data/08_reporting/seeds/summary.csv")
    assert (
        summary.set_index(["modality", "system", "metric"]).loc[("image", "cart", "R@1"), "n_seeds"]
        == 3
    )
