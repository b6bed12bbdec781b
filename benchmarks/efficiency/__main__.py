# ruff: noqa: E402  (the OpenMP wait policy must be set before torch and faiss load)
"""CART vs dense search from 10K to 1M candidates: q/s (search only and with query encoding),
latency, recall@10 vs exact, index memory and build time. Not part of the test suite.

    python -m benchmarks.efficiency                          # 10K, 100K, 1M (make benchmark)
    python -m benchmarks.efficiency --sizes 10000 100000     # a quick check
    python -m benchmarks.efficiency.tables                   # redraw tables + plot from the CSVs
    python -m benchmarks.efficiency.trained --project .      # beam curve + int8 on the default set

Per corpus size N (synthetic unit vectors, `systems.make_vectors`), every system is built with
the same budget at every N and timed on the same batch of 100 query texts, round-robin
(`harness.measure_interleaved`): CART at several beams and its int8 copy (the project's
`CartIndex`, untrained decoder), exact torch matmul + topk, FAISS IndexFlatIP (BLAS), HNSW
(one efConstruction for every N) and IVF-PQ (a memory budget like CART's). See
benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP barriers stall on a busy box

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.efficiency import systems, tables
from benchmarks.efficiency.harness import (
    Entry,
    LoadMeter,
    code_version,
    measure_interleaved,
    peak_rss_gb,
    recall_vs_exact,
    set_threads,
)
from cart_pipeline.core.encoders.text import MiniLMTextEncoder
from cart_pipeline.core.retrieval.cart import native_bf16

log = logging.getLogger("benchmarks.efficiency")
RESULTS = Path(__file__).resolve().parents[1] / "results"


def build_size(n: int, args, texts: list[str], queries: np.ndarray, encoder) -> tuple[list, dict]:
    """Every system over one corpus of N: the entries to time and the build row."""
    set_threads(args.build_threads)
    x = systems.make_vectors(n, args.modes, args.sigma, args.seed, stream=0)
    build = {"n": n, "vectors_bytes": x.nbytes}
    exact_ids = systems.exact_torch(x)(queries)
    entries: list[Entry] = []

    def add(system, params, run, index_bytes, build_s, found=None, max_reps=None):
        recall = None if found is None else recall_vs_exact(found, exact_ids)
        entries.append(Entry(n, system, params, run, index_bytes, build_s, recall, max_reps))

    with LoadMeter() as meter:
        cart, stages, stats = systems.build_cart(
            x, encoder, args.seed, args.rqvae_epochs, args.rqvae_train_max
        )
    build.update({f"cart_{k}": v for k, v in {**stages, **stats}.items()})
    build["cart_build_s"] = meter.wall_s
    build["cart_bytes"] = systems.cart_bytes(cart)
    for beam in args.beams:
        add("CART", f"beam={beam}", systems.cart_runner(cart, texts, beam), build["cart_bytes"],
            meter.wall_s)  # fmt: skip
    int8 = cart.int8()
    build["cart_int8_bytes"] = systems.cart_bytes(int8)
    for beam in args.int8_beams:
        add("CART-int8", f"beam={beam}", systems.cart_runner(int8, texts, beam),
            build["cart_int8_bytes"], meter.wall_s)  # fmt: skip
    if native_bf16():  # CART-int8 runs its fine branch in bf16: the same without, side by side
        add("CART-int8-fp32-fine", "beam=10", systems.cart_runner(cart.int8(bf16_fine=False),
            texts, 10), build["cart_int8_bytes"], meter.wall_s)  # fmt: skip

    def dense(system, params, search, index_bytes, build_s, max_reps=None):
        run = systems.dense_runner(search, queries, texts, encoder)
        add(system, params, run, index_bytes, build_s, search(queries), max_reps)

    dense("exact-torch", "matmul+topk", systems.exact_torch(x), x.nbytes, 0.0)
    with LoadMeter() as meter:
        flat, flat_search = systems.faiss_flat(x)
    build["flat_build_s"] = meter.wall_s
    dense("faiss-flat", "IndexFlatIP,BLAS", flat_search, systems.faiss_bytes(flat), meter.wall_s)

    if not args.skip_hnsw:
        with LoadMeter() as meter:
            hnsw, hnsw_search = systems.faiss_hnsw(x, args.hnsw_m, args.hnsw_ef_construction)
        build["hnsw_build_s"], build["hnsw_bytes"] = meter.wall_s, systems.faiss_bytes(hnsw)
        log.info("HNSW N=%d built in %.0f s", n, meter.wall_s)
        for ef in args.ef_search:
            dense("hnsw", f"M={args.hnsw_m},efC={args.hnsw_ef_construction},efS={ef}",
                  hnsw_search(ef), build["hnsw_bytes"], meter.wall_s)  # fmt: skip

    with LoadMeter() as meter:
        ivfpq, ivfpq_search = systems.faiss_ivfpq(x, args.ivfpq_bytes, args.seed)
    build["ivfpq_build_s"], build["ivfpq_bytes"] = meter.wall_s, systems.faiss_bytes(ivfpq)
    build["ivfpq_nlist"] = ivfpq.nlist  # sqrt(N), as CART's coarse k
    for nprobe in args.nprobe:
        dense("ivf-pq", f"PQ{args.ivfpq_bytes},nprobe={nprobe}",
              ivfpq_search(nprobe), build["ivfpq_bytes"], meter.wall_s)  # fmt: skip
    build["peak_rss_gb"] = peak_rss_gb()
    log.info("N=%d built: %s", n, {k: v for k, v in build.items() if k.endswith("_s")})
    return entries, build


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="query-time threads")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--beams", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    ap.add_argument("--int8-beams", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--queries", type=int, default=100, help="queries per (concurrent) batch")
    ap.add_argument("--reps", type=int, default=7, help="at most this many timed rounds")
    ap.add_argument("--min-reps", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=90.0)
    ap.add_argument("--modes", type=int, default=4096, help="Gaussian-mixture components")
    ap.add_argument("--sigma", type=float, default=0.5, help="noise relative to the centres")
    ap.add_argument("--rqvae-epochs", type=int, default=5)
    ap.add_argument("--rqvae-train-max", type=int, default=100_000)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument(
        "--hnsw-ef-construction",
        type=int,
        default=40,
        help="the same at every N (200 takes hours at 1M on 2 cores)",
    )
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--ivfpq-bytes", type=int, default=64, help="PQ code bytes per vector")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]

    encoder = MiniLMTextEncoder()
    texts = systems.query_texts(args.queries, args.seed)
    queries = systems.make_vectors(args.queries, args.modes, args.sigma, args.seed, stream=1)
    entries, builds = [], []
    for n in sorted(args.sizes):
        e, b = build_size(n, args, texts, queries, encoder)
        entries += e
        builds.append(b)
        pd.DataFrame(builds).to_csv(args.out_dir / "efficiency_build.csv", index=False)
    rows = []
    for threads in args.threads:
        rows += measure_interleaved(
            entries, threads, args.queries, args.reps, args.min_reps, args.max_seconds
        )
        pd.DataFrame(rows).to_csv(args.out_dir / "efficiency.csv", index=False)
    others = pd.DataFrame(rows)["others_cores"]
    meta = {
        "command": "python -m benchmarks.efficiency " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}",
        "load": f"1-min load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at "
        f"end; other processes used {others.min():.1f}-{others.max():.1f} cores (median "
        f"{others.median():.1f}) during the timed batches",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runtime_s": time.perf_counter() - started,
        "peak_rss_gb": peak_rss_gb(),
        "code": code_version(),
    }
    (args.out_dir / "efficiency.json").write_text(json.dumps(meta, indent=2))
    print(tables.write_all(args.out_dir))  # noqa: T201


if __name__ == "__main__":
    main()
