"""The add_items validation runner's report: updates compared query by query, pooled over
seeds, and the old items against the index before the addition."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments.add_items_validation import summary


def ranks(update: str, group: str, per_seed: dict[int, list[int]]) -> list[dict]:
    return [{"fraction": 0.1, "seed": seed, "update": update, "queries": group,
             "query_id": f"q{seed}-{i}", "rank": rank}
            for seed, values in per_seed.items() for i, rank in enumerate(values)]  # fmt: skip


def test_updates_are_paired_per_query_and_old_items_compared_with_before():
    ranked = pd.DataFrame([
        *ranks("before", "old", {1: [1, 1, 2, 11], 2: [1, 3, 11, 11]}),
        *ranks("finetune", "new", {1: [2, 11], 2: [1, 11]}),
        *ranks("finetune", "old", {1: [1, 2, 2, 11], 2: [1, 3, 11, 11]}),
        *ranks("none", "new", {1: [11, 11], 2: [11, 11]}),
        *ranks("none", "old", {1: [1, 1, 2, 11], 2: [1, 3, 11, 11]}),
    ])  # fmt: skip
    runs = pd.DataFrame({"seed": [1, 1, 2, 2], "update": ["finetune", "none"] * 2,
                         "add_items_s": [90.0, 37.0, 91.0, 38.0]})  # fmt: skip
    report, table = summary(ranked, runs, reference="finetune")
    pooled = table.set_index(["update", "queries"])["MRR@10"]
    assert pooled["finetune", "new"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert pooled["none", "new"] == 0.0
    lines = [line for line in report.splitlines() if line.startswith("| none |")]
    new_vs_finetune = next(line for line in lines if "| finetune | new |" in line)
    assert "| -0.375 |" in new_vs_finetune  # 0 - 0.375, the same four queries
    old_vs_before = next(line for line in lines if "| before | old |" in line)
    assert "| 0.000 |" in old_vs_before  # none changes no old ranking


def test_updates_that_ranked_different_queries_are_refused():
    ranked = pd.DataFrame([
        *ranks("finetune", "new", {1: [2, 11]}),
        *ranks("none", "new", {1: [11]}),
    ])  # fmt: skip
    runs = pd.DataFrame({"seed": [1, 1], "update": ["finetune", "none"], "add_items_s": [1.0, 1.0]})
    with pytest.raises(ValueError, match="ranked different new queries"):
        summary(ranked, runs, reference="finetune")
