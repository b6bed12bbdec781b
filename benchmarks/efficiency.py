# ruff: noqa: T201, E402  (a benchmark prints; the thread policy must be set before the imports)
"""Efficiency of CART vs dense search from 10K to 1M candidates: throughput, latency, index memory.

    python benchmarks/efficiency.py                                  # full run (10K, 100K, 1M)
    python benchmarks/efficiency.py --sizes 10000 100000             # quick check
    python benchmarks/efficiency.py --threads 1 --sizes 1000000      # one thread setting, 1M only

Not part of the test suite (issue #8). What it does, per corpus size N:

1. Corpus: N candidate vectors (dim 512) from a seeded Gaussian mixture (``make_vectors``), L2
   normalised like encoder outputs; 100 queries are fresh draws from the same mixture.
2. CART index, built with the project's own code and timed stage by stage: coarse K-Means
   (``fit_kmeans``, k = ``default_n_clusters(N)``), RQ-VAE on the residual (``fine_codes_for_variant
   ("cart")`` up to ``--rqvae-train-max`` items; above that the same steps with the RQ-VAE trained
   on a seeded subsample of the residuals and ``encode_codes`` on all N), identifiers with the
   unique token (``identifiers_for_variant``) and the prefix trie (``IdentifierTrie``).
3. Decoder at the default size (``DecoderConfig``: 4 layers, d_model 256, 4 heads, two-branch
   fusion over S=7 text layers), vocabulary from ``Vocabulary.position_ranges()``. Untrained by
   default: the work of constrained beam search (beams x steps x layers, trie look-ups) does not
   depend on the weights. ``--train-steps`` runs ``train_decoder`` on synthetic pairs first.
   The decoder reads fixed random text states (100, S=7, T=16, 384): the text encoder is the same
   for every system, so it is measured once on its own (MiniLM ``encode_layers``, 100 queries).
4. Systems, each on one batch of 100 concurrent queries (as in the paper), top-10, one warm-up
   batch then repeated batches: CART constrained beam search (beam 10 and 20), exact dense search
   (torch matmul + topk over float32, as ``core.retrieval.dual_tower.search``), FAISS IndexFlatIP
   as shipped and with its BLAS path forced (faiss 1.15 sets
   ``distance_compute_blas_threshold`` = 128000, so a batch of 100 runs a per-query scan), and
   FAISS IndexHNSWFlat (M=32, efSearch 64/128, efConstruction 200 up to ``--hnsw-large-n`` and
   40 above it: 200 took 565 s at 100K on this loaded 2-core box, i.e. hours at 1M).
   Latency is per batch of 100 (p50/p99 over the repetitions; with 5-10 batches p99 is about the
   slowest one); q/s = 100 / mean batch time. All indexes of all sizes stay in memory and the
   timed batches run round-robin in a shuffled order, so drifting load from other processes
   hits every system and size alike; each row also records this process's CPU time per batch.
5. Index memory: CART = identifier token table (N x L int64) + trie arrays + decoder weights
   (float32); dense = float32 vectors (+ the HNSW graph: neighbour lists, offsets, levels).

Threads: every measurement runs under each ``--threads`` value (torch and FAISS/OpenMP together).
``OMP_WAIT_POLICY=PASSIVE`` is set unless the caller set it: on a shared, loaded machine the
default spinning OpenMP barrier made 2-thread element-wise ops ~50x slower (a descheduled
worker stalls every barrier). The load from other processes during each measurement is
recorded (``others_cores``: machine CPU time not spent by this process, in cores).

Outputs (``--out-dir``, default benchmarks/results/): efficiency.csv (one row per system, N,
threads), efficiency_build.csv (build stages and memory per N), efficiency.json (settings,
machine, load, identifier statistics), efficiency.png (q/s vs N, log-x), efficiency.md (tables).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import gc
import json
import logging
import math
import platform
import resource
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

log = logging.getLogger("benchmarks.efficiency")

DIM = 512
TOP_K = 10
TEXT_LAYERS, TEXT_LEN, TEXT_DIM = 7, 16, 384  # MiniLM-L6: embeddings + 6 layers, width 384


# -- machine load ------------------------------------------------------------------------------
def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """Wall time, this process's CPU time and the other processes' CPU use over a block."""

    def __enter__(self):
        self.wall, self.cpu, self.busy = time.perf_counter(), time.process_time(), _machine_busy_s()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.wall
        self.cpu_s = time.process_time() - self.cpu
        busy = _machine_busy_s() - self.busy
        self.others_cores = max(busy - self.cpu_s, 0.0) / max(self.wall_s, 1e-9)
        self.own_cores = self.cpu_s / max(self.wall_s, 1e-9)


def code_version() -> dict:
    """Commit and content hashes of the decoder/search code measured (others edit src/ too)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = {}
    try:
        out["git_head"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    for rel in (
        "decoder/model.py",
        "decoder/beam_search.py",
        "decoder/trie.py",
        "quantize/ids.py",
        "quantize/rqvae.py",
        "quantize/kmeans.py",
    ):
        path = root / "src/cart_pipeline/core" / rel
        if path.exists():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return out


def set_threads(n: int) -> None:
    import faiss

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KB -> GB (peak)


# -- data --------------------------------------------------------------------------------------
def make_vectors(n: int, n_modes: int, sigma: float, seed: int, stream: int) -> np.ndarray:
    """n unit vectors (n, 512) float32 from a Gaussian mixture.

    Mode centres c_j ~ N(0, I/512) (norm ~1), j = 1..n_modes, drawn from ``seed`` alone, so
    every corpus size and the queries share them; each point picks a mode uniformly and adds
    isotropic noise sigma * N(0, I/512), then is L2-normalised (cosine = inner product).
    ``stream`` separates the draws of the corpus (0) and of the queries (1).
    """
    centres = np.random.default_rng(seed).standard_normal((n_modes, DIM), dtype=np.float32)
    centres /= math.sqrt(DIM)
    rng = np.random.default_rng([seed, stream])
    x = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):  # blocks bound the temporaries
        b = x[s : s + 100_000]
        b[:] = rng.standard_normal(b.shape, dtype=np.float32)
        b *= sigma / math.sqrt(DIM)
        b += centres[rng.integers(0, n_modes, len(b))]
        b /= np.linalg.norm(b, axis=1, keepdims=True)
    return x


# -- measuring ---------------------------------------------------------------------------------
@dataclass
class Entry:
    """One (system, setting, N) to time: ``fn`` runs one batch of queries."""

    n: int
    system: str
    params: str
    fn: object
    index_bytes: int
    build_s: float
    recall: float | None = None
    note: str = ""
    max_reps: int | None = None  # cap for very slow entries (they still run in the first rounds)
    samples: list = field(default_factory=list)  # (wall s, own CPU s, others' cores) per batch


def measure_interleaved(entries: list[Entry], threads: int, args) -> list[dict]:
    """Round-robin: every round times one batch of every entry, in a fresh seeded order.

    Load from other processes drifts over minutes; interleaving makes every system and size see
    the same drift, so the ratios (size to size, system to system) are not skewed by it.
    Runs --min-reps rounds, then more up to --reps while under --max-seconds.
    """
    set_threads(threads)
    for e in entries:
        e.samples = []
        if e.max_reps is None:  # the capped entries take seconds per batch: no warm-up needed
            e.fn()
    rng, t_start, rounds = np.random.default_rng(threads), time.perf_counter(), 0
    while rounds < args.reps:
        for i in rng.permutation(len(entries)):
            if entries[i].max_reps is not None and len(entries[i].samples) >= entries[i].max_reps:
                continue
            with LoadMeter() as m:
                entries[i].fn()
            entries[i].samples.append((m.wall_s, m.cpu_s, m.others_cores))
        rounds += 1
        elapsed = time.perf_counter() - t_start
        log.info(
            "threads=%d round %d done, %.0fs, load %.2f",
            threads,
            rounds,
            elapsed,
            os.getloadavg()[0],
        )
        if rounds >= args.min_reps and elapsed > args.max_seconds:
            break
    rows = []
    for e in entries:
        wall, cpu, others = (np.array(v) for v in zip(*e.samples, strict=True))
        rows.append(
            {
                "n": e.n,
                "system": e.system,
                "params": e.params,
                "threads": threads,
                "batch": args.queries,
                "reps": len(wall),
                "qps": args.queries / wall.mean(),
                "p50_ms": float(np.percentile(wall, 50) * 1e3),
                "p99_ms": float(np.percentile(wall, 99) * 1e3),
                "mean_ms": float(wall.mean() * 1e3),
                "cpu_ms_per_batch": float(cpu.mean() * 1e3),
                "others_cores": round(float(np.median(others)), 2),
                "index_bytes": e.index_bytes,
                "build_s": e.build_s,
                "recall10_vs_exact": e.recall,
                "note": e.note,
            }
        )
        r = rows[-1]
        log.info(
            "N=%-8d %-12s %-24s t=%d %8.1f q/s  p50 %8.1f ms  p99 %8.1f ms  cpu %8.1f ms  others %.2f",
            e.n,
            e.system,
            e.params,
            threads,
            r["qps"],
            r["p50_ms"],
            r["p99_ms"],
            r["cpu_ms_per_batch"],
            r["others_cores"],
        )
    return rows


def measure(fn, args) -> dict:
    """Warm-up, then --min-reps..--reps batches (used for the text encoder only)."""
    fn()
    times = []
    with LoadMeter() as load:
        while len(times) < args.reps:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= args.min_reps and sum(times) > args.max_seconds / 4:
                break
    t = np.array(times)
    return {
        "reps": len(t),
        "qps": args.queries / t.mean(),
        "p50_ms": float(np.median(t) * 1e3),
        "others_cores": round(load.others_cores, 2),
    }


def recall_vs_exact(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k found (mean over queries)."""
    return float(
        np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)])
    )


# -- CART index --------------------------------------------------------------------------------
@dataclass
class CartIndex:
    trie: object
    vocab: object
    tokens: np.ndarray  # (N, L) int64 global token ids, row i = item i
    decoder: torch.nn.Module
    build_s: dict[str, float] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def build_cart(x: np.ndarray, args) -> CartIndex:
    from cart_pipeline.core.decoder import CartDecoder, DecoderConfig, IdentifierTrie
    from cart_pipeline.core.quantize.ids import fine_codes_for_variant, identifiers_for_variant
    from cart_pipeline.core.quantize.kmeans import default_n_clusters, fit_kmeans
    from cart_pipeline.core.quantize.rqvae import RQVAEConfig, train_rqvae
    from cart_pipeline.core.tables import int_lists_to_matrix

    n, build = len(x), {}
    k = default_n_clusters(n)
    t0 = time.perf_counter()
    km = fit_kmeans(x, k, seed=args.seed)
    build["kmeans_s"] = time.perf_counter() - t0

    rq_config = RQVAEConfig(epochs=args.rqvae_epochs, seed=args.seed)
    t0 = time.perf_counter()
    if n <= args.rqvae_train_max:  # the pipeline's own call (trains on all N, + diagnostics)
        codes = fine_codes_for_variant("cart", x, km, rq_config)
        coarse, fine, fine_size = codes.coarse, codes.fine, codes.fine_size
        rq_note = f"fine_codes_for_variant, trained on all {n}"
    else:  # same steps as its "cart" branch, RQ-VAE trained on a subsample, all N encoded
        residual = x - km.centroids[km.assignments]  # x is unit-norm: = l2norm(x) - centroid
        sub = np.sort(np.random.default_rng(args.seed).choice(n, args.rqvae_train_max, False))
        model, _ = train_rqvae(residual[sub], replace(rq_config, input_dim=DIM))
        coarse, fine, fine_size = (
            km.assignments,
            model.encode_codes(residual),
            rq_config.codebook_size,
        )
        del residual, model
        rq_note = f"train_rqvae on {args.rqvae_train_max} sampled, encode_codes on all {n}"
    build["rqvae_s"] = time.perf_counter() - t0

    item_ids = np.strings.add("c", np.strings.zfill(np.arange(n).astype(str), 8))  # sorted = row
    t0 = time.perf_counter()
    frame, vocab, id_stats = identifiers_for_variant("cart", item_ids, coarse, fine, k, fine_size)
    build["ids_s"] = time.perf_counter() - t0
    tokens = int_lists_to_matrix(frame["tokens"])
    id_table_bytes = frame["tokens"].array.__arrow_array__().nbytes  # as semantic_ids stores it
    assert (frame["item_id"].to_numpy() == item_ids).all()  # row i of the table is item i
    del frame
    t0 = time.perf_counter()
    trie = IdentifierTrie.from_tokens(tokens)
    build["trie_s"] = time.perf_counter() - t0

    torch.manual_seed(args.seed)
    decoder = CartDecoder(
        DecoderConfig(vocab_size=vocab.size, position_ranges=vocab.position_ranges())
    ).eval()
    build["decoder_train_s"] = (
        train_decoder_synthetic(decoder, tokens, args) if args.train_steps else 0.0
    )
    build["total_s"] = sum(build.values())
    stats = {
        "id_table_bytes": id_table_bytes,
        "n_clusters": k,
        "rqvae": rq_note,
        "rqvae_epochs": args.rqvae_epochs,
        "id_length": vocab.length,
        "vocab_size": vocab.size,
        "position_sizes": vocab.position_sizes,
        "trie_nodes": trie.n_nodes,
        **{key: id_stats[key] for key in ("collision_rate", "max_collision_group")},
    }
    return CartIndex(trie, vocab, tokens, decoder, build, stats)


class FixedStatesEncoder:
    """Stand-in text encoder for training: text "q<i>" -> seeded random states (1, S, T, H)."""

    def encode_layers(self, texts):
        layers = torch.stack(
            [
                torch.randn(
                    TEXT_LAYERS,
                    TEXT_LEN,
                    TEXT_DIM,
                    generator=torch.Generator().manual_seed(int(t[1:])),
                )
                for t in texts
            ]
        )
        return layers, torch.ones(len(texts), TEXT_LEN, dtype=torch.bool)


def train_decoder_synthetic(decoder, tokens: np.ndarray, args) -> float:
    """``train_decoder`` for ~--train-steps steps on (random query state, random item) pairs."""
    from cart_pipeline.core.decoder import TrainConfig, train_decoder

    batch, n_pairs = 32, 32 * args.train_steps
    items = np.random.default_rng(args.seed).integers(0, len(tokens), n_pairs)
    t0 = time.perf_counter()
    train_decoder(
        decoder,
        [f"q{i}" for i in range(n_pairs)],
        items,
        torch.from_numpy(tokens),
        FixedStatesEncoder(),
        TrainConfig(epochs=1, batch_size=batch, seed=args.seed, progress=False),
    )
    decoder.eval()
    return time.perf_counter() - t0


def cart_memory(index: CartIndex) -> dict:
    return {
        "id_table_bytes": index.stats["id_table_bytes"],  # Arrow list<int32> tokens column
        "trie_bytes": index.trie.nbytes(),
        "decoder_bytes": sum(p.numel() * p.element_size() for p in index.decoder.parameters()),
    }


# -- HNSW ----------------------------------------------------------------------------------------
def hnsw_graph_bytes(index) -> int:
    h = index.hnsw
    return h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4


def build_hnsw(x: np.ndarray, ef_construction: int, args):
    import faiss

    index = faiss.IndexHNSWFlat(DIM, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    t0 = time.perf_counter()
    index.add(x)
    return index, time.perf_counter() - t0


# -- one corpus size -------------------------------------------------------------------------------
def build_size(n: int, args, queries: np.ndarray, states, mask):
    """Build every index for N; returns the entries to time and the build row."""
    import faiss

    from cart_pipeline.core.decoder import constrained_beam_search

    entries, build_row = [], {"n": n}
    log.info("=== N=%d  load %s  RSS peak %.1f GB", n, os.getloadavg(), rss_gb())
    set_threads(args.build_threads)
    t0 = time.perf_counter()
    x = make_vectors(n, args.modes, args.sigma, args.seed, stream=0)
    build_row["data_s"] = time.perf_counter() - t0
    vec_bytes = build_row["vectors_bytes"] = x.nbytes

    with LoadMeter() as load:
        cart = build_cart(x, args)
    build_row.update({f"cart_{k}": v for k, v in cart.build_s.items()})
    build_row["cart_build_others_cores"] = round(load.others_cores, 2)
    mem = cart_memory(cart)
    build_row.update(mem)
    build_row.update(
        {
            f"cart_{k}": v
            for k, v in cart.stats.items()
            if not isinstance(v, list) and k != "id_table_bytes"
        }
    )
    build_row["id_table_int64_bytes"] = (
        cart.tokens.nbytes
    )  # the (N, L) matrix the trie is built from
    log.info("CART build %s, memory %s, stats %s", cart.build_s, mem, cart.stats)
    for beam in args.beams:
        entries.append(
            Entry(
                n,
                "CART",
                f"beam={beam}",
                lambda b=beam, c=cart: constrained_beam_search(
                    c.decoder, states, mask, c.trie, b, TOP_K
                ),
                sum(mem.values()),
                cart.build_s["total_s"],
            )
        )

    X, Q = torch.from_numpy(x), torch.from_numpy(queries)
    exact_ids = (Q @ X.T).topk(TOP_K, dim=-1).indices.numpy()
    entries.append(
        Entry(
            n,
            "exact-torch",
            "matmul+topk",
            lambda: (Q @ X.T).topk(TOP_K, dim=-1),
            vec_bytes,
            0.0,
            1.0,
        )
    )

    flat = faiss.IndexFlatIP(DIM)
    t0 = time.perf_counter()
    flat.add(x)
    build_row["faiss_flat_s"] = time.perf_counter() - t0
    default_threshold = faiss.cvar.distance_compute_blas_threshold

    def flat_search(blas_threshold):
        faiss.cvar.distance_compute_blas_threshold = blas_threshold
        try:
            return flat.search(queries, TOP_K)
        finally:
            faiss.cvar.distance_compute_blas_threshold = default_threshold

    for name, threshold in (("default", default_threshold), ("blas", 20)):
        recall = recall_vs_exact(flat_search(threshold)[1], exact_ids)
        entries.append(
            Entry(
                n,
                "faiss-flat",
                f"IndexFlatIP,{name}",
                lambda t=threshold: flat_search(t),
                vec_bytes,
                build_row["faiss_flat_s"],
                recall,
                f"distance_compute_blas_threshold={threshold}",
                max_reps=3 if name == "default" else None,  # ~10x slower: 3 batches suffice
            )
        )

    if not args.skip_hnsw:
        large = n > args.hnsw_large_n
        ef_c = args.hnsw_ef_construction_large if large else args.hnsw_ef_construction
        hnsw, hnsw_s = build_hnsw(x, ef_c, args)
        graph = hnsw_graph_bytes(hnsw)
        build_row.update(
            {"hnsw_ef_construction": ef_c, "hnsw_build_s": hnsw_s, "hnsw_graph_bytes": graph}
        )
        note = f"efConstruction {ef_c} above N={args.hnsw_large_n} (build time)" if large else ""
        log.info("HNSW build N=%d efC=%d: %.1fs, graph %.1f MB", n, ef_c, hnsw_s, graph / 2**20)

        def hnsw_search(ef_s, index=hnsw):
            index.hnsw.efSearch = ef_s
            return index.search(queries, TOP_K)

        for ef_s in args.ef_search:
            recall = recall_vs_exact(hnsw_search(ef_s)[1], exact_ids)
            entries.append(
                Entry(
                    n,
                    "hnsw",
                    f"M={args.hnsw_m},efC={ef_c},efS={ef_s}",
                    lambda e=ef_s: hnsw_search(e),
                    vec_bytes + graph,
                    hnsw_s,
                    recall,
                    note,
                )
            )
    gc.collect()
    build_row["peak_rss_gb"] = rss_gb()
    return entries, build_row


def measure_text_encoder(args) -> list[dict]:
    from cart_pipeline.core.encoders.text import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    rng = np.random.default_rng(args.seed)
    adjectives = [
        "brown",
        "small",
        "red",
        "happy",
        "old",
        "shiny",
        "wooden",
        "striped",
        "tiny",
        "green",
    ]
    nouns = ["hen", "dog", "guitar", "truck", "apple", "house", "bird", "boat", "clock", "flower"]
    texts = [
        f"a {rng.choice(adjectives)} {rng.choice(nouns)} next to a {rng.choice(nouns)}"
        for _ in range(args.queries)
    ]
    out = []
    for threads in args.threads:
        set_threads(threads)
        res = measure(lambda: encoder.encode_layers(texts), args)
        layers, _ = encoder.encode_layers(texts)
        out.append({"threads": threads, "tokens_T": int(layers.shape[2]), **res})
        log.info(
            "MiniLM encode_layers, 100 queries, T=%d, t=%d: %.1f q/s, p50 %.1f ms",
            layers.shape[2],
            threads,
            res["qps"],
            res["p50_ms"],
        )
    return out


# -- reporting ---------------------------------------------------------------------------------
def fmt_n(n: int) -> str:
    return (
        f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}K" if n % 1000 == 0 else str(n)
    )


def label(r) -> str:
    system, params = r["system"], r["params"]
    if system == "hnsw":
        return "HNSW efS=" + params.split("efS=")[1]
    if system == "faiss-flat":
        return "FAISS IndexFlatIP " + ("(BLAS)" if params.endswith("blas") else "(default)")
    return {"CART": f"CART {params.replace('=', ' ')}", "exact-torch": "exact (torch matmul+topk)"}[
        system
    ]


def write_plot(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thread_values = sorted(df["threads"].unique())
    fig, axes = plt.subplots(
        1, len(thread_values), figsize=(6.5 * len(thread_values), 4.6), squeeze=False
    )
    for ax, threads in zip(axes[0], thread_values, strict=True):
        sub = df[df["threads"] == threads].copy()
        sub["label"] = sub.apply(label, axis=1)
        for name, g in sub.groupby("label", sort=False):
            g = g.sort_values("n")
            style = "-o" if name.startswith("CART") else "--s" if "HNSW" in name else ":^"
            ax.plot(g["n"], g["qps"], style, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("candidates N")
        ax.set_ylabel("queries/s (batch of 100, top-10)")
        ax.set_title(f"{threads} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def optional_cell(row: pd.Series, key: str, fmt) -> str:
    """A table cell for a column only some runs have (HNSW is skipped without hnswlib)."""
    return fmt(row[key]) if key in row and not pd.isna(row[key]) else "–"


def write_markdown(df, build, text_rows, meta, path: Path) -> dict:
    sizes = sorted(df["n"].unique())
    big, small = sizes[-1], sizes[0]
    lines = [f"Machine: {meta['machine']}; load: {meta['load_note']}.", ""]
    targets = {}
    for threads in sorted(df["threads"].unique()):
        sub = df[df["threads"] == threads].copy()
        sub["label"] = sub.apply(label, axis=1)
        lines += [
            f"**Throughput, {threads} thread(s)** (queries/s, batch of 100 queries, top-10; "
            f"latency = time per batch of 100, at N={fmt_n(big)})",
            "",
        ]
        head = "| system | " + " | ".join(f"q/s @ {fmt_n(n)}" for n in sizes)
        head += (
            f" | p50 ms @ {fmt_n(big)} | p99 ms @ {fmt_n(big)} | CPU ms/batch @ {fmt_n(big)}"
            f" | recall@10 vs exact @ {fmt_n(big)} |"
        )
        lines += [head, "|---" * (len(sizes) + 5) + "|"]
        for name, g in sub.groupby("label", sort=False):
            g = g.set_index("n")
            cells = [f"{g.loc[n, 'qps']:.1f}" if n in g.index else "–" for n in sizes]
            last = g.loc[big] if big in g.index else None
            rec = (
                ""
                if last is None or pd.isna(last["recall10_vs_exact"])
                else f"{last['recall10_vs_exact']:.3f}"
            )
            lat = (
                ["–"] * 3
                if last is None
                else [f"{last[c]:.0f}" for c in ("p50_ms", "p99_ms", "cpu_ms_per_batch")]
            )
            lines.append(
                f"| {name} | " + " | ".join(cells) + " | " + " | ".join(lat) + f" | {rec} |"
            )
        lines.append("")
        cart = sub[sub["system"] == "CART"]
        exact = sub[sub["system"] == "exact-torch"].set_index("n")
        blas = sub[sub["params"] == "IndexFlatIP,blas"].set_index("n")
        for params, g in cart.groupby("params"):
            q = g.set_index("n")
            targets[f"t{threads} CART {params}: q/s {fmt_n(big)} / {fmt_n(small)}"] = (
                q.qps[big] / q.qps[small]
            )
            targets[f"t{threads} CART {params}: CPU per batch {fmt_n(big)} / {fmt_n(small)}"] = (
                q.cpu_ms_per_batch[big] / q.cpu_ms_per_batch[small]
            )
            targets[f"t{threads} CART {params} / exact-torch q/s at {fmt_n(big)}"] = (
                q.qps[big] / exact.qps[big]
            )
            targets[f"t{threads} CART {params} / FAISS-flat-BLAS q/s at {fmt_n(big)}"] = (
                q.qps[big] / blas.qps[big]
            )
    b = build.set_index("n")
    lines += [
        "**Index memory** (MB; CART = identifier token table + trie + decoder weights)",
        "",
        "| N | CART ids | CART trie | decoder | CART total | % of float32 vectors | float32 vectors | HNSW graph |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        r = b.loc[n]
        cart_total = r["id_table_bytes"] + r["trie_bytes"] + r["decoder_bytes"]
        graph = optional_cell(r, "hnsw_graph_bytes", lambda v: f"{v / 2**20:.0f}")
        lines.append(
            f"| {fmt_n(n)} | {r['id_table_bytes'] / 2**20:.1f} | {r['trie_bytes'] / 2**20:.1f} | "
            f"{r['decoder_bytes'] / 2**20:.1f} | {cart_total / 2**20:.1f} | "
            f"{100 * cart_total / r['vectors_bytes']:.1f}% | {r['vectors_bytes'] / 2**20:.0f} | {graph} |"
        )
        targets[f"CART memory % of vectors at {fmt_n(n)}"] = 100 * cart_total / r["vectors_bytes"]
    lines += [
        "",
        f"**Index build** (seconds, {meta['build_threads']} thread(s))",
        "",
        "| N | k-means (k) | RQ-VAE | IDs (+u) | trie | CART total | FAISS flat add | HNSW build (efC) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        r = b.loc[n]
        hn = optional_cell(
            r, "hnsw_build_s", lambda v, r=r: f"{v:.0f} ({int(r['hnsw_ef_construction'])})"
        )
        lines.append(
            f"| {fmt_n(n)} | {r['cart_kmeans_s']:.1f} ({int(r['cart_n_clusters'])}) | {r['cart_rqvae_s']:.1f} | "
            f"{r['cart_ids_s']:.1f} | {r['cart_trie_s']:.2f} | {r['cart_total_s']:.0f} | "
            f"{r['faiss_flat_s']:.1f} | {hn} |"
        )
        targets[f"CART build seconds at {fmt_n(n)}"] = r["cart_total_s"]
    lines.append("")
    for t in text_rows:
        lines.append(
            f"Query encoding (MiniLM-L6 `encode_layers`, all 7 layers, 100 queries, T={t['tokens_T']}, "
            f"{t['threads']} thread(s)): {t['qps']:.0f} q/s, p50 {t['p50_ms']:.0f} ms per batch "
            "(the same for every system, excluded above)."
        )
    lines += ["", "**Targets (issue #8)**", "", *target_table(df, build, fmt_n(small), fmt_n(big))]
    lines += ["", "Notes:", ""]
    for n in sizes:
        r = b.loc[n]
        lines.append(
            f"- N={fmt_n(n)}: identifiers (k, v1, v2, v3, u), vocabulary {int(r['cart_vocab_size'])}, "
            f"{100 * r['cart_collision_rate']:.0f}% of items share their (k, v1..v3) prefix before u, "
            f"largest group {int(r['cart_max_collision_group'])}; RQ-VAE: {r['cart_rqvae']}."
        )
    hn = (
        build.dropna(subset=["hnsw_ef_construction"])
        if "hnsw_ef_construction" in build
        else build[:0]
    )
    low = hn[hn["hnsw_ef_construction"] != meta["args"]["hnsw_ef_construction"]]
    for _, r in low.iterrows():
        lines.append(
            f"- HNSW at N={fmt_n(int(r['n']))} was built with efConstruction "
            f"{int(r['hnsw_ef_construction'])} (not {meta['args']['hnsw_ef_construction']}) to keep "
            f"the build in minutes ({r['hnsw_build_s']:.0f} s); its recall@10 is in the tables."
        )
    lines.append(
        "- CART rows: untrained decoder, fixed random text states (T=16); the work of beam search "
        "does not depend on the weights. Dense rows: queries are 512-d vectors (query tower excluded)."
    )
    lines.append("- Code measured: " + ", ".join(f"{k} {v}" for k, v in meta["code"].items()) + ".")
    path.write_text("\n".join(lines) + "\n")
    return targets


def target_table(df: pd.DataFrame, build: pd.DataFrame, small: str, big: str) -> list[str]:
    """The issue's targets with the measured values, per thread setting and beam."""

    def ratios(fn) -> tuple[str, list[bool]]:
        cells, oks = [], []
        for (params, threads), g in df[df["system"] == "CART"].groupby(["params", "threads"]):
            value, ok = fn(g.set_index("n"), threads)
            cells.append(f"{params.replace('=', ' ')}, {threads}t: {value:.2f}")
            oks.append(ok)
        return "; ".join(cells), oks

    n_small, n_big = df["n"].min(), df["n"].max()

    def per_system(system, params=None):
        sub = df[(df["system"] == system) & ((df["params"] == params) if params else True)]
        return sub.set_index(["threads", "n"])["qps"]

    exact, blas = per_system("exact-torch"), per_system("faiss-flat", "IndexFlatIP,blas")

    def flat(q, t):
        r = q.qps[n_big] / q.qps[n_small]
        return r, 0.8 <= r <= 1.2

    def vs(ref, factor):
        def f(q, t):
            r = q.qps[n_big] / ref[(t, n_big)]
            return r, r >= factor

        return f

    def met(oks):
        return "yes" if all(oks) else "no" if not any(oks) else f"{sum(oks)} of {len(oks)}"

    rows = [
        "| target | measured | met |",
        "|---|---|---|",
    ]
    text, oks = ratios(flat)
    rows.append(
        f"| CART q/s at {big} within ±20% of {small} (ratio {big}/{small}) | {text} | {met(oks)} |"
    )
    text, oks = ratios(vs(exact, 3.0))
    rows.append(f"| CART q/s ≥ 3× exact dense (torch) at {big} | {text} | {met(oks)} |")
    text, _ = ratios(vs(blas, 3.0))
    rows.append(f"| (for reference) CART q/s / FAISS IndexFlatIP BLAS at {big} | {text} | – |")
    r = build.set_index("n").loc[n_big]
    pct = 100 * (r["id_table_bytes"] + r["trie_bytes"] + r["decoder_bytes"]) / r["vectors_bytes"]
    rows.append(
        f"| CART index ≤ 5% of the float32 vectors at {big} | {pct:.1f}% | {met([pct <= 5])} |"
    )
    rows.append(
        f"| CART index build at {big} in minutes | {r['cart_total_s'] / 60:.1f} min | "
        f"{met([r['cart_total_s'] < 30 * 60])} |"
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="thread counts to measure queries under (torch + FAISS)",
    )
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--beams", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--queries", type=int, default=100, help="queries per batch (concurrent)")
    ap.add_argument("--reps", type=int, default=10, help="max timed batches per measurement")
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=15.0,
        help="stop repeating after this many seconds once --min-reps are done",
    )
    ap.add_argument("--modes", type=int, default=4096, help="Gaussian-mixture components")
    ap.add_argument("--sigma", type=float, default=0.5, help="noise scale relative to the centres")
    ap.add_argument("--rqvae-epochs", type=int, default=5)
    ap.add_argument(
        "--rqvae-train-max",
        type=int,
        default=100_000,
        help="above this N the RQ-VAE trains on a sample of this many residuals",
    )
    ap.add_argument(
        "--train-steps",
        type=int,
        default=0,
        help="decoder training steps (batch 32) before measuring; 0 = untrained",
    )
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--hnsw-ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 128])
    ap.add_argument(
        "--hnsw-ef-construction-large",
        type=int,
        default=40,
        help="efConstruction above --hnsw-large-n (200 at 1M takes hours on 2 cores)",
    )
    ap.add_argument("--hnsw-large-n", type=int, default=100_000)
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--skip-text-encoder", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started, load_start = time.perf_counter(), os.getloadavg()

    queries = make_vectors(args.queries, args.modes, args.sigma, args.seed, stream=1)
    gen = torch.Generator().manual_seed(args.seed)
    states = torch.randn(args.queries, TEXT_LAYERS, TEXT_LEN, TEXT_DIM, generator=gen)
    mask = torch.ones(args.queries, TEXT_LEN, dtype=torch.bool)

    text_rows = [] if args.skip_text_encoder else measure_text_encoder(args)
    entries, build_rows = [], []
    for n in sorted(args.sizes):
        e, b = build_size(n, args, queries, states, mask)
        entries += e
        build_rows.append(b)
        pd.DataFrame(build_rows).to_csv(args.out_dir / "efficiency_build.csv", index=False)
    rows = []
    for threads in args.threads:
        rows += measure_interleaved(entries, threads, args)
        pd.DataFrame(rows).to_csv(args.out_dir / "efficiency.csv", index=False)

    df, build = pd.DataFrame(rows), pd.DataFrame(build_rows)
    others = df["others_cores"]
    meta = {
        "command": "python benchmarks/efficiency.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
        "build_threads": args.build_threads,
        "load_note": f"1-min load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
        f"other processes used {others.min():.1f}-{others.max():.1f} cores "
        f"(median {others.median():.1f}) during the timed batches",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "total_runtime_s": time.perf_counter() - started,
        "peak_rss_gb": rss_gb(),
        "text_encoder": text_rows,
        "deterministic_debug_mode": torch.get_deterministic_debug_mode(),
        "code": code_version(),
    }
    title = (
        f"CART vs dense search, batch of {args.queries} queries, dim {DIM}, {meta['machine']}\n"
        f"{meta['load_note']}"
    )
    write_plot(df, args.out_dir / "efficiency.png", title)
    meta["ratios"] = write_markdown(df, build, text_rows, meta, args.out_dir / "efficiency.md")
    (args.out_dir / "efficiency.json").write_text(json.dumps(meta, indent=2, default=float))
    print((args.out_dir / "efficiency.md").read_text())
    log.info("done in %.0fs, peak RSS %.1f GB", meta["total_runtime_s"], meta["peak_rss_gb"])


if __name__ == "__main__":
    main()
