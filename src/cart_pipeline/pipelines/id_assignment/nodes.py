"""Identifiers ID = (k, v1…vM, u), their statistics and the prefix plot."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib

matplotlib.use("Agg")  # nodes run headless
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cart_pipeline.core.quantize.ids import identifiers_for_variant
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix
from cart_pipeline.pipelines.tracking import log_metrics

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
    identifier_features: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    params: dict[str, Any],
    modality: str,
    seed: int,
) -> plt.Figure:
    """t-SNE of the features coloured by coarse token; a few first-fine-token groups outlined."""
    from scipy.spatial import ConvexHull
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    ids = semantic_ids.set_index("item_id").loc[identifier_features.item_id]
    features = column_to_matrix(identifier_features.embedding)
    reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
    perplexity = min(float(params.get("tsne_perplexity", 30)), (len(features) - 1) / 3)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        reduced
    )

    coarse = ids.coarse.to_numpy()
    fine = int_lists_to_matrix(ids.fine).reshape(len(ids), -1)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.scatter(xy[:, 0], xy[:, 1], c=coarse % 20, cmap="tab20", s=10, alpha=0.8, linewidths=0)
    if fine.shape[1]:
        largest = np.argsort(-np.bincount(coarse))[: int(params.get("plot_clusters_outlined", 4))]
        for k in largest:
            in_k = coarse == k
            first_fine = np.bincount(fine[in_k, 0]).argmax()
            members = xy[in_k & (fine[:, 0] == first_fine)]
            if len(members) >= 3:
                hull = ConvexHull(members)
                ring = np.append(hull.vertices, hull.vertices[0])
                ax.plot(members[ring, 0], members[ring, 1], "k-", lw=1)
                ax.annotate(f"c{k}-f{first_fine}", members.mean(0), fontsize=8, weight="bold")
    ax.set_title(
        f"{modality}: t-SNE of item features, colour = coarse token (K-Means);\noutlines: items sharing coarse and first fine token"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
