"""Identifier assembly: (coarse, fine…, unique) codes -> the ``semantic_ids`` table + vocabulary.

An identifier is ID = (k, v1…vM, u) (docs/architecture.md): k the coarse K-Means cluster, v1…vM the fine
codes, u a counter that separates items whose (k, v1…vM) prefix collides. Each position has its
own range in the decoder's vocabulary (after the special tokens), so "code 3 at the coarse
position" and "code 3 at fine level 2" are different tokens and a prefix trie over token ids is
unambiguous.

How the identifier variants (the paper's method and its ablations) map onto the functions here;
a Kedro node calls :func:`fine_codes_for_variant` and then :func:`identifiers_for_variant`:

- ``cart``: k = K-Means cluster (fit_kmeans); v = RQ-VAE with M levels (train_rqvae) on the
  residual l2norm(x) − centroid[k]; then build_identifiers adds u.
- ``rqvae_only`` (w/o K-Means): no K-Means; one RQ-VAE with M+1 levels on l2norm(x); k = its
  level-1 code, v = levels 2…M+1; then build_identifiers.
- ``hierarchical_kmeans`` (w/o RQ-VAE): k = K-Means cluster; v = hierarchical_kmeans_codes with
  branching K and depth M, run inside each coarse cluster (``within=coarse``: the coarse
  clustering is the first split); then build_identifiers.
- ``atomic``: one token per item, its index in item_id order (atomic_identifiers).

The unique token u is added by :func:`build_identifiers` for every non-atomic variant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from cart_pipeline.core.quantize.hierarchical import rank_within_groups
from cart_pipeline.core.quantize.kmeans import KMeansResult, l2_normalize
from cart_pipeline.core.tables import int_lists_column, int_lists_to_matrix

if TYPE_CHECKING:  # torch is only needed by the variants that train an RQ-VAE
    import torch

    from cart_pipeline.core.quantize.rqvae import RQVAE, RQVAEConfig

logger = logging.getLogger(__name__)

Variant = Literal["cart", "rqvae_only", "hierarchical_kmeans", "atomic"]
VARIANTS: tuple[str, ...] = ("cart", "rqvae_only", "hierarchical_kmeans", "atomic")
SPECIAL_TOKENS = {"PAD": 0, "BOS": 1}
SEMANTIC_ID_COLUMNS = ["item_id", "coarse", "fine", "unique", "tokens", "id_str"]


def assign_unique(prefix: np.ndarray) -> np.ndarray:
    """(N, P) int prefixes -> (N,) int64 u = 0, 1, 2… among rows sharing a prefix, in row order.

    Callers pass rows sorted by item_id, so u is stable: the same items get the same u.
    """
    prefix = np.asarray(prefix)
    prefix = prefix.reshape(len(prefix), -1) if prefix.size else prefix.reshape(len(prefix), 0)
    if prefix.shape[1] == 0:  # no prefix at all: everyone shares the empty one
        return np.arange(len(prefix), dtype=np.int64)
    group = np.unique(prefix, axis=0, return_inverse=True)[1].ravel()
    return rank_within_groups(group)


@dataclass
class Vocabulary:
    """Global token ids: special tokens first, then one contiguous range per position."""

    position_sizes: list[int]
    special_tokens: dict[str, int] = field(default_factory=lambda: dict(SPECIAL_TOKENS))
    offsets: list[int] = field(init=False)  # start of each position's range
    size: int = field(init=False)  # total decoder vocabulary

    def __post_init__(self):
        self.position_sizes = [int(s) for s in self.position_sizes]
        if any(s < 1 for s in self.position_sizes):
            raise ValueError(f"every position needs >= 1 code, got {self.position_sizes}")
        start = max(self.special_tokens.values(), default=-1) + 1
        self.offsets = [
            start + sum(self.position_sizes[:i]) for i in range(len(self.position_sizes))
        ]
        self.size = start + sum(self.position_sizes)

    @property
    def length(self) -> int:
        """Identifier length L (tokens per item)."""
        return len(self.position_sizes)

    def position_ranges(self) -> list[tuple[int, int]]:
        """Half-open [start, end) of each position's token ids."""
        return [(o, o + s) for o, s in zip(self.offsets, self.position_sizes, strict=True)]

    def to_tokens(self, codes: np.ndarray) -> np.ndarray:
        """(N, L) per-position codes -> (N, L) int64 global token ids."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.length)
        sizes = np.asarray(self.position_sizes)
        if ((codes < 0) | (codes >= sizes)).any():
            raise ValueError("a code lies outside its position's range")
        return codes + np.asarray(self.offsets, dtype=np.int64)

    def from_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """(N, L) global token ids -> (N, L) int64 per-position codes."""
        codes = np.asarray(tokens, dtype=np.int64).reshape(-1, self.length) - np.asarray(
            self.offsets, dtype=np.int64
        )
        if ((codes < 0) | (codes >= np.asarray(self.position_sizes))).any():
            raise ValueError("a token is not in its position's range")
        return codes

    def to_dict(self) -> dict:
        return {
            "special_tokens": dict(self.special_tokens),
            "position_sizes": list(self.position_sizes),
            "offsets": list(self.offsets),
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        vocab = cls(list(d["position_sizes"]), dict(d.get("special_tokens", SPECIAL_TOKENS)))
        if "offsets" in d and list(d["offsets"]) != vocab.offsets:
            raise ValueError("stored offsets disagree with the position sizes")
        return vocab


def _sorted_ids(item_ids) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(item_ids).astype(str)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("item_id values must be unique")
    order = np.argsort(ids, kind="stable")
    return ids[order], order


def _id_strings(coarse: np.ndarray, fine: np.ndarray, unique: np.ndarray) -> np.ndarray:
    """ "c12-f3-f200-f7-u0" for every row, built column-wise (no per-row Python)."""
    out = np.strings.add("c", coarse.astype(str))
    for m in range(fine.shape[1]):
        out = np.strings.add(np.strings.add(out, "-f"), fine[:, m].astype(str))
    return np.strings.add(np.strings.add(out, "-u"), unique.astype(str))


def build_identifiers(
    item_ids: Sequence[str] | np.ndarray | pd.Series,
    coarse: np.ndarray,
    fine: np.ndarray,
    coarse_size: int | None = None,
    fine_sizes: int | Sequence[int] | None = None,
) -> tuple[pd.DataFrame, Vocabulary, dict]:
    """Assemble the ``semantic_ids`` table, its vocabulary and collision statistics.

    item_ids (N,), coarse (N,), fine (N, M) aligned row by row, any order. Rows come out sorted
    by item_id and u is assigned in that order. ``coarse_size`` (e.g. the configured k) and
    ``fine_sizes`` (the codebook size, one int for all levels or one per level) fix the vocabulary;
    by default each position's size is its max code + 1.
    """
    ids, order = _sorted_ids(item_ids)
    coarse = np.asarray(coarse, dtype=np.int64).ravel()[order]  # (N,)
    fine = np.asarray(fine, dtype=np.int64).reshape(len(ids), -1)[order]  # (N, M)
    n, m = fine.shape
    unique = assign_unique(np.column_stack([coarse, fine]))  # (N,)
    if fine_sizes is None:
        fine_sizes = (fine.max(0) + 1).tolist() if n else [1] * m
    elif np.isscalar(fine_sizes):
        fine_sizes = [int(fine_sizes)] * m
    sizes = [
        coarse_size or int(coarse.max(initial=0)) + 1,
        *fine_sizes,
        int(unique.max(initial=0)) + 1,
    ]
    vocab = Vocabulary(sizes)
    tokens = vocab.to_tokens(np.column_stack([coarse, fine, unique]))  # (N, L), checks ranges
    if len(np.unique(tokens, axis=0)) != n:  # the point of u; a failure here is a bug upstream
        raise AssertionError("identifier token tuples are not unique")
    frame = pd.DataFrame({"item_id": ids, "coarse": coarse})
    frame["fine"] = int_lists_column(fine, index=frame.index)
    frame["unique"] = unique
    frame["tokens"] = int_lists_column(tokens, index=frame.index)
    frame["id_str"] = _id_strings(coarse, fine, unique)
    stats = identifier_stats(frame, vocab)
    logger.info(
        "identifiers: %d items, length %d, vocab %d, collision rate before u %.3f, max group %d",
        n,
        vocab.length,
        vocab.size,
        stats["collision_rate"],
        stats["max_collision_group"],
    )
    return frame, vocab, stats


def atomic_identifiers(item_ids) -> tuple[pd.DataFrame, Vocabulary, dict]:
    """One token per item: its index in item_id order (the "atomic ID" baseline)."""
    ids, _ = _sorted_ids(item_ids)
    index = np.arange(len(ids), dtype=np.int64)
    vocab = Vocabulary([max(len(ids), 1)])
    frame = pd.DataFrame({"item_id": ids, "coarse": index})
    frame["fine"] = int_lists_column(np.zeros((len(ids), 0), np.int64), index=frame.index)
    frame["unique"] = np.zeros(len(ids), np.int64)
    frame["tokens"] = int_lists_column(vocab.to_tokens(index[:, None]), index=frame.index)
    frame["id_str"] = np.strings.add("a", index.astype(str))
    return frame, vocab, identifier_stats(frame, vocab)


def identifier_stats(semantic_ids: pd.DataFrame, vocab: Vocabulary | None = None) -> dict:
    """Flat scalar statistics of a ``semantic_ids`` table (ready for MLflow metrics).

    collision_rate: share of items whose (coarse, fine…) prefix is shared with another item;
    max_collision_group: largest such group (= max u + 1); distinct_prefixes_depth_d: distinct
    identifiers (token sequences) cut to their first d tokens, d = 1…L; coarse_usage and
    fine_usage_l{m}: share of a position's codes in use (sizes from the vocabulary, else max + 1).
    """
    coarse = semantic_ids["coarse"].to_numpy(np.int64)  # (N,)
    fine = int_lists_to_matrix(semantic_ids["fine"]).reshape(len(coarse), -1)  # (N, M)
    tokens = int_lists_to_matrix(semantic_ids["tokens"]).reshape(len(coarse), -1)  # (N, L)
    n, m = fine.shape
    # items per distinct (coarse, fine…) prefix
    counts = np.unique(np.column_stack([coarse, fine]), axis=0, return_counts=True)[1]
    stats: dict = {
        "n_items": n,
        "id_length": tokens.shape[1],
        "n_fine_levels": m,
        "n_distinct_prefixes": len(counts),
        "collision_rate": float(counts[counts > 1].sum() / n) if n else 0.0,
        "max_collision_group": int(counts.max(initial=0)),
        "max_unique": int(semantic_ids["unique"].max()) if n else 0,
    }
    for d in range(1, tokens.shape[1] + 1):
        stats[f"distinct_prefixes_depth_{d}"] = len(np.unique(tokens[:, :d], axis=0))
    if vocab is not None:
        sizes = vocab.position_sizes
    else:
        sizes = [int(coarse.max(initial=0)) + 1, *(fine.max(0) + 1 if n else np.ones(m, int))]
    stats["coarse_usage"] = len(np.unique(coarse)) / sizes[0]
    for level in range(m):
        stats[f"fine_usage_l{level + 1}"] = len(np.unique(fine[:, level])) / sizes[1 + level]
    if vocab is not None:
        stats["vocab_size"] = vocab.size
    return stats


@dataclass
class VariantCodes:
    """What a variant's quantisation stage produces, rows aligned with the features."""

    coarse: np.ndarray  # (N,) int64; for rqvae_only this is the RQ-VAE's first level
    fine: np.ndarray  # (N, M) int64 (M = 0 for atomic)
    coarse_size: int | None  # vocabulary size of the coarse position (None: from the data)
    fine_size: int | None  # codes per fine level (codebook size / branching)
    model: RQVAE | None = None  # the trained RQ-VAE, if the variant has one
    history: list[dict] = field(default_factory=list)  # RQ-VAE training history
    diagnostics: dict = field(default_factory=dict)  # flat scalars


def fine_codes_for_variant(
    variant: Variant,
    features: np.ndarray,
    kmeans_result: KMeansResult | None,
    rq_config: RQVAEConfig,
    seed: int | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    device: str | torch.device = "cpu",
) -> VariantCodes:
    """Fine (and, for rqvae_only, coarse) codes of one variant; see the module docstring.

    features (N, D) raw candidate embeddings aligned with ``kmeans_result`` rows (which must come
    from fit_kmeans with its default normalize=True). ``rq_config`` gives M (n_levels) and K
    (codebook_size) for every variant, so ablations keep the identifier shape; ``seed``, if
    given, replaces rq_config.seed.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if seed is not None:
        rq_config = replace(rq_config, seed=int(seed))
    features = np.asarray(features, dtype=np.float32)
    n, m, k = len(features), rq_config.n_levels, rq_config.codebook_size
    if variant == "atomic":
        return VariantCodes(np.arange(n, dtype=np.int64), np.zeros((n, 0), np.int64), None, None)
    if variant == "rqvae_only":
        codes, model, history, diagnostics = _rqvae_codes(
            l2_normalize(features), replace(rq_config, n_levels=m + 1), on_epoch, device
        )  # (N, M+1)
        return VariantCodes(codes[:, 0], codes[:, 1:], k, k, model, history, diagnostics)
    if kmeans_result is None or len(kmeans_result.assignments) != n:
        raise ValueError(f"variant {variant!r} needs a k-means result aligned with the features")
    coarse, n_clusters = kmeans_result.assignments, kmeans_result.n_clusters
    if variant == "hierarchical_kmeans":
        from cart_pipeline.core.quantize.hierarchical import hierarchical_kmeans_codes

        fine = hierarchical_kmeans_codes(
            features, branching=k, depth=m, seed=rq_config.seed, within=coarse
        )
        return VariantCodes(coarse, fine, n_clusters, k)
    # cart: quantise what the coarse centroid does not explain
    residual = l2_normalize(features) - kmeans_result.centroids[coarse]  # (N, D)
    fine, model, history, diagnostics = _rqvae_codes(residual, rq_config, on_epoch, device)
    return VariantCodes(coarse, fine, n_clusters, k, model, history, diagnostics)


def _rqvae_codes(x: np.ndarray, rq_config: RQVAEConfig, on_epoch=None, device="cpu"):
    """RQ-VAE trained on x (N, D), or on a seeded sample of ``rq_config.train_max_items`` rows
    of it -> (codes of every row (N, M), model, history, diagnostics on the training rows)."""
    from cart_pipeline.core.quantize.rqvae import rqvae_diagnostics, train_rqvae

    train = x
    if rq_config.train_max_items is not None and len(x) > rq_config.train_max_items:
        rows = np.random.default_rng(rq_config.seed).choice(
            len(x), rq_config.train_max_items, replace=False
        )
        train = x[np.sort(rows)]
    model, history = train_rqvae(train, replace(rq_config, input_dim=x.shape[1]), on_epoch, device)
    return model.encode_codes(x), model, history, rqvae_diagnostics(model, train)


def identifiers_for_variant(
    variant: Variant,
    item_ids: Sequence[str] | np.ndarray | pd.Series,
    coarse: np.ndarray,
    fine: np.ndarray,
    coarse_size: int | None = None,
    fine_size: int | None = None,
) -> tuple[pd.DataFrame, Vocabulary, dict]:
    """``semantic_ids`` table, vocabulary and stats for a variant's codes (rows aligned with ids)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if variant == "atomic":
        return atomic_identifiers(item_ids)
    return build_identifiers(item_ids, coarse, fine, coarse_size=coarse_size, fine_sizes=fine_size)


def semantic_ids_from_tokens(item_ids: Sequence[str], tokens, vocab: Vocabulary) -> pd.DataFrame:
    """The ``semantic_ids`` table of identifiers given as (N, L) token ids (e.g. a decoder
    checkpoint's), rows sorted by item_id: the inverse of the table's ``tokens`` column."""
    ids, order = _sorted_ids(item_ids)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(len(ids), -1)[order]  # (N, L)
    codes = vocab.from_tokens(tokens)  # (N, L): coarse, fine…, unique
    frame = pd.DataFrame({"item_id": ids, "coarse": codes[:, 0]})
    frame["fine"] = int_lists_column(codes[:, 1:-1], index=frame.index)
    frame["unique"] = codes[:, -1]
    frame["tokens"] = int_lists_column(tokens, index=frame.index)
    frame["id_str"] = _id_strings(codes[:, 0], codes[:, 1:-1], codes[:, -1])
    return frame


def extend_identifiers(
    semantic_ids: pd.DataFrame,
    vocab: Vocabulary,
    item_ids: Sequence[str] | np.ndarray | pd.Series,
    coarse: np.ndarray,
    fine: np.ndarray,
) -> tuple[pd.DataFrame, Vocabulary, dict]:
    """Identifiers for new items beside an index's existing ones, which never change.

    ``coarse`` (N,) and ``fine`` (N, M) are the new items' codes from the *frozen* quantisers
    (:func:`frozen_codes`), so each lands beside the existing items it resembles. Its unique
    token continues after its prefix group's largest existing u (new items of one group in
    item_id order). The unique token is the identifier's last position, so growing its range
    appends token ids at the end of the vocabulary: every existing token id keeps its meaning.
    Returns (existing and new rows sorted by item_id, the vocabulary, stats of the whole).
    """
    ids, order = _sorted_ids(item_ids)
    clash = np.intersect1d(ids, semantic_ids["item_id"].to_numpy().astype(str))
    if len(clash):
        raise ValueError(
            f"{len(clash)} new item ids already have identifiers, e.g. {str(clash[0])!r}"
        )
    coarse = np.asarray(coarse, dtype=np.int64).ravel()[order]  # (N,)
    fine = np.asarray(fine, dtype=np.int64).reshape(len(ids), -1)[order]  # (N, M)
    old_coarse = semantic_ids["coarse"].to_numpy(np.int64)  # (E,)
    old_fine = int_lists_to_matrix(semantic_ids["fine"]).reshape(len(old_coarse), -1)  # (E, M)
    if fine.shape[1] != old_fine.shape[1] or vocab.length != fine.shape[1] + 2:
        raise ValueError(
            f"new codes have {fine.shape[1]} fine levels; the index's identifiers have "
            f"{old_fine.shape[1]} (length {vocab.length}): same quantisers needed"
        )
    # u: after the existing group's largest u, then 0, 1, 2… among the new items of the group
    prefixes = np.column_stack([np.concatenate([old_coarse, coarse]), np.vstack([old_fine, fine])])
    groups, group = np.unique(prefixes, axis=0, return_inverse=True)
    group = group.ravel()
    next_u = np.zeros(len(groups), np.int64)
    np.maximum.at(next_u, group[: len(old_coarse)], semantic_ids["unique"].to_numpy(np.int64) + 1)
    unique = next_u[group[len(old_coarse) :]] + rank_within_groups(group[len(old_coarse) :])
    sizes = list(vocab.position_sizes)
    sizes[-1] = max(sizes[-1], int(unique.max(initial=-1)) + 1)
    grown = Vocabulary(sizes, dict(vocab.special_tokens))
    tokens = grown.to_tokens(np.column_stack([coarse, fine, unique]))  # checks code ranges
    added = pd.DataFrame({"item_id": ids, "coarse": coarse})
    added["fine"] = int_lists_column(fine, index=added.index)
    added["unique"] = unique
    added["tokens"] = int_lists_column(tokens, index=added.index)
    added["id_str"] = _id_strings(coarse, fine, unique)
    frame = pd.concat([semantic_ids[SEMANTIC_ID_COLUMNS], added], ignore_index=True)
    frame = frame.sort_values("item_id", kind="stable", ignore_index=True)
    all_tokens = int_lists_to_matrix(frame["tokens"]).reshape(len(frame), -1)
    if len(np.unique(all_tokens, axis=0)) != len(frame):  # the point of u
        raise AssertionError("identifier token tuples are not unique")
    return frame, grown, identifier_stats(frame, grown)


def frozen_codes(
    features: np.ndarray, centroids: np.ndarray, rqvae: RQVAE
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) raw features -> coarse (N,) and fine (N, M) codes of the ``cart`` variant from an
    index's fitted K-Means centroids (K, D) and trained RQ-VAE, neither of which changes."""
    from cart_pipeline.core.quantize.kmeans import assign_to_centroids

    x = l2_normalize(np.asarray(features, dtype=np.float32))
    coarse = assign_to_centroids(x, centroids)[0].astype(np.int64)
    return coarse, rqvae.encode_codes(x - centroids[coarse])
