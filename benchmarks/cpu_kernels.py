"""Same seed, other CPU kernels: how much of a trained index survives a change of instruction set.

torch, MKL and oneDNN pick their float kernels by the CPU's instruction set (AVX2, AVX-512,
AMX): the sums come out in another order, the last bits differ, and training amplifies them.
This runs every stage after feature extraction twice on this machine, for one modality and
one seed: once with the kernels the CPU picks, once pinned to AVX2 (what an AVX2-only machine
picks: `ATEN_CPU_CAPABILITY=avx2`, `MKL_CBWR=AVX2`, `ONEDNN_MAX_CPU_ISA=AVX2`), then compares
the identifiers item by item and every system's metrics. Needs the features (`kedro run
--pipelines ingest,feature_extraction` or any full run) in the project.

    python -m benchmarks.cpu_kernels [--modality image] [--seed 2025] [--project .]

Writes benchmarks/results/cpu_kernels.{csv,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from experiments.runs import data_dir, kedro_run, markdown_table, saved_metrics, stages

KERNELS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
SYSTEMS = ("cart", "dual_tower", "pair_lookup")
RESULTS = Path(__file__).parent / "results"


def newest_identifiers(project: Path, modality: str) -> dict[str, str]:
    folder = data_dir(project) / "05_model_input" / modality / "semantic_ids.parquet"
    versions = sorted(folder.glob("*"))
    table = pq.read_table(versions[-1] / "semantic_ids.parquet", columns=["item_id", "id_str"])
    return dict(zip(*table.to_pydict().values(), strict=True))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modality", default="image")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--project", type=Path, default=Path.cwd())
    args = ap.parse_args(argv)
    project = args.project.resolve()
    identifiers, metrics = {}, {}
    for name, env in KERNELS.items():
        params = {"modalities": [args.modality], "seed": args.seed, "run_label": f"kernels-{name}"}
        kedro_run(project, stages("captioning"), params, environ=env)
        identifiers[name] = newest_identifiers(project, args.modality)
        metrics[name] = saved_metrics(project)[-1]["by_modality"][args.modality]

    native, avx2 = identifiers["native"], identifiers["avx2"]
    same_ids = sum(native[item] == avx2[item] for item in native) / len(native)
    rows = [
        {"what": "identifiers equal (share of items)", "native": 1.0, "avx2": same_ids},
        *(
            {"what": f"{system} {metric}", **{k: metrics[k][system][metric] for k in KERNELS}}
            for system in SYSTEMS
            for metric in ("R@1", "R@10", "MRR@10")
        ),
        {
            "what": "cart validation MRR@10 (selected epoch)",
            **{k: metrics[k]["cart"]["validation"]["mrr10"] for k in KERNELS},
        },
    ]
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "cpu_kernels.csv", index=False)
    header = f"{args.modality}, seed {args.seed}, kernels native vs pinned to AVX2\n\n"
    (RESULTS / "cpu_kernels.md").write_text(header + markdown_table(table))
    print(header + markdown_table(table))
    print(json.dumps({"identifiers_equal": same_ids}))


if __name__ == "__main__":
    main()
