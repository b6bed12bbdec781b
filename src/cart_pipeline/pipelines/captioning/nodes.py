"""Thin Kedro adapters over :mod:`cart_pipeline.core.captioners`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cart_pipeline.core.captioners import CaptionContext, get_captioner
from cart_pipeline.core.captioners.pseudo_queries import pseudo_queries
from cart_pipeline.core.pairs import training_pairs
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix
from cart_pipeline.pipelines.encoders import load_encoder

logger = logging.getLogger(__name__)


def configured_captioners(params: dict[str, Any], modality: str) -> list[tuple]:
    """(name, captioner, n, kwargs) of each captioner ``captioning.captioners`` lists for
    ``modality``, in its order (best first)."""
    captioners = []
    for spec in params["captioners"][modality]:
        spec = dict(spec)
        name = spec.pop("name")
        captioners.append((name, get_captioner(name), int(spec.pop("n")), spec))
    return captioners


def generate_pseudo_queries(
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
    modality: str,
    dataset_root: str,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run this modality's captioners (guarded against held-out queries); report coverage."""
    # items whose features were rejected are not in the index, so they get no captions either
    corpus = candidates.merge(candidate_features[["item_id"]], on="item_id").reset_index(drop=True)
    features = candidate_features.set_index("item_id").loc[corpus.item_id]
    context = CaptionContext(
        candidates=corpus,
        features=column_to_matrix(features.embedding),
        train_queries=queries[queries.split == "train"][["item_id", "text", "split"]],
        class_top=int_lists_to_matrix(features.class_top) if "class_top" in features else None,
        class_prob=np.stack(features.class_prob.to_numpy()) if "class_prob" in features else None,
        dataset_root=Path(dataset_root),
        text_encoder=load_encoder(text_encoder_spec),
        seed=int(seed),
    )

    pseudo, report = pseudo_queries(
        context,
        configured_captioners(params, modality),
        queries,
        params["heldout_query_matches"],
        int(params["spare_captions"]),
    )
    logger.info(
        "captioning %s: %d pseudo-queries (%d distinct texts), coverage %.1f%%, %d dropped by the held-out guard",
        modality,
        len(pseudo),
        report["distinct_texts"],
        100 * report["coverage"],
        report["heldout_guard"]["pseudo_queries_equal_to_their_items_heldout_query_dropped"],
    )
    return pseudo, {"modality": modality, **report}


def build_training_pairs(
    queries: pd.DataFrame, pseudo_queries: pd.DataFrame, params: dict[str, Any]
) -> pd.DataFrame:
    """The pairs CART, the dual tower and the pair lookup all train on (leak-checked), with the
    validation queries flagged."""
    pairs = training_pairs(queries, pseudo_queries, params["pseudo_per_described_item"])
    logger.info(
        "%d training pairs (%d human), %d validation queries",
        (~pairs.is_validation).sum(),
        ((pairs.source == "human") & ~pairs.is_validation).sum(),
        pairs.is_validation.sum(),
    )
    return pairs
