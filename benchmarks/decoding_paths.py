# ruff: noqa: T201  (a benchmark prints its table)
"""Side by side: the decoder's fine-branch paths and the deterministic-mode NaN fill (#16).

Beam search over N synthetic identifiers (default-size decoder, untrained: the work does not
depend on the weights) for one batch of real MiniLM query states, 1 thread, in alternating
rounds so that every variant sees the same machine load; the median round is reported.

  folded     the fine branch's K/V folded into the queries (`fine_attention`; what inference
             ran before, and what training runs): its K/V weights cannot be int8
  projected  K/V projected once per query (`fine_heads`, inference now): every projection an
             ordinary linear layer, so int8 covers them too
  fill       torch's deterministic mode filling every new tensor with NaN (what the pipeline's
             `seed_everything` left on until it switched it off)

    python -m benchmarks.decoding_paths [--size 1000000] [--beam 10] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

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


def int8(decoder: CartDecoder, keep_fine_kv_float: bool) -> CartDecoder:
    """Dynamic int8 of the linear layers, but the head (and the fine K/V if asked)."""
    excluded = ("head", "fine.kv") if keep_fine_kv_float else ("head",)
    names = {
        name
        for name, module in decoder.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith(excluded)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(decoder, names, dtype=torch.qint8)


def memory(decoder: CartDecoder, layers: torch.Tensor, mask: torch.Tensor, projected: bool):
    """The query memory for one path: eval mode projects the fine K/V, train mode folds them."""
    decoder.train(not projected)
    with torch.inference_mode():
        mem = decoder.encode_memory(layers, mask)
    decoder.eval()
    return mem


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
    layers, mask = MiniLMTextEncoder().encode_layers(query_texts(args.queries, 0))
    torch.use_deterministic_algorithms(True, warn_only=True)  # as the pipeline runs it

    # name -> (decoder, projected, fill)
    variants = {
        "float32 folded, fill (before)": (decoder, False, True),
        "float32 folded": (decoder, False, False),
        "float32 projected (now)": (decoder, True, False),
        "int8 folded, fill (before)": (int8(decoder, keep_fine_kv_float=True), False, True),
        "int8 folded": (int8(decoder, keep_fine_kv_float=True), False, False),
        "int8 projected (now)": (int8(decoder, keep_fine_kv_float=False), True, False),
    }
    seconds = {name: [] for name in variants}
    found = {}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, (model, projected, fill) in variants.items():
            torch.utils.deterministic.fill_uninitialized_memory = fill
            started = time.perf_counter()
            mem = memory(model, layers, mask, projected)
            items, _ = constrained_beam_search(
                model, layers, mask, trie, args.beam, args.beam, memory=mem
            )
            if round_:
                seconds[name].append(time.perf_counter() - started)
            found[name] = items
    torch.utils.deterministic.fill_uninitialized_memory = False

    print(
        f"N={args.size:,} beam={args.beam} queries={args.queries} 1 thread, median of "
        f"{args.rounds} alternating rounds"
    )
    base = {"float32": "float32 folded, fill (before)", "int8": "int8 folded, fill (before)"}
    print(f"{'variant':<32} {'q/s':>7} {'x before':>9} {'same top-k as before':>21}")
    for name, times in seconds.items():
        before = base[name.split()[0]]
        qps = args.queries / statistics.median(times)
        ratio = statistics.median(seconds[before]) / statistics.median(times)
        same = float(np.mean(found[name].numpy() == found[before].numpy()))
        print(f"{name:<32} {qps:>7.1f} {ratio:>9.2f} {same:>21.3f}")


if __name__ == "__main__":
    main()
