"""Fine tokens: an RQ-VAE on the residual (feature − its K-Means centroid), or an ablation."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from cart_pipeline.core.config import from_params
from cart_pipeline.core.device import stage_device
from cart_pipeline.core.quantize.ids import fine_codes_for_variant
from cart_pipeline.core.quantize.kmeans import KMeansResult
from cart_pipeline.core.quantize.rqvae import RQVAEConfig, rqvae_to_checkpoint
from cart_pipeline.core.tables import column_to_matrix, int_lists_column
from cart_pipeline.pipelines.modalities import for_modality
from cart_pipeline.pipelines.tracking import epoch_logger, log_metrics

logger = logging.getLogger(__name__)


def default_codebook_size(n_items: int) -> int:
    """The power of two nearest sqrt(N), in [8, 256]."""
    return int(min(256, max(8, 2 ** round(math.log2(max(n_items, 1) ** 0.5)))))


def quantise_fine(
    candidate_features: pd.DataFrame,
    kmeans_centroids: pd.DataFrame,
    coarse_assignments: pd.DataFrame,
    params: dict[str, Any],
    variant: str,
    modality: str,
    seed: int,
    device: str = "cpu",
) -> tuple[dict, pd.DataFrame, dict]:
    params = for_modality(params, modality)
    assignments = coarse_assignments.set_index("item_id").loc[candidate_features.item_id]
    kmeans = KMeansResult(
        centroids=column_to_matrix(kmeans_centroids.sort_values("cluster").embedding),
        assignments=assignments.coarse.to_numpy(np.int64),
        distances=assignments.distance.to_numpy(np.float32),
    )
    features = column_to_matrix(candidate_features.embedding)
    codebook_size = (
        default_codebook_size(len(features))
        if params["codebook_size"] == "auto"
        else int(params["codebook_size"])
    )
    config = from_params(
        RQVAEConfig, params, "rqvae_quantization", codebook_size=codebook_size, seed=int(seed)
    )
    started = time.perf_counter()
    codes = fine_codes_for_variant(
        variant, features, kmeans, config, seed=seed, on_epoch=epoch_logger(f"{modality}.rqvae."),
        device=stage_device(params, device),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    diagnostics = {
        "variant": variant,
        "codebook_size": codebook_size,
        "n_levels": config.n_levels,
        "seconds": seconds,
        **codes.diagnostics,
    }
    logger.info(
        "%s/%s: fine codes in %.1f s; %s",
        modality,
        variant,
        seconds,
        {k: round(v, 3) for k, v in codes.diagnostics.items() if isinstance(v, float)},
    )
    log_metrics(diagnostics, prefix=f"{modality}.quantiser.")

    checkpoint = {
        "variant": variant,
        "coarse_size": codes.coarse_size,
        "fine_size": codes.fine_size,
        "rqvae": rqvae_to_checkpoint(codes.model) if codes.model is not None else None,
        "history": codes.history,
    }
    fine_codes = pd.DataFrame(
        {"item_id": candidate_features.item_id.to_numpy(), "coarse": codes.coarse}
    )
    fine_codes["fine"] = int_lists_column(codes.fine, index=fine_codes.index)
    return checkpoint, fine_codes, diagnostics
