"""K-Means for the coarse token (and as a building block for the other quantisers).

Inputs are L2-normalised first, so squared Euclidean distance is 2 - 2·cos: clustering follows
the cosine geometry the encoders are trained for. Centroids are plain means of unit vectors (not
re-normalised): then the CART residual ``x - centroid[k]`` has zero mean within each cluster,
which is what the RQ-VAE should see.

Two back-ends, one result type:
- exact sklearn Lloyd (k-means++ init, a few seeded restarts) for small corpora, where quality
  matters more than seconds;
- FAISS k-means for large corpora: k-means++ seeding on a small sample, Lloyd on a seeded
  subsample of at most ``max_points_per_centroid`` points per centroid, then an exact
  assignment of every point.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

Method = Literal["auto", "full", "minibatch", "faiss"]
EXACT_MAX_POINTS = 20_000  # "auto" uses exact sklearn Lloyd up to this many points
_CHUNK = 65_536  # rows per block when computing distances (bounds temporary memory)


@dataclass(frozen=True)
class KMeansResult:
    centroids: np.ndarray  # (k, D) float32, in the L2-normalised space (if normalize=True)
    assignments: np.ndarray  # (N,) int64 cluster index of every point
    distances: np.ndarray  # (N,) float32 squared L2 distance to the assigned centroid

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise unit norm, float32. (N, D) -> (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def default_n_clusters(n_items: int) -> int:
    """~sqrt(N) clusters, clipped to [2, 1024] and never more than N.

    sqrt(N) balances the two halves of the identifier: ~sqrt(N) clusters of ~sqrt(N) items,
    so neither the coarse vocabulary nor the within-cluster collision groups blow up.
    """
    if n_items < 1:
        raise ValueError("need at least one item")
    return int(min(n_items, np.clip(round(np.sqrt(n_items)), 2, 1024)))


def assign_to_centroids(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every row: (N, D), (k, D) -> assignments (N,) int64, sq. dist (N,) f32."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64), np.maximum(dist[:, 0], 0).astype(np.float32)


def _sq_distances(x: np.ndarray, centroids: np.ndarray, assignments: np.ndarray) -> np.ndarray:
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), _CHUNK):  # blocks: (chunk, D) temporaries instead of (N, D)
        diff = x[s : s + _CHUNK] - centroids[assignments[s : s + _CHUNK]]
        out[s : s + _CHUNK] = np.einsum("nd,nd->n", diff, diff)
    return out


def _fit_sklearn(x: np.ndarray, k: int, seed: int, n_iter: int, minibatch: bool, n_init: int):
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    if minibatch:
        km = MiniBatchKMeans(
            n_clusters=k,
            random_state=seed,
            n_init=n_init,
            max_iter=n_iter,
            batch_size=min(len(x), 4096),
        )
        km.fit(x)
        return km.cluster_centers_, km.labels_
    # One thread: sklearn's parallel Lloyd sums per-thread partial centroids in completion
    # order, which makes the last float bits (and rarely an assignment) run-dependent.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # Duplicate points can leave fewer distinct clusters than k; that is fine here.
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        km = KMeans(n_clusters=k, n_init=n_init, max_iter=n_iter, random_state=seed).fit(x)
    return km.cluster_centers_, km.labels_


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D^2 sampling, no local trials): (m, D) -> (k, D) rows of x.

    O(k·m·D) with one mat-vec per centroid; sklearn's greedy variant is ~10x slower at k=1024.
    """
    m = len(x)
    sq = np.einsum("nd,nd->n", x, x)  # (m,)
    chosen = [int(rng.integers(m))]
    d2 = np.maximum(sq - 2 * (x @ x[chosen[0]]) + sq[chosen[0]], 0)  # (m,) to nearest chosen
    for _ in range(1, k):
        cum = np.cumsum(d2, dtype=np.float64)
        if cum[-1] > 0:
            i = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), m - 1)
        else:  # every point coincides with a chosen one (duplicates): any point will do
            i = int(rng.integers(m))
        chosen.append(i)
        np.minimum(d2, np.maximum(sq - 2 * (x @ x[i]) + sq[i], 0), out=d2)
    return x[chosen]


def _fit_faiss(x: np.ndarray, k: int, seed: int, n_iter: int, max_points_per_centroid: int):
    import faiss

    # FAISS starts from k random points, which easily puts two centroids in one cluster when k
    # is small; k-means++ on a small seeded sample (~4 points per centroid) avoids that cheaply.
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(len(x), min(len(x), 4 * k + 1000), replace=False))]
    init = kmeans_plusplus(sample, k, rng)
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=n_iter,
        seed=seed,
        verbose=False,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=1,  # only silences FAISS's "too few points" warning
    )
    km.train(x, init_centroids=init)  # Lloyd on <= k * max_points_per_centroid seeded samples
    return km.centroids, None


def fit_kmeans(
    x: np.ndarray,
    n_clusters: int,
    seed: int = 0,
    method: Method = "auto",
    n_iter: int | None = None,
    n_init: int = 3,
    max_points_per_centroid: int = 256,
    normalize: bool = True,
    verbose: bool = True,
) -> KMeansResult:
    """K-Means of the rows of x (N, D). Deterministic given seed (and thread count for FAISS).

    ``n_iter`` defaults to 300 (sklearn Lloyd, stops at convergence), 100 (mini-batch), 20 (FAISS).
    ``n_init`` seeded restarts apply to the sklearn methods (FAISS starts once, from k-means++).
    ``normalize=False`` clusters the raw vectors (e.g. RQ-VAE residuals, which are not directions).
    ``verbose=False`` logs the summary at DEBUG (for callers that fit many small k-means).
    """
    x = l2_normalize(x) if normalize else np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters={n_clusters} must be in [1, N={n}]")
    if method == "auto":
        method = "full" if n <= EXACT_MAX_POINTS else "faiss"
    start = time.perf_counter()
    if method in ("full", "minibatch"):
        iters = n_iter or (300 if method == "full" else 100)
        centroids, labels = _fit_sklearn(x, n_clusters, seed, iters, method == "minibatch", n_init)
    elif method == "faiss":
        centroids, labels = _fit_faiss(x, n_clusters, seed, n_iter or 20, max_points_per_centroid)
    else:
        raise ValueError(f"unknown k-means method {method!r}")
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    if labels is None:
        assignments, distances = assign_to_centroids(x, centroids)
    else:
        assignments = np.asarray(labels, dtype=np.int64)
        distances = _sq_distances(x, centroids, assignments)
    logger.log(
        logging.INFO if verbose else logging.DEBUG,
        "k-means (%s): %d x %d -> %d clusters in %.2fs, %d non-empty, mean sq. dist %.4f",
        method,
        n,
        x.shape[1],
        n_clusters,
        time.perf_counter() - start,
        len(np.unique(assignments)),
        float(distances.mean()),
    )
    return KMeansResult(centroids=centroids, assignments=assignments, distances=distances)
