# ruff: noqa: T201  (a benchmark prints its table)
"""Throughput (queries/s) of trie-constrained beam search vs corpus size.

Synthetic corpus of N identifiers (k, v1, v2, v3, u): random coarse/fine codes plus the unique
counter for collisions, default-size decoder (d=256, 4 layers, fusion on), random text states
for a batch of queries (text encoding excluded). Also compares the KV-cache and the
prefix-recompute decoding paths.

    python benchmarks/beam_search_speed.py [--sizes 1000 10000 100000] [--beams 10 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cart_pipeline.core.decoder import (
    CartDecoder,
    DecoderConfig,
    IdentifierTrie,
    constrained_beam_search,
)


def synthetic_identifiers(
    n: int, k: int = 256, codebook: int = 256, levels: int = 3, seed: int = 0
):
    """(n, levels+2) global token ids and the position ranges of their vocabulary."""
    rng = np.random.default_rng(seed)
    codes = np.concatenate([rng.integers(0, k, (n, 1)), rng.integers(0, codebook, (n, levels))], 1)
    # unique counter: rank of each row among the rows sharing its (k, v1..vM) tuple
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    grp = inverse.ravel()[order]
    first = np.r_[0, np.flatnonzero(np.diff(grp)) + 1]
    u = np.empty(n, dtype=np.int64)
    u[order] = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    sizes = [k] + [codebook] * levels + [int(u.max()) + 1]
    starts = 2 + np.cumsum([0] + sizes[:-1])  # PAD=0, BOS=1, then one range per position
    ranges = [(int(s), int(s + z)) for s, z in zip(starts, sizes, strict=True)]
    ids = np.concatenate([codes, u[:, None]], 1) + starts[None]
    return torch.from_numpy(ids), ranges, int(starts[-1] + sizes[-1])


def bench(model, trie, layers, mask, beam, kv, repeats):
    constrained_beam_search(
        model, layers[:8], mask[:8], trie, beam, beam, use_kv_cache=kv
    )  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        constrained_beam_search(model, layers, mask, trie, beam, beam, use_kv_cache=kv)
        times.append(time.perf_counter() - t0)
    return layers.shape[0] / min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--beams", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--text-len", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = torch.randn(args.queries, 7, args.text_len, 384, device=args.device)
    mask = torch.ones(args.queries, args.text_len, dtype=torch.bool, device=args.device)
    mask[:, args.text_len // 2 :] = (
        torch.rand(args.queries, 1, device=args.device) < 0.5
    )  # mixed lengths
    print(
        f"device={args.device} threads={torch.get_num_threads()} queries/batch={args.queries} L=5"
    )
    print(
        f"{'N':>8} {'V':>6} {'trie MB':>8} {'beam':>5} {'recompute q/s':>14} {'kv-cache q/s':>13}"
    )
    for n in args.sizes:
        ids, ranges, vocab = synthetic_identifiers(n)
        trie = IdentifierTrie.from_tokens(ids).to(args.device)
        model = (
            CartDecoder(DecoderConfig(vocab_size=vocab, position_ranges=ranges))
            .to(args.device)
            .eval()
        )
        for beam in args.beams:
            rec = bench(model, trie, layers, mask, beam, False, args.repeats)
            kv = bench(model, trie, layers, mask, beam, True, args.repeats)
            print(
                f"{n:>8} {vocab:>6} {trie.nbytes() / 2**20:>8.2f} {beam:>5} {rec:>14.1f} {kv:>13.1f}"
            )


if __name__ == "__main__":
    main()
