"""Thin Kedro adapter over :mod:`cart_pipeline.core.retrieval.dual_tower`."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from cart_pipeline.core.config import from_params
from cart_pipeline.core.device import stage_device
from cart_pipeline.core.pairs import index_pairs, text_features_of
from cart_pipeline.core.retrieval.dual_tower import (
    DualTowerConfig,
    dual_tower_to_checkpoint,
    train_dual_tower,
)
from cart_pipeline.core.tables import column_to_matrix
from cart_pipeline.pipelines.tracking import epoch_logger, log_metrics

logger = logging.getLogger(__name__)


def fit_dual_tower(
    training_pairs: pd.DataFrame,
    query_features: pd.DataFrame,
    pseudo_query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    modality: str,
    seed: int,
    device: str = "cpu",
) -> dict:
    """Projection heads on the frozen features, trained on exactly CART's pairs."""
    train_on = stage_device(params, device)
    pairs, items = index_pairs(training_pairs, candidate_features.item_id.to_numpy())
    text = text_features_of(pairs.query_id, query_features, pseudo_query_features)
    item_features = column_to_matrix(candidate_features.embedding)
    val = pairs.is_validation.to_numpy()
    config = from_params(
        DualTowerConfig,
        params,
        "dual_tower",
        text_dim=text.shape[1],
        item_dim=item_features.shape[1],
        seed=int(seed),
    )
    started = time.perf_counter()
    model, history = train_dual_tower(
        text[~val],
        items[~val],
        item_features,
        config,
        text[val],
        items[val],
        on_epoch=epoch_logger(f"{modality}.dual_tower."),
        device=train_on,
    )
    seconds = time.perf_counter() - started
    best = max(history, key=lambda h: h.get("val_mrr10", 0.0))
    logger.info(
        "%s: dual tower trained in %.0f s, %d epochs, best validation MRR@10 %.3f (R@1 %.3f) at epoch %d",
        modality,
        seconds,
        len(history),
        best.get("val_mrr10", float("nan")),
        best.get("val_r1", float("nan")),
        best["epoch"],
    )
    log_metrics(
        {"train_seconds": seconds, "best_val_mrr10": best.get("val_mrr10", float("nan"))},
        prefix=f"{modality}.dual_tower.",
    )
    return dual_tower_to_checkpoint(
        model, {"item_ids": candidate_features.item_id.tolist(), "history": history}
    )
