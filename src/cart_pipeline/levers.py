"""The quality levers of issue #13, each as its own tracked `kedro run`, then one table.

    python -m cart_pipeline.levers                      # every lever, one after the other
    python -m cart_pipeline.levers --levers base cap0   # a subset
    python -m cart_pipeline.levers --report-only        # redraw the table from the saved runs

A lever is a set of `--params` overrides on top of the defaults (and of `--params`, e.g. a
new baseline). Every run reruns all the stages after feature extraction, so no lever inherits
another's pairs or identifiers; each is an MLflow run tagged `run_label=lever-<name>`. Settings are chosen by the *validation* MRR@10
the table shows beside the test metrics; test numbers are reported, never optimised.
Output: data/08_reporting/levers/levers.{csv,md}.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from cart_pipeline.runs import kedro, latest_by, markdown_table

logger = logging.getLogger("cart_pipeline.levers")

STAGES = "captioning,dual_tower,coarse_clustering,rqvae_quantization,id_assignment,decoder_training,evaluation"
# name -> overrides; each is measured against `base`, the defaults
LEVERS: dict[str, str] = {
    "base": "",
    "trie_renormalise_search": "evaluation.trie_renormalise=true",
    "trie_softmax": "decoder_training.trie_softmax=true",
    "distill_0.5": "decoder_training.soft_target_weight=0.5,decoder_training.soft_targets.source=dual_tower",
    "siblings_0.2": "decoder_training.soft_target_weight=0.2,decoder_training.soft_targets.source=siblings",
    "sentence_input": "decoder_training.sentence_input=true",
    "epochs_20": "decoder_training.epochs=20",
    "lr_0.002": "decoder_training.lr=0.002",
    "identifier_space_dual_tower": "identifier_space=dual_tower",
    "pseudo_per_described_0": "captioning.pseudo_per_described_item=0",
    "pseudo_per_described_1": "captioning.pseudo_per_described_item=1",
}
METRICS = ("R@1", "R@10", "MRR@10")


def lever_table(results: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, metrics in results.items():
        for modality, systems in metrics["by_modality"].items():
            for system in ("cart", "cart_rerank", "dual_tower", "pair_lookup"):
                values = systems.get(system)
                if values is None:
                    continue
                row = {"lever": name, "modality": modality, "system": system, "val MRR@10": values.get("validation", {}).get("mrr10")}
                for metric in METRICS:
                    lo, hi = values[f"{metric}_ci95"]
                    row[metric] = values[metric]
                    row[f"{metric} 95% CI"] = f"[{lo:.3f}, {hi:.3f}]"
                rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--params", default="", help="extra kedro --params for every run (e.g. a new baseline)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the table from the saved runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project = args.project.resolve()
    if not args.report_only:
        if not any((project / "data/04_feature").glob("*/query_features.parquet")):
            kedro(project, "--pipelines", "ingest,feature_extraction")
        # `base` last: the project's newest artifacts are then the defaults' (cart-search)
        for name in sorted(args.levers, key=lambda n: n == "base"):
            params = ",".join(p for p in (args.params, LEVERS[name], f"run_label=lever-{name}") if p)
            kedro(project, "--pipelines", STAGES, "--params", params)
    results = latest_by(project, [f"lever-{n}" for n in args.levers], lambda m: m["config"].get("run_label"))
    table = lever_table({name.removeprefix("lever-"): m for name, m in results.items()})
    out = project / "data/08_reporting/levers"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "levers.csv", index=False)
    (out / "levers.md").write_text(markdown_table(table))
    print(markdown_table(table))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
