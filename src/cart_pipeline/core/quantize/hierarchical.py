"""Hierarchical K-Means codes, as in DSI (Tay et al. 2022) and T2VIndexer.

This is CART's "w/o RQ-VAE" ablation: instead of quantising residuals with learnt codebooks,
every group of items is split again by K-Means on the (L2-normalised) features, one level per
token. A group that already has <= branching members is not clustered any further: its items
get their position 0..n-1 in the group (input row order) and the remaining levels are 0, which
keeps the codes short and collision-free exactly where clustering has nothing left to say.

The loop runs level by level over all groups at once: group ids come from np.unique on the
(group, code) pairs, and small groups are numbered in one vectorised pass; only the K-Means fits
of the groups that are still too large are a Python loop.
"""

from __future__ import annotations

import logging

import numpy as np

from cart_pipeline.core.quantize.kmeans import fit_kmeans, l2_normalize

logger = logging.getLogger(__name__)


def rank_within_groups(group: np.ndarray) -> np.ndarray:
    """(N,) group labels -> (N,) int64: 0, 1, 2… among rows of the same group, in row order."""
    group = np.asarray(group).ravel()
    n = len(group)
    order = np.argsort(group, kind="stable")  # stable: ties keep row order
    sorted_group = group[order]
    is_start = np.ones(n, dtype=bool)
    is_start[1:] = sorted_group[1:] != sorted_group[:-1]
    positions = np.arange(n)
    group_start = np.maximum.accumulate(np.where(is_start, positions, 0))  # (N,) in sorted order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = positions - group_start
    return rank


def hierarchical_kmeans_codes(
    x: np.ndarray,
    branching: int,
    depth: int,
    seed: int = 0,
    within: np.ndarray | None = None,
) -> np.ndarray:
    """(N, D) features -> (N, depth) int64 codes, each in [0, branching).

    ``within`` (N,) optional initial partition (e.g. the coarse K-Means cluster): codes are then
    built inside each of its groups, i.e. it acts as the split before level 0.
    Groups larger than ``branching`` at the last level keep colliding codes (the unique token
    resolves them).
    """
    if branching < 2 or depth < 1:
        raise ValueError("need branching >= 2 and depth >= 1")
    x = l2_normalize(x)
    n = len(x)
    codes = np.zeros((n, depth), dtype=np.int64)
    group = (
        np.zeros(n, np.int64)
        if within is None
        else np.unique(np.asarray(within), return_inverse=True)[1].ravel()
    )
    active = np.arange(n)  # rows whose group is still being split
    n_fits = 0
    for level in range(depth):
        if len(active) == 0:
            break
        sizes = np.bincount(group[active])  # (G,) members per group among active rows
        small = sizes[group[active]] <= branching  # (A,)
        done = active[small]
        codes[done, level] = rank_within_groups(group[done])  # position in group; later levels 0
        big = active[~small]
        big = big[np.argsort(group[big], kind="stable")]  # contiguous groups, row order inside
        for members in np.split(big, np.flatnonzero(np.diff(group[big])) + 1) if len(big) else []:
            km = fit_kmeans(x[members], branching, seed=seed, method="auto", verbose=False)
            codes[members, level] = km.assignments
            n_fits += 1
        # children: one group per distinct (parent group, code) pair
        group = np.unique(np.column_stack([group, codes[:, level]]), axis=0, return_inverse=True)[
            1
        ].ravel()
        active = np.sort(big)
    logger.info(
        "hierarchical k-means: %d items, branching %d, depth %d: %d k-means fits, %d distinct codes",
        n,
        branching,
        depth,
        n_fits,
        len(np.unique(codes, axis=0)) if n else 0,
    )
    return codes
