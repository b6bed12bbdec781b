"""int8 vs float32 CART decoding on a trained index: recall and search speed, side by side.

    python benchmarks/int8_decoding.py --project . --modality image [--version V]

Loads one trained decoder through the project's catalog (`Retriever.load`, the same path as
`cart-search`), ranks the held-out test queries with the float32 index and with its int8
copy (`CartIndex.int8`: dynamic quantisation of the linear layers), alternating the two for
`--repeats` rounds on one thread so machine load hits both alike. Reports R@1/R@10 with 95 %
bootstrap CIs, the paired int8 − float32 difference, and the search-only q/s ratio (the text
encoding is the same MiniLM pass for both and is excluded). Writes nothing; prints markdown.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cart_pipeline.core.metrics import metrics_from_ranks, paired_comparison
from cart_pipeline.search import Retriever


def ranks_of(found: np.ndarray, scores: np.ndarray, relevant: np.ndarray, depth: int) -> np.ndarray:
    """1-based rank of each query's relevant item in its row, every item with an equal score
    counted ahead of it (ties against the relevant item); depth + 1 when absent."""
    hit = found == relevant[:, None]
    own = np.where(hit.any(1), scores[np.arange(len(found)), hit.argmax(1)], np.inf)
    return np.where(hit.any(1), (scores >= own[:, None]).sum(1), depth + 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--modality", default="image")
    parser.add_argument(
        "--version", default=None, help="decoder save version (default: the evaluated one)"
    )
    parser.add_argument("--beam-size", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    retriever = Retriever.load(args.project, version=args.version, modalities=[args.modality])
    fp32 = retriever.indexes[args.modality]
    systems = {"float32": fp32, "int8": fp32.int8()}
    queries = pd.read_parquet(
        args.project / f"data/02_intermediate/{args.modality}/queries.parquet"
    )
    test = queries[(queries.split == "test") & queries.item_id.isin(fp32.item_ids)]
    relevant = pd.Index(fp32.item_ids).get_indexer(test.item_id)
    texts = test.text.tolist()

    seconds: dict[str, list[float]] = {name: [] for name in systems}
    found: dict[str, np.ndarray] = {}
    scored: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, index in systems.items():  # alternate: load drifts hit both
            top, score, timing = index.search(
                texts, top_k=args.top_k, beam_size=args.beam_size, batch_size=args.batch_size
            )
            seconds[name].append(timing["decode_s"])
            found[name] = top
            scored[name] = score
    ranks = {name: ranks_of(top, scored[name], relevant, args.top_k) for name, top in found.items()}

    print(
        f"{args.modality}: decoder {fp32.version}, {len(texts)} test queries, corpus {len(fp32.item_ids)}, "  # noqa: T201
        f"beam {args.beam_size}, batch {args.batch_size}, 1 thread, {args.repeats} alternating rounds\n"
    )
    print("| decoder | R@1 [95 % CI] | R@10 [95 % CI] | MRR@10 | search s (median) | q/s search |")  # noqa: T201
    print("|---|---|---|---|---|---|")  # noqa: T201
    for name in systems:
        m = metrics_from_ranks(ranks[name], 1000, 0)
        s = statistics.median(seconds[name])
        print(  # noqa: T201
            f"| {name} | {m['R@1']:.3f} [{m['R@1_ci95'][0]:.3f}, {m['R@1_ci95'][1]:.3f}] | "
            f"{m['R@10']:.3f} [{m['R@10_ci95'][0]:.3f}, {m['R@10_ci95'][1]:.3f}] | {m['MRR@10']:.3f} | "
            f"{s:.2f} | {len(texts) / s:.1f} |"
        )
    diff = paired_comparison(ranks["int8"], ranks["float32"], 1000, 0)
    ratios = [f / i for f, i in zip(seconds["float32"], seconds["int8"], strict=True)]
    print(  # noqa: T201
        f"\nint8 − float32: R@1 {diff['R@1']['diff']:+.3f} {np.round(diff['R@1']['diff_ci95'], 3).tolist()}, "
        f"R@10 {diff['R@10']['diff']:+.3f} {np.round(diff['R@10']['diff_ci95'], 3).tolist()}; "
        f"same top-1 on {np.mean(found['int8'][:, 0] == found['float32'][:, 0]):.1%} of queries; "
        f"speed-up {statistics.median(ratios):.2f}x (per-round ratios {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
