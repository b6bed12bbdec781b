"""Full CART and the paper's ablations, each a tracked `kedro run`, then one comparison table.

    make ablations                                   # = python -m experiments.ablations
    python -m experiments.ablations --variants cart no_fusion --params decoder_training.epochs=5
    python -m experiments.ablations --report-only    # redraw the table from the saved runs

A variant is a YAML file of parameter overrides, experiments/conf/ablations/<name>.yml. The
stages every variant shares (ingest to captioning and the dual tower) run once, when their
outputs are missing; each variant then reruns what it changes (identifiers, decoder,
evaluation) as an MLflow run tagged `run_label=<variant>`, loading the shared outputs the
first run saved. Runs measure and never publish (experiments/runs.py), so their order does not
matter. Writes data/08_reporting/ablations/: comparison.csv, comparison.md and comparison.png,
with the paper's Flickr30K ablation R@1 beside ours for reference.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path

import pandas as pd

from cart_pipeline.io import write_atomically
from experiments.runs import (
    DEFAULT_ENV,
    available,
    data_dir,
    dotted,
    kedro_run,
    latest_by,
    markdown_table,
    merge,
    overrides,
    stages,
)

logger = logging.getLogger("experiments.ablations")

# The paper's text->image R@1 on Flickr30K (Table 5), beside ours for reference only.
PAPER_R1 = {
    "cart": 81.78,
    "no_fusion": 75.54,
    "no_consistency": 81.64,
    "rqvae_only": 79.50,
    "hierarchical_kmeans": 76.22,
    "dual_tower": 74.9,  # ImageBind
}
SHARED_STAGES = stages("ingest", "dual_tower")
VARIANT_STAGES = stages("coarse_clustering")


def comparison_table(results: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for label, metrics in results.items():
        for group, systems in [*metrics["by_modality"].items(), ("overall", metrics["overall"])]:
            for system, values in systems.items():
                # the baselines do not change with CART's ablations: shown once, from `cart`
                if system in ("cart_rerank", "cart_lookup_rerank") or (
                    system != "cart" and label != "cart"
                ):
                    continue
                variant = label if system == "cart" else system
                rows.append(
                    {
                        "variant": variant,
                        "modality": group,
                        **{
                            k: values[k]
                            for k in ("R@1", "R@5", "R@10", "MRR@10", "median_rank", "n_queries")
                        },
                        "paper_flickr30k_R@1": PAPER_R1.get(variant),
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
    figure = recall_chart(
        panels, metrics=("R@1", "R@10"), title="CART ablations: test-query recall"
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=120)
    write_atomically(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=available("ablations"))
    parser.add_argument("--env", default=DEFAULT_ENV, help="the collection (Kedro environment)")
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument(
        "--params", nargs="+", default=[], metavar="KEY=VALUE",
        help="overrides for every run, e.g. decoder_training.epochs=5",
    )  # fmt: skip
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the comparison from the saved runs"
    )
    args = parser.parse_args(argv)
    variants = {name: overrides("ablations", name) for name in args.variants}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project = args.project.resolve()
    extra = merge(*(dotted(p) for p in args.params))

    if not args.report_only:
        if not data_dir(project, args.env).joinpath("04_feature").is_dir():
            kedro_run(project, SHARED_STAGES, extra, args.env)
        for name, variant in variants.items():
            kedro_run(project, VARIANT_STAGES, merge(extra, variant, {"run_label": name}), args.env)
    results = latest_by(project, list(variants), lambda m: m["config"].get("run_label"), args.env)

    out = data_dir(project, args.env) / "08_reporting" / "ablations"
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(results)
    write_atomically(out / "comparison.csv", table.to_csv(index=False))
    write_atomically(out / "comparison.md", markdown_table(table))
    plot(table, out / "comparison.png")
    print(markdown_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
