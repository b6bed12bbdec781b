# ruff: noqa: T201  (a benchmark prints its table)
"""Side by side: beam search with and without the deterministic mode's NaN fill (#16).

torch's deterministic mode (`seed_everything`) also fills every new tensor with NaN
(`torch.utils.deterministic.fill_uninitialized_memory`), a debugging aid the project now
switches off. Beam search over N synthetic identifiers (default-size decoder, untrained: the
work does not depend on the weights) for one batch of real MiniLM query states, 1 thread,
float32 and int8, in alternating rounds so that every variant sees the same machine load; the
median round is reported.

    python -m benchmarks.nan_fill [--size 1000000] [--beam 10] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks.beam_search_speed import synthetic_identifiers
from benchmarks.efficiency.systems import query_texts
from cart_pipeline.core.decoder import (
    CartDecoder,
    DecoderConfig,
    IdentifierTrie,
    constrained_beam_search,
)
from cart_pipeline.core.encoders.text import MiniLMTextEncoder
from cart_pipeline.core.quantize import default_n_clusters
from cart_pipeline.core.retrieval.cart import CartIndex


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    ids, ranges, vocab = synthetic_identifiers(args.size, k=default_n_clusters(args.size))
    trie = IdentifierTrie.from_tokens(ids)
    decoder = CartDecoder(DecoderConfig(vocab_size=vocab, position_ranges=ranges)).eval()
    int8 = CartIndex(decoder, trie, np.arange(args.size), None).int8().decoder
    layers, mask = MiniLMTextEncoder().encode_layers(query_texts(args.queries, 0))
    torch.use_deterministic_algorithms(True, warn_only=True)  # as the pipeline runs it

    variants = {  # name -> (decoder, fill)
        "float32, NaN fill (before)": (decoder, True),
        "float32 (now)": (decoder, False),
        "int8, NaN fill (before)": (int8, True),
        "int8 (now)": (int8, False),
    }
    seconds = {name: [] for name in variants}
    found = {}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, (model, fill) in variants.items():
            torch.utils.deterministic.fill_uninitialized_memory = fill
            started = time.perf_counter()
            items, _ = constrained_beam_search(model, layers, mask, trie, args.beam, args.beam)
            if round_:
                seconds[name].append(time.perf_counter() - started)
            found[name] = items
    torch.utils.deterministic.fill_uninitialized_memory = False

    print(
        f"N={args.size:,} beam={args.beam} queries={args.queries} 1 thread, median of "
        f"{args.rounds} alternating rounds"
    )
    print(f"{'variant':<28} {'q/s':>7} {'x before':>9} {'same top-k':>11}")
    for name, times in seconds.items():
        dtype = name.split(",")[0].split()[0]
        before = f"{dtype}, NaN fill (before)"
        qps = args.queries / statistics.median(times)
        ratio = statistics.median(seconds[before]) / statistics.median(times)
        same = float(np.mean(found[name].numpy() == found[before].numpy()))
        print(f"{name:<28} {qps:>7.1f} {ratio:>9.2f} {same:>11.3f}")


if __name__ == "__main__":
    main()
