"""Retrieval metrics over rankings tables (query_id, rank, item_id, score).

A system may return only its top-K (CART returns its beams): a relevant item not returned
gets rank K+1 for the median, i.e. the median is a lower bound when more than half the
queries miss the top-K. R@k for k <= K and MRR@10 are exact either way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def relevant_ranks(rankings: pd.DataFrame, relevant: pd.DataFrame) -> pd.Series:
    """1-based rank of each query's relevant item (depth+1 when absent), indexed by query_id.

    `relevant`: one row per query with its relevant item_id (DESIGN.md: one relevant candidate).
    """
    depth = int(rankings["rank"].max()) if len(rankings) else 0
    hits = rankings.merge(relevant[["query_id", "item_id"]], on=["query_id", "item_id"])
    best = hits.groupby("query_id")["rank"].min()
    return best.reindex(relevant.query_id, fill_value=depth + 1).astype(np.int64)


def metrics_from_ranks(
    ranks: pd.Series | np.ndarray, ks: tuple[int, ...] = (1, 5, 10), mrr_at: int = 10
) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.int64)
    if len(ranks) == 0:
        return {
            **{f"R@{k}": float("nan") for k in ks},
            f"MRR@{mrr_at}": float("nan"),
            "median_rank": float("nan"),
            "n_queries": 0,
        }
    reciprocal = np.where(ranks <= mrr_at, 1.0 / ranks, 0.0)
    return {
        **{f"R@{k}": float(np.mean(ranks <= k)) for k in ks},
        f"MRR@{mrr_at}": float(reciprocal.mean()),
        "median_rank": float(np.median(ranks)),
        "n_queries": int(len(ranks)),
    }


def retrieval_metrics(rankings: pd.DataFrame, relevant: pd.DataFrame, **kwargs) -> dict[str, float]:
    return metrics_from_ranks(relevant_ranks(rankings, relevant).to_numpy(), **kwargs)


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
