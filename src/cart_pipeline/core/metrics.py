"""Retrieval metrics over rankings tables (query_id, rank, item_id, score), with uncertainty.

Ties are broken *against* the relevant item: a relevant item's rank is 1 + the number of
non-relevant items scored at least as high, whatever order the table lists them in. Systems
that score the whole corpus write their top-K plus every item tied with the K-th
(``top_k_with_ties``), so the rule holds at the cut-off too.

A system may return only its top-K (CART returns its beams): a relevant item not returned
gets rank K+1 for the median, i.e. the median is a lower bound when more than half the
queries miss the top-K. R@k for k <= K and MRR@10 are exact either way.

Uncertainty: a 95 % percentile bootstrap over queries for every metric, and for two systems
on the same queries a paired bootstrap of the difference plus an exact sign test on the
queries where exactly one of them hits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

KS = (1, 5, 10)
MRR_AT = 10
HEADLINE = ("R@1", "R@5", "R@10", f"MRR@{MRR_AT}")


def top_k_with_ties(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, N) scores -> (Q, K') item indices and scores, best first, -1 / -inf padded.

    K' >= k: every item tied with a row's k-th score is kept, so a rank computed from the
    table breaks a tie at the cut-off against the relevant item just as one from all scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    Q, N = scores.shape
    k = min(k, N)
    if Q == 0 or k == 0:
        return np.zeros((Q, 0), np.int64), np.zeros((Q, 0))
    order = np.argsort(-scores, axis=1, kind="stable")
    kth = np.take_along_axis(scores, order[:, k - 1 : k], axis=1)  # (Q, 1)
    depth = max(k, int((scores >= kth).sum(1).max()))
    order = order[:, :depth]
    top = np.take_along_axis(scores, order, axis=1)
    keep = (np.arange(depth) < k) | (top >= kth)
    return np.where(keep, order, -1), np.where(keep, top, -np.inf)


def pessimistic_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """(Q, N) scores, (Q,) relevant item index -> (Q,) 1-based ranks, ties counted against it."""
    scores = np.asarray(scores)
    own = scores[np.arange(len(scores)), relevant][:, None]
    return (scores >= own).sum(1)  # the relevant item itself is one of them


def relevant_ranks(
    rankings: pd.DataFrame, relevant: pd.DataFrame, depth: int | None = None
) -> pd.Series:
    """Rank of each query's best relevant item, by query_id; depth+1 when it is not returned
    or ranks below ``depth`` (default: the table's deepest rank), e.g. behind tied items.

    ``relevant``: (query_id, item_id) rows, one per relevant item (strict relevance: one row
    per query; same-description relevance: several). Every query of ``relevant`` gets a rank.
    """
    depth = depth if depth is not None else int(rankings["rank"].max()) if len(rankings) else 0
    queries = pd.Index(relevant.query_id.unique(), name="query_id")
    flagged = rankings.merge(
        relevant[["query_id", "item_id"]].assign(is_relevant=True),
        on=["query_id", "item_id"],
        how="left",
    )
    flagged["is_relevant"] = flagged["is_relevant"].fillna(False).astype(bool)
    best = flagged[flagged.is_relevant].groupby("query_id")["score"].max().rename("best")
    others = flagged[~flagged.is_relevant].merge(best, left_on="query_id", right_index=True)
    beaten_or_tied = (others.score >= others.best).groupby(others.query_id).sum()
    ranks = (1 + beaten_or_tied.reindex(best.index, fill_value=0)).reindex(
        queries, fill_value=depth + 1
    )
    return ranks.clip(upper=depth + 1).astype(np.int64)


def _per_query(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query values whose means are the headline metrics."""
    ranks = np.asarray(ranks, dtype=np.int64)
    values = {f"R@{k}": (ranks <= k).astype(np.float64) for k in KS}
    values[f"MRR@{MRR_AT}"] = np.where(ranks <= MRR_AT, 1.0 / np.maximum(ranks, 1), 0.0)
    return values


def metrics_from_ranks(
    ranks: pd.Series | np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float | list[float]]:
    """R@1/5/10, MRR@10, median rank, each with its 95 % bootstrap CI (``<metric>_ci95``)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    n = len(ranks)
    out: dict[str, float | list[float]] = {}
    if n == 0:
        for name in (*HEADLINE, "median_rank"):
            out[name], out[f"{name}_ci95"] = float("nan"), [float("nan"), float("nan")]
        out["n_queries"] = 0
        return out
    # one set of resampled query indices for every metric, so their CIs are coherent
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n)) if n_boot else None
    for name, values in _per_query(ranks).items():
        out[name] = float(values.mean())
        out[f"{name}_ci95"] = _percentiles(values[idx].mean(1)) if n_boot else [out[name]] * 2
    out["median_rank"] = float(np.median(ranks))
    out["median_rank_ci95"] = (
        _percentiles(np.median(ranks[idx], axis=1)) if n_boot else [out["median_rank"]] * 2
    )
    out["n_queries"] = int(n)
    return out


def metrics_by_relevance(
    ranks: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Strict metrics (the headline) with the same-description ones nested beside them:
    ``ranks`` = {"strict": (Q,), "same_description": (Q,)} ranks of the same queries."""
    return {
        **metrics_from_ranks(ranks["strict"], n_boot, seed),
        "same_description": metrics_from_ranks(ranks["same_description"], n_boot, seed),
    }


def paired_comparison(
    ranks_a: np.ndarray, ranks_b: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, float | list[float]]]:
    """System A vs B on the same queries (aligned arrays of ranks), per headline metric.

    diff: mean(A) - mean(B); diff_ci95: paired bootstrap percentile interval; p_bootstrap:
    two-sided bootstrap p of diff = 0; for R@k also the exact sign test on the queries where
    one system hits and the other misses (a_only, b_only, p_sign).
    """
    from scipy.stats import binomtest

    ranks_a, ranks_b = np.asarray(ranks_a, np.int64), np.asarray(ranks_b, np.int64)
    if ranks_a.shape != ranks_b.shape:
        raise ValueError(
            f"paired comparison needs the same queries: {ranks_a.shape} vs {ranks_b.shape}"
        )
    n = len(ranks_a)
    if n == 0:
        return {}
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    a, b = _per_query(ranks_a), _per_query(ranks_b)
    out = {}
    for name in HEADLINE:
        delta = a[name] - b[name]
        boot = delta[idx].mean(1)
        p = 2 * min((boot <= 0).mean(), (boot >= 0).mean()) if delta.any() else 1.0
        entry: dict[str, float | list[float]] = {
            "diff": float(delta.mean()),
            "diff_ci95": _percentiles(boot),
            "p_bootstrap": float(min(1.0, p)),
        }
        if name.startswith("R@"):
            a_only, b_only = (
                int(((a[name] == 1) & (b[name] == 0)).sum()),
                int(((a[name] == 0) & (b[name] == 1)).sum()),
            )
            entry.update(
                a_only=a_only,
                b_only=b_only,
                p_sign=float(binomtest(a_only, a_only + b_only).pvalue) if a_only + b_only else 1.0,
            )
        out[name] = entry
    return out


def _percentiles(values: np.ndarray) -> list[float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def rankings_frame(
    query_ids: list[str], item_ids: np.ndarray, top_items: np.ndarray, top_scores: np.ndarray
) -> pd.DataFrame:
    """(Q, K) item indices and scores -> long rankings table; index -1 marks "no result"."""
    n_queries, depth = top_items.shape
    frame = pd.DataFrame(
        {
            "query_id": np.repeat(np.asarray(query_ids, dtype=object), depth),
            "rank": np.tile(np.arange(1, depth + 1), n_queries),
            "item_index": top_items.reshape(-1),
            "score": top_scores.reshape(-1).astype(np.float64),
        }
    )
    frame = frame[frame.item_index >= 0]
    frame.insert(2, "item_id", np.asarray(item_ids, dtype=object)[frame.item_index.to_numpy()])
    return frame.drop(columns="item_index").reset_index(drop=True)


def same_description_relevance(
    queries: pd.DataFrame, human_queries: pd.DataFrame, item_ids: np.ndarray
) -> pd.DataFrame:
    """(query_id, item_id) relevant pairs: each query's own item, plus every indexed item with
    a human text equal to the query after normalising case and punctuation ("The letter P."
    describes the filled and the outlined P alike). Evaluation only; strict stays the headline."""
    from cart_pipeline.core.pairs import normalise_text

    indexed = human_queries[human_queries.item_id.isin(item_ids)]
    described = pd.DataFrame(
        {"norm": normalise_text(indexed.text), "item_id": indexed.item_id}
    ).drop_duplicates()
    asked = pd.DataFrame({"query_id": queries.query_id, "norm": normalise_text(queries.text)})
    same = asked.merge(described, on="norm")[["query_id", "item_id"]]
    return (
        pd.concat([queries[["query_id", "item_id"]], same]).drop_duplicates().reset_index(drop=True)
    )
