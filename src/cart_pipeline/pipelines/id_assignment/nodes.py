"""Identifiers ID = (k, v1…vM, u), their statistics and the prefix plot."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cart_pipeline.core.quantize.ids import identifiers_for_variant
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix
from cart_pipeline.pipelines.tracking import log_metrics
from cart_pipeline.reporting.charts import identifier_prefix_map

logger = logging.getLogger(__name__)


def assign_identifiers(
    fine_codes: pd.DataFrame, quantiser: dict, diagnostics: dict, modality: str
) -> tuple[pd.DataFrame, dict]:
    variant = quantiser["variant"]
    semantic_ids, vocabulary, stats = identifiers_for_variant(
        variant,
        fine_codes.item_id.to_numpy(),
        fine_codes.coarse.to_numpy(np.int64),
        int_lists_to_matrix(fine_codes.fine).reshape(len(fine_codes), -1),
        coarse_size=quantiser.get("coarse_size"),
        fine_size=quantiser.get("fine_size"),
    )
    statistics = {
        "modality": modality,
        "variant": variant,
        "vocabulary": vocabulary.to_dict(),
        **stats,
        **{f"quantiser_{k}": v for k, v in diagnostics.items() if k not in {"variant"}},
    }
    logger.info(
        "%s/%s: %d ids of length %d, collision rate before u %.3f, largest group %d",
        modality,
        variant,
        stats["n_items"],
        stats["id_length"],
        stats["collision_rate"],
        stats["max_collision_group"],
    )
    log_metrics(stats, prefix=f"{modality}.ids.")
    return semantic_ids, statistics


def plot_identifier_prefixes(
    candidate_features: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    params: dict[str, Any],
    modality: str,
    seed: int,
) -> Figure:
    """t-SNE of the features coloured by coarse token; a few first-fine-token groups outlined."""
    ids = semantic_ids.set_index("item_id").loc[candidate_features.item_id]
    return identifier_prefix_map(
        column_to_matrix(candidate_features.embedding),
        ids.coarse.to_numpy(),
        int_lists_to_matrix(ids.fine).reshape(len(ids), -1),
        title=f"{modality}: t-SNE of item features, colour = coarse token (K-Means);\noutlines: items sharing coarse and first fine token",
        perplexity=float(params["tsne_perplexity"]),
        outlined=int(params["plot_clusters_outlined"]),
        seed=seed,
    )
