"""Full CART and the paper's ablations, each as its own tracked `kedro run`, then one table.

    make ablations            # or: python -m cart_pipeline.ablations [--variants ...]
    python -m cart_pipeline.ablations --report-only   # redraw the table from the saved runs

Features, pseudo-queries and the other inputs shared by every variant are computed once
(the stages up to `captioning`, skipped when they already exist); each variant then reruns only
what it changes (identifiers, decoder, evaluation) as an MLflow run tagged `run_label=<variant>`.
The comparison lands in data/08_reporting/ablations/: comparison.csv, comparison.md and
comparison.png, with the paper's Flickr30K ablation R@1 beside ours for reference.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from cart_pipeline.runs import kedro, latest_by, markdown_table, saved_metrics

logger = logging.getLogger("cart_pipeline.ablations")

# label -> (kedro --params overrides, the paper's R@1 for it on Flickr30K text->image)
VARIANTS: dict[str, tuple[str, float | None]] = {
    "cart": ("id_variant=cart", 81.78),
    "no_fusion": ("id_variant=cart,decoder_training.fusion=false", 75.54),
    "no_consistency": ("id_variant=cart,decoder_training.consistency_weight=0.0", 81.64),
    "rqvae_only": ("id_variant=rqvae_only", 79.50),
    "hierarchical_kmeans": ("id_variant=hierarchical_kmeans", 76.22),
    "atomic": ("id_variant=atomic", None),
}
PAPER_BASELINES = {"dual_tower": 74.9}  # ImageBind dual tower on Flickr30K
SHARED_STAGES = "ingest,feature_extraction,coarse_clustering,captioning,dual_tower"
VARIANT_STAGES = "rqvae_quantization,id_assignment,decoder_training,evaluation"


def latest_by_label(project: Path, labels: list[str]) -> dict[str, dict]:
    """The newest saved metrics of each variant (matched by the run's `run_label`)."""
    return latest_by(project, labels, lambda m: m["config"].get("run_label"))


def comparison_table(results: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for label, metrics in results.items():
        for group, systems in [*metrics["by_modality"].items(), ("overall", metrics["overall"])]:
            for system, values in systems.items():
                # the baselines do not change with CART's ablations: shown once, from `cart`
                if system == "cart_rerank" or (system != "cart" and label != "cart"):
                    continue
                rows.append(
                    {
                        "variant": label if system == "cart" else system,
                        "modality": group,
                        **{
                            k: values[k]
                            for k in ("R@1", "R@5", "R@10", "MRR@10", "median_rank", "n_queries")
                        },
                        "paper_flickr30k_R@1": VARIANTS.get(label, (None, None))[1]
                        if system == "cart"
                        else PAPER_BASELINES.get(system),
                    }
                )
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path: Path) -> None:
    """R@1 and R@10 of every variant beside the baselines, one panel per modality."""
    from cart_pipeline.reporting.charts import recall_chart

    panels = {
        group: {row["variant"]: row for row in part.to_dict("records")}
        for group, part in table.groupby("modality", sort=False)
    }
    recall_chart(
        panels, metrics=("R@1", "R@10"), title="CART ablations: test-query recall"
    ).savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument(
        "--params",
        default="",
        help="extra kedro --params for every run, e.g. decoder_training.epochs=5",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the comparison from the saved metrics of earlier runs",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project = args.project.resolve()

    if not args.report_only:
        if not any((project / "data/04_feature").glob("*/pseudo_query_features.parquet")):
            kedro(project, "--pipelines", SHARED_STAGES)
        # `cart` last: later runs, the report and cart-search read the newest artifacts, which
        # should be those of the default configuration, not of the last ablation
        for label in sorted(args.variants, key=lambda label: label == "cart"):
            started = time.perf_counter()
            overrides = ",".join(
                p for p in (VARIANTS[label][0], f"run_label={label}", args.params) if p
            )
            kedro(project, "--pipelines", VARIANT_STAGES, "--params", overrides)
            r1 = saved_metrics(project)[-1]["overall"]["cart"]["R@1"]
            logger.info(
                "%s done in %.0f s: overall R@1 %.3f", label, time.perf_counter() - started, r1
            )
    results = latest_by_label(project, args.variants)

    out = project / "data/08_reporting/ablations"
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(results)
    table.to_csv(out / "comparison.csv", index=False)
    (out / "comparison.md").write_text(markdown_table(table))
    plot(table, out / "comparison.png")
    print(markdown_table(table))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
