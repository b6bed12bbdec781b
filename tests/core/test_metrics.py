"""Retrieval metrics: hand-computed values, ties against the relevant item, CIs, paired tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cart_pipeline.core.metrics import (
    metrics_from_ranks,
    paired_comparison,
    pessimistic_ranks,
    rankings_frame,
    relevant_ranks,
    same_description_relevance,
    top_k_with_ties,
)


def test_hand_computed_recall_mrr_and_censored_median():
    ranks = np.array([1, 3, 7, 21, 21])  # 21 = not in a top-20
    m = metrics_from_ranks(ranks, n_boot=0)
    assert m["R@1"] == pytest.approx(1 / 5)
    assert m["R@5"] == pytest.approx(2 / 5)
    assert m["R@10"] == pytest.approx(3 / 5)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 5)
    assert m["median_rank"] == 7 and m["n_queries"] == 5


def test_bootstrap_interval_brackets_the_estimate_narrows_with_n_and_is_seeded():
    rng = np.random.default_rng(0)
    small, large = rng.integers(1, 30, 50), rng.integers(1, 30, 2000)
    a, b = metrics_from_ranks(small, seed=1), metrics_from_ranks(large, seed=1)
    for name in ("R@1", "R@5", "R@10", "MRR@10", "median_rank"):
        lo, hi = a[f"{name}_ci95"]
        assert lo <= a[name] <= hi
    width = lambda m: m["R@10_ci95"][1] - m["R@10_ci95"][0]  # noqa: E731
    assert width(b) < width(a) / 3
    assert metrics_from_ranks(small, seed=1) == a, "same seed, same interval"
    assert metrics_from_ranks(np.array([], dtype=int))["n_queries"] == 0


def test_ties_are_broken_against_the_relevant_item():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2]])
    assert pessimistic_ranks(scores, np.array([0, 3])).tolist() == [3, 4]
    # the same rule from a rankings table, whatever order it lists the tied items in
    rankings = pd.DataFrame(
        {
            "query_id": ["q"] * 3,
            "rank": [1, 2, 3],
            "item_id": ["rel", "x", "y"],
            "score": [0.5, 0.5, 0.4],
        }
    )
    ranks = relevant_ranks(rankings, pd.DataFrame({"query_id": ["q"], "item_id": ["rel"]}))
    assert ranks["q"] == 2


def test_top_k_keeps_every_item_tied_at_the_cut_off():
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1], [5.0, 4.0, 3.0, 2.0, 1.0]])
    items, top = top_k_with_ties(scores, 2)
    assert items.shape[1] == 4  # 0.9 plus the three tied at 0.5
    assert sorted(items[0].tolist()) == [0, 1, 2, 3]
    assert items[1].tolist() == [0, 1, -1, -1] and np.isinf(top[1, 2:]).all()
    # an item tied at the cut-off is ranked behind the others tied with it, not dropped
    table = rankings_frame(
        ["a", "b"], np.array(["i0", "i1", "i2", "i3", "i4"], dtype=object), items, top
    )
    rank = relevant_ranks(table, pd.DataFrame({"query_id": ["a"], "item_id": ["i1"]}), depth=20)
    assert rank["a"] == 4


def test_missing_relevant_item_and_depth_censoring():
    rankings = pd.DataFrame(
        {"query_id": ["q", "q"], "rank": [1, 2], "item_id": ["a", "b"], "score": [2.0, 1.0]}
    )
    relevant = pd.DataFrame({"query_id": ["q", "unseen"], "item_id": ["zzz", "a"]})
    ranks = relevant_ranks(rankings, relevant, depth=20)
    assert ranks.to_dict() == {"q": 21, "unseen": 21}


def test_same_description_relevance_counts_items_described_alike():
    human = pd.DataFrame(
        {
            "query_id": ["q:p1", "q:p2", "q:x"],
            "item_id": ["P_filled", "P_outline", "X"],
            "text": ["The letter P.", "the letter p", "An X."],
            "split": ["test", "train", "train"],
        }
    )
    test = human[human.split == "test"]
    relevant = same_description_relevance(test, human, np.array(["P_filled", "P_outline", "X"]))
    assert set(map(tuple, relevant[["query_id", "item_id"]].values)) == {
        ("q:p1", "P_filled"),
        ("q:p1", "P_outline"),
    }
    rankings = pd.DataFrame(
        {
            "query_id": ["q:p1"] * 2,
            "rank": [1, 2],
            "item_id": ["P_outline", "P_filled"],
            "score": [1.0, 0.5],
        }
    )
    assert relevant_ranks(rankings, test[["query_id", "item_id"]])["q:p1"] == 2  # strict
    assert relevant_ranks(rankings, relevant)["q:p1"] == 1  # same description


def test_paired_comparison_difference_and_sign_test():
    a = np.array([1] * 30 + [20] * 10)
    b = np.array([1] * 10 + [20] * 30)
    result = paired_comparison(a, b, seed=0)
    r1 = result["R@1"]
    assert r1["diff"] == pytest.approx(0.5)
    assert r1["diff_ci95"][0] > 0 and r1["p_bootstrap"] < 0.01
    assert (r1["a_only"], r1["b_only"]) == (20, 0) and r1["p_sign"] < 1e-5
    same = paired_comparison(a, a)["R@10"]
    assert same["diff"] == 0 and same["p_bootstrap"] == 1.0 and same["p_sign"] == 1.0
    with pytest.raises(ValueError, match="same queries"):
        paired_comparison(a, b[:5])
