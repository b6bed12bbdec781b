"""The report refuses rankings and ingest tables from two different runs (issue #14, finding 4:
after a re-ingest, a partial run crashed in the report with a bare KeyError)."""

from __future__ import annotations

import pandas as pd
import pytest

from cart_pipeline.pipelines.evaluation.report import StaleArtifactsError, check_one_run

CANDIDATES = pd.DataFrame({"item_id": ["a", "b"]})
QUERIES = pd.DataFrame({"query_id": ["q1", "q2"], "item_id": ["a", "b"]})


def rankings(item_ids: list[str], query_ids: list[str]) -> dict:
    table = pd.DataFrame({"query_id": query_ids, "rank": 1, "item_id": item_ids, "score": 0.0})
    return {"image": {"cart": table}}


def test_rankings_of_the_current_tables_pass():
    check_one_run(rankings(["a", "b"], ["q1", "q2"]), CANDIDATES, QUERIES)


@pytest.mark.parametrize(
    "items, queries, example",
    [(["a", "gone"], ["q1", "q2"], "'gone'"), (["a", "b"], ["q1", "old"], "'old'")],
    ids=["unknown-item", "unknown-query"],
)
def test_rankings_from_another_run_are_refused_naming_one(items, queries, example):
    with pytest.raises(
        StaleArtifactsError, match=rf"image\.cart_rankings .*e\.g\. {example}.*different runs"
    ):
        check_one_run(rankings(items, queries), CANDIDATES, QUERIES)
