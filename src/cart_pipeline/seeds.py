"""Headline numbers as mean ± sd over seeds: one tracked `kedro run` per seed, then a summary.

    make seeds                                   # = python -m cart_pipeline.seeds
    python -m cart_pipeline.seeds --seeds 1 2 3 --params decoder_training.epochs=5
    python -m cart_pipeline.seeds --report-only  # rebuild the summary from the saved runs

`seed` seeds every trained part (K-Means, RQ-VAE, captioning, dual tower, decoder); the
train/validation/test split has its own `ingest.split_seed` and stays fixed, so the spread is
that of training on the same test queries. The seed-independent stages (ingest, features) run
once when their outputs are missing; each seed then runs the rest as an MLflow run tagged
`run_label=<label>-<seed>`. The default seed runs last, so the project's newest artifacts
(what `cart-search` serves) are the default configuration's.

Writes data/08_reporting/seeds/: summary.csv (modality, system, metric, mean, sd, n_seeds,
seeds), per_seed.csv, summary.md and report.html (the same as a page); the summary is also
logged to MLflow as its own run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cart_pipeline.reporting.html import render_seed_report
from cart_pipeline.runs import kedro, latest_by, markdown_table

logger = logging.getLogger("cart_pipeline.seeds")

SHARED_STAGES = "ingest,feature_extraction"
SEED_STAGES = "coarse_clustering,rqvae_quantization,id_assignment,captioning,dual_tower,decoder_training,evaluation"
DEFAULT_SEEDS = (2026, 2027, 2025)  # 2025, the default `seed`, last
METRICS = ("R@1", "R@5", "R@10", "MRR@10", "median_rank")


def per_seed_table(results: dict[int, dict]) -> pd.DataFrame:
    """One row per (seed, modality, system, metric), strict and same-description relevance."""
    rows = []
    for seed, metrics in results.items():
        for group, systems in [*metrics["by_modality"].items(), ("overall", metrics["overall"])]:
            for system, values in systems.items():
                for relevance, table in (
                    ("strict", values),
                    ("same_description", values.get("same_description", {})),
                ):
                    for metric in METRICS:
                        if metric in table:
                            name = metric if relevance == "strict" else f"same_description.{metric}"
                            rows.append(
                                {
                                    "seed": seed,
                                    "modality": group,
                                    "system": system,
                                    "metric": name,
                                    "value": table[metric],
                                }
                            )
    return pd.DataFrame(rows)


def summary_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    grouped = per_seed.groupby(["modality", "system", "metric"], sort=False).value
    summary = grouped.agg(
        mean="mean",
        sd=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
        n_seeds="size",
    )
    summary["seeds"] = per_seed.groupby(["modality", "system", "metric"], sort=False).seed.agg(
        lambda s: " ".join(map(str, sorted(s)))
    )
    return summary.reset_index()


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """modality × system, strict R@1/R@5/R@10/MRR@10 as 'mean ± sd'."""
    strict = summary[summary.metric.isin(METRICS[:4])]
    cells = strict.assign(
        cell=[f"{m:.3f} ± {s:.3f}" for m, s in zip(strict["mean"], strict.sd, strict=True)]
    )
    table = cells.pivot_table(
        index=["modality", "system"], columns="metric", values="cell", aggfunc="first", sort=False
    )
    return table[[m for m in METRICS[:4] if m in table]].reset_index()


def log_to_mlflow(project: Path, summary: pd.DataFrame, label: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_experiment("cart_pipeline")
    with mlflow.start_run(
        run_name=f"{label}-summary", tags={"run_label": f"{label}-summary", "kind": "seed summary"}
    ):
        for row in summary.itertuples(index=False):
            key = f"{row.modality}.{row.system}.{row.metric}".replace("@", "_at_")
            mlflow.log_metrics(
                {f"{key}.mean": row.mean, **({f"{key}.sd": row.sd} if np.isfinite(row.sd) else {})}
            )
        for name in ("summary.csv", "report.html"):
            mlflow.log_artifact(str(project / "data/08_reporting/seeds" / name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument(
        "--label", default="seed", help="run_label prefix (runs are <label>-<seed>)"
    )
    parser.add_argument("--params", default="", help="extra kedro --params for every run")
    parser.add_argument(
        "--report-only", action="store_true", help="summarise the saved runs without training"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project = args.project.resolve()

    if not args.report_only:
        if not any((project / "data/04_feature").glob("*/query_features.parquet")):
            kedro(project, "--pipelines", SHARED_STAGES)
        for seed in args.seeds:
            overrides = ",".join(
                p for p in (f"seed={seed}", f"run_label={args.label}-{seed}", args.params) if p
            )
            kedro(project, "--pipelines", SEED_STAGES, "--params", overrides)
    results = latest_by(
        project,
        args.seeds,
        lambda m: (
            m["config"]["seed"]
            if m["config"].get("run_label") == f"{args.label}-{m['config']['seed']}"
            else None
        ),
    )

    out = project / "data/08_reporting/seeds"
    out.mkdir(parents=True, exist_ok=True)
    per_seed = per_seed_table(results)
    summary = summary_table(per_seed)
    per_seed.to_csv(out / "per_seed.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    table = headline(summary)
    (out / "summary.md").write_text(
        f"mean ± sd over seeds {' '.join(map(str, sorted(args.seeds)))} (strict relevance)\n\n"
        + markdown_table(table)
    )
    (out / "report.html").write_text(render_seed_report(summary, per_seed), encoding="utf-8")
    log_to_mlflow(project, summary, args.label)
    print(markdown_table(table))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
