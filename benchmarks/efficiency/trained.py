"""Beam size and int8 on a *trained* index: R@1/R@10 (95 % bootstrap CIs) and q/s, side by side.

    python -m benchmarks.efficiency.trained --project . [--modality image] [--version V]
    python -m benchmarks.efficiency.trained --project . --versions V1 V2 --labels base small

Loads the evaluated decoder through the project's catalog (`Retriever.load`, as `cart-search`
does) and ranks the held-out test queries with it and with its int8 copy (`CartIndex.int8`) at
each beam, on one thread, alternating the two decoders round by round so machine load hits both
alike. With ``--versions`` it compares those decoders (e.g. the decoder-size levers) instead,
float32 each, in the same alternating rounds. Ranks go through the evaluation's own `rankings_frame` / `relevant_ranks` (ties against
the relevant item); a beam below 10 returns only that many items. Writes beam_curve.csv beside
the synthetic results; `python -m benchmarks.efficiency.tables` puts it in efficiency.md.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cart_pipeline.core.metrics import (
    metrics_from_ranks,
    paired_comparison,
    rankings_frame,
    relevant_ranks,
)
from cart_pipeline.core.retrieval.cart import native_bf16
from cart_pipeline.search import Retriever

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEPTH = 10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--modality", default="image")
    parser.add_argument("--version", help="decoder save version (default: the evaluated one)")
    parser.add_argument("--versions", nargs="+", help="compare these decoder versions instead")
    parser.add_argument("--labels", nargs="+", help="a name per --versions entry")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "beam_curve.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    def index(version):
        return Retriever.load(args.project, version=version, modalities=[args.modality]).indexes[
            args.modality
        ]

    if args.versions:
        labels = args.labels or args.versions
        decoders = {label: index(v) for label, v in zip(labels, args.versions, strict=True)}
        fp32 = next(iter(decoders.values()))
    else:
        fp32 = index(args.version)
        decoders = {"float32": fp32, "int8": fp32.int8()}
        if native_bf16():  # int8 runs the fine branch in bf16 here: also without, side by side
            decoders["int8, fp32 fine branch"] = fp32.int8(bf16_fine=False)
    queries = pd.read_parquet(
        args.project / f"data/02_intermediate/{args.modality}/queries.parquet"
    )
    test = queries[(queries.split == "test") & queries.item_id.isin(fp32.item_ids)]
    texts = test.text.tolist()

    seconds = {(d, b): [] for d in decoders for b in args.beams}  # (encode s, decode s) per round
    ranks = {}
    for _ in range(args.repeats):
        for beam in args.beams:
            for name, decoder in decoders.items():  # alternate: load drifts hit all alike
                top, scores, timing = decoder.search(
                    texts, top_k=min(beam, DEPTH), beam_size=beam, batch_size=args.batch_size
                )
                seconds[name, beam].append((timing["encode_s"], timing["decode_s"]))
                rankings = rankings_frame(test.query_id.tolist(), decoder.item_ids, top, scores)
                ranks[name, beam] = (
                    relevant_ranks(rankings, test[["query_id", "item_id"]], DEPTH)
                    .loc[test.query_id]
                    .to_numpy()
                )

    rows = []
    note = (
        f"{args.modality}, decoders {', '.join(str(d.version) for d in decoders.values())}, "
        f"{len(texts)} test queries, corpus "
        f"{len(fp32.item_ids)}, batch {args.batch_size}, 1 thread, median of {args.repeats} "
        "alternating rounds"
    )
    for (name, beam), times in seconds.items():
        m = metrics_from_ranks(ranks[name, beam], 1000, 0)
        encode = statistics.median(t[0] for t in times)
        search = statistics.median(t[1] for t in times)
        row = {"decoder": name, "beam": beam, "note": note}
        for metric in ("R@1", "R@10"):
            row[metric], (row[f"{metric}_lo"], row[f"{metric}_hi"]) = m[metric], m[f"{metric}_ci95"]
        row["MRR@10"] = m["MRR@10"]
        row["qps_search"] = len(texts) / search
        row["qps_with_encoding"] = len(texts) / (search + encode)
        first = next(iter(decoders))
        if name != first:  # paired against the first decoder (float32, or the first version)
            diff = paired_comparison(ranks[name, beam], ranks[first, beam], 1000, 0)["R@10"]
            row[f"R@10_minus_{first}"], row[f"R@10_minus_{first}_ci95"] = (
                diff["diff"],
                np.round(diff["diff_ci95"], 4).tolist(),
            )
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["decoder", "beam"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(note)  # noqa: T201
    print(table.drop(columns="note").to_string(index=False))  # noqa: T201


if __name__ == "__main__":
    main()
