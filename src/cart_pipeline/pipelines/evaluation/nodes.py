"""CART vs the dual tower on the held-out test queries, per modality and overall."""

from __future__ import annotations

import logging
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cart_pipeline.core.metrics import metrics_from_ranks, rankings_frame, relevant_ranks
from cart_pipeline.core.pairs import index_pairs
from cart_pipeline.core.retrieval.cart import CartIndex
from cart_pipeline.core.retrieval.dual_tower import (
    DualTowerConfig,
    dual_tower_from_checkpoint,
    dual_tower_to_checkpoint,
    embed_items,
    search,
    train_dual_tower,
)
from cart_pipeline.core.tables import column_to_matrix
from cart_pipeline.pipelines.encoders import load_encoder
from cart_pipeline.pipelines.tracking import epoch_logger, log_metrics

logger = logging.getLogger(__name__)
SYSTEMS = ("cart", "dual_tower")


def test_queries(queries: pd.DataFrame, corpus_item_ids: pd.Series) -> pd.DataFrame:
    """Human queries of test items that made it into the index."""
    test = queries[queries.split == "test"]
    kept = test[test.item_id.isin(corpus_item_ids)]
    if len(kept) < len(test):
        logger.warning("%d test queries dropped: their item was rejected before indexing", len(test) - len(kept))
    return kept.reset_index(drop=True)


def _features_by_id(*tables: pd.DataFrame) -> tuple[pd.Index, np.ndarray]:
    table = pd.concat(tables, ignore_index=True)
    return pd.Index(table.query_id), column_to_matrix(table.embedding)


def fit_dual_tower(
    training_pairs: pd.DataFrame,
    query_features: pd.DataFrame,
    pseudo_query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    modality: str,
    seed: int,
) -> dict:
    """Projection heads on the frozen features, trained on exactly CART's pairs."""
    ids, text_matrix = _features_by_id(query_features, pseudo_query_features)
    pairs, items = index_pairs(training_pairs, candidate_features.item_id.to_numpy())
    text = text_matrix[ids.get_indexer(pairs.query_id)]
    item_features = column_to_matrix(candidate_features.embedding)
    val = pairs.is_validation.to_numpy()
    config = DualTowerConfig(text_dim=text.shape[1], item_dim=item_features.shape[1], seed=int(seed), **params["dual_tower"])
    started = time.perf_counter()
    model, history = train_dual_tower(
        text[~val], items[~val], item_features, config, text[val], items[val], on_epoch=epoch_logger(f"{modality}.dual_tower.")
    )
    logger.info("%s: dual tower trained in %.0f s, %d epochs, best validation R@1 %.3f", modality, time.perf_counter() - started, len(history), max(h.get("val_r1", 0) for h in history))
    return dual_tower_to_checkpoint(model, {"item_ids": candidate_features.item_id.tolist(), "history": history})


def rank_with_cart(
    cart_decoder: dict, queries: pd.DataFrame, params: dict[str, Any], text_encoder_spec: dict[str, Any]
) -> tuple[pd.DataFrame, dict]:
    index = CartIndex.from_checkpoint(cart_decoder, load_encoder(text_encoder_spec))
    test = test_queries(queries, pd.Series(index.item_ids))
    top, scores, timing = index.search(
        test.text.tolist(), top_k=int(params["top_k"]), beam_size=int(params["beam_size"]), batch_size=int(params["batch_size"])
    )
    return rankings_frame(test.query_id.tolist(), index.item_ids, top, scores), _throughput(len(test), timing)


def rank_with_dual_tower(
    dual_tower: dict,
    queries: pd.DataFrame,
    query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
) -> tuple[pd.DataFrame, dict]:
    model = dual_tower_from_checkpoint(dual_tower)
    item_ids = candidate_features.item_id.to_numpy()
    item_embeddings = embed_items(model, column_to_matrix(candidate_features.embedding))  # the index
    test = test_queries(queries, candidate_features.item_id)
    ids, text_matrix = _features_by_id(query_features)
    text = text_matrix[ids.get_indexer(test.query_id)]

    # time encoding + search per batch exactly as CART's search is timed
    encoder, batch, encode_s, search_s, top, scores = load_encoder(text_encoder_spec), int(params["batch_size"]), 0.0, 0.0, [], []
    for start in range(0, len(test), batch):
        t0 = time.perf_counter()
        encoder.encode(test.text.iloc[start : start + batch].tolist())
        t1 = time.perf_counter()
        found, score = search(model, text[start : start + batch], top_k=int(params["top_k"]), item_embeddings=item_embeddings)
        t2 = time.perf_counter()
        encode_s, search_s = encode_s + t1 - t0, search_s + t2 - t1
        top.append(found)
        scores.append(score)
    top = np.concatenate(top) if top else np.zeros((0, int(params["top_k"])), np.int64)
    scores = np.concatenate(scores) if scores else np.zeros_like(top, dtype=np.float32)
    return rankings_frame(test.query_id.tolist(), item_ids, top, scores), _throughput(len(test), {"encode_s": encode_s, "decode_s": search_s})


def _throughput(n_queries: int, timing: dict) -> dict:
    search_s, encode_s = timing["decode_s"], timing["encode_s"]
    return {
        "qps_search": n_queries / search_s if search_s else float("nan"),
        "qps_with_encoding": n_queries / (search_s + encode_s) if search_s + encode_s else float("nan"),
        "search_seconds": search_s,
        "encoding_seconds": encode_s,
    }


def evaluate_modality(
    cart_rankings: pd.DataFrame,
    cart_timing: dict,
    dual_tower_rankings: pd.DataFrame,
    dual_tower_timing: dict,
    queries: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    modality: str,
) -> dict:
    """Both systems' metrics and per-query ranks (the ranks let `summarise` pool modalities)."""
    relevant = test_queries(queries, semantic_ids.item_id)[["query_id", "item_id"]]
    result: dict[str, Any] = {"modality": modality, "corpus_size": int(len(semantic_ids))}
    for system, rankings, timing in (("cart", cart_rankings, cart_timing), ("dual_tower", dual_tower_rankings, dual_tower_timing)):
        ranks = relevant_ranks(rankings, relevant)
        metrics = {**metrics_from_ranks(ranks.to_numpy()), "corpus_size": int(len(semantic_ids)), **timing}
        result[system] = {"metrics": metrics, "ranks": ranks.astype(int).tolist(), "query_ids": ranks.index.tolist()}
        log_metrics(metrics, prefix=f"{modality}.{system}.")
        logger.info("%s %s: %s", modality, system, {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    return result


def run_config(id_variant: str, decoder: dict[str, Any], evaluation: dict[str, Any], seed: int, run_label: str) -> dict:
    """What distinguishes this run from an ablation of it (recorded in metrics.json and MLflow tags)."""
    return {
        "run_label": run_label,
        "id_variant": id_variant,
        "fusion": bool(decoder["fusion"]),
        "consistency_weight": float(decoder["consistency_weight"]),
        "seed": int(seed),
        "beam_size": int(evaluation["beam_size"]),
        "top_k": int(evaluation["top_k"]),
    }


def summarise(id_variant: str, decoder: dict, evaluation: dict, seed: int, run_label: str, *evaluations: dict) -> tuple[dict, plt.Figure]:
    """metrics.json (per modality and pooled over modalities) and the recall bar chart."""
    import mlflow

    config = run_config(id_variant, decoder, evaluation, seed, run_label)
    metrics: dict[str, Any] = {"systems": list(SYSTEMS), "by_modality": {}, "overall": {}, "config": config}
    for evaluation in evaluations:
        metrics["by_modality"][evaluation["modality"]] = {s: evaluation[s]["metrics"] for s in SYSTEMS}
    for system in SYSTEMS:
        ranks = np.concatenate([np.asarray(e[system]["ranks"], dtype=np.int64) for e in evaluations]) if evaluations else np.zeros(0, np.int64)
        metrics["overall"][system] = metrics_from_ranks(ranks)
        log_metrics(metrics["overall"][system], prefix=f"overall.{system}.")
    if mlflow.active_run() is not None:
        mlflow.set_tags({k: str(v) for k, v in config.items()})
    return metrics, recall_bar_chart(metrics)


def recall_bar_chart(metrics: dict) -> plt.Figure:
    groups = [*metrics["by_modality"], "overall"]
    columns = ["R@1", "R@5", "R@10"]
    # constrained layout gives the suptitle its own row (tight_layout let it cover a title)
    fig, axes = plt.subplots(
        1, len(groups), figsize=(4 * len(groups), 3.7), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, group in zip(axes[0], groups, strict=True):
        table = metrics["overall"] if group == "overall" else metrics["by_modality"][group]
        x = np.arange(len(columns))
        for offset, system in zip((-0.2, 0.2), metrics["systems"], strict=True):
            values = [table[system][c] for c in columns]
            bars = ax.bar(x + offset, values, width=0.4, label=system.replace("_", " "))
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(x, columns)
        ax.set_title(f"{group} (n={table[metrics['systems'][0]]['n_queries']})")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("recall")
    axes[0][-1].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Test-query recall, identifiers: {metrics['config'].get('id_variant')}")
    return fig
