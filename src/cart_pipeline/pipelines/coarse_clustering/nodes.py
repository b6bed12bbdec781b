"""Coarse token: K-Means over the L2-normalised candidate features."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from cart_pipeline.core.quantize.kmeans import default_n_clusters, fit_kmeans
from cart_pipeline.core.tables import column_to_matrix, matrix_to_column
from cart_pipeline.pipelines.modalities import for_modality
from cart_pipeline.pipelines.tracking import log_metrics

logger = logging.getLogger(__name__)


def cluster_candidates(
    candidate_features: pd.DataFrame, params: dict[str, Any], modality: str, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = for_modality(params, modality)
    features = column_to_matrix(candidate_features.embedding)  # (N, D)
    n_clusters = (
        default_n_clusters(len(features))
        if params["n_clusters"] == "auto"
        else int(params["n_clusters"])
    )
    started = time.perf_counter()
    result = fit_kmeans(features, n_clusters, seed=seed, method=params["method"])
    seconds = time.perf_counter() - started
    sizes = np.bincount(result.assignments, minlength=n_clusters)
    logger.info(
        "%s: k=%d over %d items in %.1f s (cluster sizes %d..%d)",
        modality,
        n_clusters,
        len(features),
        seconds,
        sizes.min(),
        sizes.max(),
    )
    log_metrics(
        {
            "k": n_clusters,
            "seconds": seconds,
            "largest_cluster": int(sizes.max()),
            "mean_sq_distance": float(result.distances.mean()),
        },
        prefix=f"{modality}.coarse.",
    )

    centroids = pd.DataFrame({"cluster": np.arange(n_clusters, dtype=np.int64)})
    centroids["embedding"] = matrix_to_column(result.centroids, index=centroids.index)
    assignments = pd.DataFrame(
        {
            "item_id": candidate_features.item_id.to_numpy(),
            "coarse": result.assignments,
            "distance": result.distances,
        }
    )
    return centroids, assignments
