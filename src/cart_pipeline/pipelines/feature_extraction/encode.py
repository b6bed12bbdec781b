"""Candidate features in this process: the whole corpus, or one shard of it (sharded.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cart_pipeline.core.device import stage_device
from cart_pipeline.core.features import encode_images_with_logits, encode_media
from cart_pipeline.core.tables import features_frame, int_lists_column
from cart_pipeline.pipelines.encoders import load_encoder

logger = logging.getLogger(__name__)


def encode_candidates(
    candidates: pd.DataFrame,
    params: dict[str, Any],
    modality: str,
    dataset_root: str,
    device: str,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, rejects) of ``candidates`` in this process: the whole corpus, or one shard."""
    encoder = load_encoder(params["encoders"][modality], stage_device(params, device))
    paths = [Path(dataset_root) / p for p in candidates.media_path]
    started = time.perf_counter()
    kwargs = dict(
        batch_size=int(params["batch_size"]),
        num_threads=int(params["decode_threads"]),
        progress=progress,
    )
    has_head = hasattr(encoder, "embed_items_with_logits")
    if has_head:
        features, ok, rejects, logits = encode_images_with_logits(encoder, paths, **kwargs)
    else:
        (features, ok, rejects), logits = encode_media(encoder, paths, **kwargs), None
    seconds = time.perf_counter() - started
    logger.info(
        "%s: %d %s items in %.1f s (%.1f items/s), %d rejected",
        encoder.name,
        len(paths),
        modality,
        seconds,
        len(paths) / max(seconds, 1e-9),
        len(rejects),
    )

    table = features_frame(candidates.item_id[ok], features, encoder=encoder.name)
    if logits is not None:
        top_k = int(params["class_top_k"])
        probs = _softmax(logits)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]  # (n_ok, k)
        table["class_top"] = int_lists_column(top, index=table.index)
        table["class_prob"] = list(np.take_along_axis(probs, top, axis=1).astype(np.float32))
    rejected = pd.DataFrame(
        [(candidates.item_id.iloc[row], reason) for row, reason in rejects],
        columns=["item_id", "reason"],
    )
    return table, rejected


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
