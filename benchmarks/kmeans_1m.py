"""Benchmark: coarse K-Means at corpus scale (default 1M x 512 float32, k=1024, 2 threads).

    python benchmarks/kmeans_1m.py [--n 1000000 --dim 512 --k 1024 --threads 2 --method auto]

Data is a seeded mixture of Gaussians (so clusters exist to be found). Reports seconds for the
fit (FAISS training on its subsample + exact assignment of all N points) and the mean squared
distance to the assigned centroid; ``--out`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

import numpy as np

logger = logging.getLogger("benchmarks.kmeans_1m")


def make_data(n: int, dim: int, n_modes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_modes, dim), dtype=np.float32)
    x = rng.standard_normal((n, dim), dtype=np.float32)  # noise, in place below
    x *= 0.5
    for s in range(0, n, 100_000):  # add each point's mode block by block (bounded temporaries)
        x[s : s + 100_000] += centers[rng.integers(0, n_modes, min(100_000, n - s))]
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", default="auto", choices=["auto", "full", "minibatch", "faiss"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="optional JSON file for the result")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    # Thread counts must be pinned before the numeric libraries start their pools.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    from cart_pipeline.core.quantize.kmeans import fit_kmeans

    start = time.perf_counter()
    x = make_data(args.n, args.dim, n_modes=4 * args.k, seed=args.seed)
    data_s = time.perf_counter() - start
    logger.info(
        "generated %d x %d float32 (%.1f GB) in %.1fs", args.n, args.dim, x.nbytes / 1e9, data_s
    )

    start = time.perf_counter()
    result = fit_kmeans(x, args.k, seed=args.seed, method=args.method)
    fit_s = time.perf_counter() - start
    out = {
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "threads": args.threads,
        "method": args.method,
        "fit_seconds": round(fit_s, 2),
        "mean_sq_distance": float(result.distances.mean()),
        "non_empty_clusters": int(len(np.unique(result.assignments))),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    logger.info("result: %s", json.dumps(out))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
