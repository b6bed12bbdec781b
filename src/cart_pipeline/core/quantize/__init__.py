"""Quantisers and identifier assembly: coarse K-Means, RQ-VAE fine codes, hierarchical K-Means
(ablation), and the (coarse, fine…, unique) identifiers with their decoder vocabulary.

Importing this package does not import torch; ``rqvae`` does (import it from its module).
"""

from cart_pipeline.core.quantize.hierarchical import hierarchical_kmeans_codes, rank_within_groups
from cart_pipeline.core.quantize.ids import (
    SEMANTIC_ID_COLUMNS,
    SPECIAL_TOKENS,
    VARIANTS,
    VariantCodes,
    Vocabulary,
    assign_unique,
    atomic_identifiers,
    build_identifiers,
    extend_identifiers,
    fine_codes_for_variant,
    frozen_codes,
    identifier_stats,
    identifiers_for_variant,
)
from cart_pipeline.core.quantize.kmeans import (
    KMeansResult,
    assign_to_centroids,
    default_n_clusters,
    fit_kmeans,
    l2_normalize,
)

__all__ = [
    "SEMANTIC_ID_COLUMNS",
    "SPECIAL_TOKENS",
    "VARIANTS",
    "KMeansResult",
    "VariantCodes",
    "Vocabulary",
    "assign_to_centroids",
    "assign_unique",
    "atomic_identifiers",
    "build_identifiers",
    "default_n_clusters",
    "extend_identifiers",
    "fine_codes_for_variant",
    "frozen_codes",
    "fit_kmeans",
    "hierarchical_kmeans_codes",
    "identifier_stats",
    "identifiers_for_variant",
    "l2_normalize",
    "rank_within_groups",
]
