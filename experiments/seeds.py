"""Headline numbers as mean ± sd over seeds, on every collection: one tracked `kedro run` per
(collection, seed), then a summary.

    make seeds                                   # = python -m experiments.seeds --envs local emoji
    python -m experiments.seeds --envs local emoji --resume   # only the seeds not saved yet
    python -m experiments.seeds --seeds 1 2 3 --params decoder_training.epochs=5
    python -m experiments.seeds --envs local emoji --report-only   # summarise the saved runs

`seed` seeds every trained part (K-Means, RQ-VAE, captioning, dual tower, decoder); the
train/validation/test split has its own `ingest.split_seed` and stays fixed, so the spread is
that of training on the same test queries. The seed-independent stages (ingest, features) run
once per collection when their outputs are missing; each seed then runs the rest as an MLflow
run tagged `run_label=<label>-<seed>`. Runs measure and never publish (experiments/runs.py).

Writes data/08_reporting/seeds/: per_seed.csv and summary.csv (collection, modality, system,
metric, mean, sd, n_seeds, seeds), summary.md and report.html (the same as a page), and logs the
summary to MLflow as the run `<label>-summary`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cart_pipeline.io import write_atomically
from cart_pipeline.pipelines.tracking import mark_model_training
from cart_pipeline.reporting.html import render_seed_report
from experiments.runs import (
    DEFAULT_ENV,
    data_dir,
    dotted,
    kedro_run,
    latest_by,
    markdown_table,
    merge,
    saved_metrics,
    stages,
)

logger = logging.getLogger("experiments.seeds")

DEFAULT_SEEDS = (2025, 2026, 2027)
METRICS = ("R@1", "R@5", "R@10", "MRR@10", "median_rank")


def per_seed_table(results: dict[int, dict], collection: str = "") -> pd.DataFrame:
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
                                {"collection": collection, "seed": seed, "modality": group,
                                 "system": system, "metric": name, "value": table[metric]}
                            )  # fmt: skip
    return pd.DataFrame(rows)


def summary_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    keys = ["collection", "modality", "system", "metric"]
    grouped = per_seed.groupby(keys, sort=False)
    summary = grouped.value.agg(
        mean="mean",
        sd=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
        n_seeds="size",
    )
    summary["seeds"] = grouped.seed.agg(lambda s: " ".join(map(str, sorted(s))))
    return summary.reset_index()


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """(collection, modality, system) × strict R@1/R@5/R@10/MRR@10 as 'mean ± sd'."""
    strict = summary[summary.metric.isin(METRICS[:4])]
    cells = strict.assign(
        cell=[f"{m:.3f} ± {s:.3f}" for m, s in zip(strict["mean"], strict.sd, strict=True)]
    )
    index = ["collection", "modality", "system"]
    table = cells.pivot_table(
        index=index, columns="metric", values="cell", aggfunc="first", sort=False
    )
    return table[[m for m in METRICS[:4] if m in table]].reset_index()


def log_to_mlflow(project: Path, out: Path, summary: pd.DataFrame, label: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mark_model_training(mlflow.set_experiment("cart_pipeline").experiment_id)
    with mlflow.start_run(
        run_name=f"{label}-summary", tags={"run_label": f"{label}-summary", "kind": "seed summary"}
    ):
        for row in summary.itertuples(index=False):
            key = f"{row.collection}.{row.modality}.{row.system}.{row.metric}".replace("@", "_at_")
            mlflow.log_metrics(
                {f"{key}.mean": row.mean, **({f"{key}.sd": row.sd} if np.isfinite(row.sd) else {})}
            )
        for name in ("summary.csv", "report.html"):
            mlflow.log_artifact(str(out / name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    parser.add_argument("--envs", nargs="+", default=[DEFAULT_ENV], help="collections (Kedro envs)")
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument(
        "--label", default="seed", help="run_label prefix (runs are <label>-<seed>)"
    )
    parser.add_argument(
        "--params", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="summarise the saved runs without training"
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip the seeds whose runs are saved already"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project = args.project.resolve()
    extra = merge(*(dotted(p) for p in args.params))

    def seed_run(metrics: dict) -> int | None:
        config = metrics["config"]
        return (
            config["seed"] if config.get("run_label") == f"{args.label}-{config['seed']}" else None
        )

    frames = []
    for env in args.envs:
        if not args.report_only:
            saved = {seed_run(m) for m in saved_metrics(project, env)} if args.resume else set()
            todo = [seed for seed in args.seeds if seed not in saved]
            if todo and not data_dir(project, env).joinpath("04_feature").is_dir():
                kedro_run(project, stages("ingest", "feature_extraction"), extra, env)
            for seed in todo:
                run = {"seed": seed, "run_label": f"{args.label}-{seed}"}
                kedro_run(project, stages("captioning"), merge(extra, run), env)

        results = latest_by(project, args.seeds, seed_run, env)
        collection = next(iter(results.values()))["config"].get("collection", env)
        frames.append(per_seed_table(results, collection))

    out = data_dir(project) / "08_reporting" / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    per_seed = pd.concat(frames, ignore_index=True)
    summary = summary_table(per_seed)
    write_atomically(out / "per_seed.csv", per_seed.to_csv(index=False))
    write_atomically(out / "summary.csv", summary.to_csv(index=False))
    table = headline(summary)
    write_atomically(
        out / "summary.md",
        f"mean ± sd over seeds {' '.join(map(str, sorted(args.seeds)))} (strict relevance)\n\n"
        + markdown_table(table),
    )
    # the page groups rows by "collection · modality"
    page_key = {"modality": lambda f: f.collection + " · " + f.modality}
    write_atomically(
        out / "report.html",
        render_seed_report(summary.assign(**page_key), per_seed.assign(**page_key)),
    )
    log_to_mlflow(project, out, summary, args.label)
    print(markdown_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
