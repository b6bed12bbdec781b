"""Quality levers, each a tracked `kedro run` per collection, validation fold and seed, then
the declared rule's verdict (experiments/README.md).

    python -m experiments.levers --levers distill_0.25 --folds 0 1 2 --envs local emoji
    python -m experiments.levers --levers distill_0.25 --seeds 2025 2026 2027
    python -m experiments.levers --levers distill_0.25 --folds 0 1 2 --envs local emoji --report-only
    python -m experiments.levers --list

A lever is a YAML file of parameter overrides, experiments/conf/levers/<name>.yml, applied on
top of the defaults (and of ``--params KEY=VALUE ...``); `base` is the defaults themselves and
runs beside every lever. Every run is an MLflow run tagged `run_label=lever-<name>`, reruns
every stage after feature extraction (no lever inherits another's pairs or identifiers), and
records CART's per-query validation ranks (`evaluation.validation_ranks`).

``--folds`` re-ingests each validation fold (`ingest.validation_fold`: disjoint validation sets
over one fixed test split; fold 0, the default split, last, so the project is left on it);
``--seeds`` varies `seed` on the default split. The verdict pools each lever's per-query
validation ranks over every collection and run, paired query by query with `base` of the same
collection, seed and fold, into one validation MRR@10 gain with a 95 % bootstrap CI
(:func:`pooled_validation_gain`). Test numbers are reported beside it, never used to choose.

Writes data/08_reporting/levers/: per_run.csv, summary.csv, pooled.csv, agreement.csv and
report.md (all tables), and logs them to MLflow as the run `levers-summary`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cart_pipeline.core.metrics import metrics_from_ranks, paired_comparison
from cart_pipeline.io import write_atomically
from cart_pipeline.pipelines.tracking import mark_model_training
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
    saved_metrics,
    stages,
)

logger = logging.getLogger("experiments.levers")

SYSTEMS = ("cart", "cart_rerank", "cart_lookup_rerank", "dual_tower", "pair_lookup")
METRICS = ("R@1", "R@10", "MRR@10")
RunKey = tuple[str, str, int, int]  # (lever, env, seed, validation fold)


def run_params(lever: str, extra: dict, seed: int | None, fold: int | None) -> dict:
    """The runtime parameters of one lever run: the lever's overrides over ``extra``, plus the
    run's label, seed and fold, and the opt-in per-query validation ranks the verdict needs."""
    run = {"run_label": f"lever-{lever}", "evaluation": {"validation_ranks": True}}
    if seed is not None:
        run["seed"] = seed
    if fold is not None:
        run["ingest"] = {"validation_fold": fold}
    return merge(extra, {} if lever == "base" else overrides("levers", lever), run)


def lever_table(results: dict[RunKey, dict]) -> pd.DataFrame:
    """One row per (run, modality, system): validation MRR@10 and test R@1/R@10/MRR@10."""
    rows = []
    for (lever, env, seed, fold), metrics in results.items():
        for modality, systems in metrics["by_modality"].items():
            for system in SYSTEMS:
                values = systems.get(system)
                if values is None:
                    continue
                row = {"lever": lever, "env": env, "seed": seed, "fold": fold}
                row |= {"modality": modality, "system": system}
                row["val MRR@10"] = values.get("validation", {}).get("mrr10")
                row |= {metric: values[metric] for metric in METRICS}
                row["q/s search"] = values.get("qps_search")
                rows.append(row)
    return pd.DataFrame(rows)


def gains_over_base(per_run: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each row's ``metrics`` minus those of `base` at the same collection, modality, system,
    seed and fold (a paired gain; `base` rows get 0), in the frame's row order."""
    keys = ["env", "modality", "system", "seed", "fold"]
    base = per_run[per_run.lever == "base"].set_index(keys)
    paired = base.reindex(pd.MultiIndex.from_frame(per_run[keys]))
    return pd.DataFrame(
        {m: per_run[m].to_numpy(float) - paired[m].to_numpy(float) for m in metrics},
        index=per_run.index,
    )


def summary_table(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per (lever, collection, modality, system): mean ± sd over its runs of the validation
    MRR@10 and the test metrics, and its validation MRR@10 gain over `base` run by run."""
    gains = gains_over_base(per_run, ["val MRR@10"])["val MRR@10"]
    frame = per_run.assign(gain=gains).sort_values(["fold", "seed"], kind="stable")
    rows = []
    keys = ["lever", "env", "modality", "system"]
    for (lever, env, modality, system), g in frame.groupby(keys, sort=False):
        row = {"lever": lever, "env": env, "modality": modality, "system": system, "runs": len(g)}
        for metric in ("val MRR@10", *METRICS):
            v = g[metric].astype(float)
            if v.isna().all():  # a system without this metric (no validation of its own)
                row[metric] = None
            else:
                row[metric] = f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else v.iloc[0]
        if lever != "base" and g.gain.notna().any():
            row["val MRR@10 gain per run"] = " ".join(f"{x:+.3f}" for x in g.gain)
        rows.append(row)
    return pd.DataFrame(rows)


def validation_agreement(per_run: pd.DataFrame, system: str = "cart") -> pd.DataFrame:
    """Does a lever's validation gain over `base` predict its test gain? Over every (lever,
    run) pair of ``system``: Pearson and Spearman correlation of the paired validation MRR@10
    gain with each paired test gain. Near 0 means validation cannot choose among these levers."""
    runs = per_run[per_run.system == system]
    gains = gains_over_base(runs, ["val MRR@10", *METRICS]).assign(modality=runs.modality.values)
    gains = gains[(runs.lever != "base").to_numpy()]
    rows = []
    for modality, g in gains.groupby("modality"):
        for test in METRICS:
            pair = g[["val MRR@10", test]].dropna()
            varies = len(pair) > 2 and (pair.nunique() > 1).all()  # a constant has no correlation
            corr = {
                method: pair["val MRR@10"].corr(pair[test], method=method) if varies else np.nan
                for method in ("pearson", "spearman")
            }
            rows.append({"modality": modality, "test gain": test, "pairs": len(pair), **corr})
    return pd.DataFrame(rows)


def pooled_validation_gain(results: dict[RunKey, dict], n_boot: int = 1000) -> pd.DataFrame:
    """CART's validation gain of each lever over `base`, query by query, pooled over every
    collection and run: each run's per-query validation ranks are paired with `base`'s of the
    same collection, seed and fold, and the pooled pairs compared by :func:`paired_comparison`
    (MRR@10, R@1, R@10 differences, 95 % bootstrap CIs). The declared rule
    (experiments/README.md): a lever is `adopted` only when the pooled MRR@10 gain's CI lies
    above 0 *and* its mean gain is above 0 on every collection, so that a setting fitting one
    collection alone never becomes the default."""
    rows = []
    levers = sorted({lever for lever, *_ in results} - {"base"})
    for lever in levers:
        runs = sorted(key[1:] for key in results if key[0] == lever)
        for modality in results[(lever, *runs[0])]["by_modality"]:
            ours, base, per_env, per_run = [], [], {}, []
            for env, seed, fold in runs:
                a = results[(lever, env, seed, fold)]["by_modality"][modality]["cart"]
                b = results[("base", env, seed, fold)]["by_modality"][modality]["cart"]
                a, b = a.get("validation", {}), b.get("validation", {})
                if "ranks" not in a or a["query_ids"] != b.get("query_ids"):
                    raise ValueError(
                        f"{lever} and base in {env} at seed {seed}, fold {fold} ({modality}) lack "
                        "the same per-query validation ranks: rerun both with this version"
                    )
                ours.append(a["ranks"])
                base.append(b["ranks"])
                per_env.setdefault(env, ([], []))
                per_env[env][0].extend(a["ranks"])
                per_env[env][1].extend(b["ranks"])
                mrr = [metrics_from_ranks(r, n_boot=0)["MRR@10"] for r in (a["ranks"], b["ranks"])]
                per_run.append(mrr[0] - mrr[1])
            diff = paired_comparison(np.concatenate(ours), np.concatenate(base), n_boot)
            env_gain = {
                env: metrics_from_ranks(np.asarray(a), n_boot=0)["MRR@10"]
                - metrics_from_ranks(np.asarray(b), n_boot=0)["MRR@10"]
                for env, (a, b) in per_env.items()
            }
            row = {"lever": lever, "modality": modality, "runs": len(runs)}
            row["validation queries"] = int(sum(len(r) for r in ours))
            for metric in ("MRR@10", "R@1", "R@10"):
                lo, hi = diff[metric]["diff_ci95"]
                row[f"val {metric} gain"] = diff[metric]["diff"]
                row[f"val {metric} gain 95% CI"] = f"[{lo:+.3f}, {hi:+.3f}]"
            row["p (MRR@10)"] = diff["MRR@10"]["p_bootstrap"]
            row["val MRR@10 gain by collection"] = " ".join(
                f"{env} {gain:+.3f}" for env, gain in env_gain.items()
            )
            row["val MRR@10 gain per run"] = " ".join(f"{g:+.3f}" for g in per_run)
            row["adopted"] = bool(diff["MRR@10"]["diff_ci95"][0] > 0 and min(env_gain.values()) > 0)
            rows.append(row)
    return pd.DataFrame(rows)


def run_key(metrics: dict, seeds, folds) -> tuple:
    """(run label, seed, fold) of a saved run; seed or fold is None where the runner varies
    neither."""
    config = metrics["config"]
    seed = config["seed"] if seeds else None
    fold = config.get("validation_fold", 0) if folds else None
    return config.get("run_label"), seed, fold


def collect(
    project: Path,
    levers: list[str],
    envs: list[str],
    seeds: list[int] | None,
    folds: list[int] | None,
) -> dict[RunKey, dict]:
    """The newest saved metrics of each lever in each collection (at each requested seed and
    fold), keyed by (lever, collection, seed, fold) as the runs recorded them."""

    def key_of(metrics: dict) -> tuple:
        return run_key(metrics, seeds, folds)

    results = {}
    for env in envs:
        wanted = [
            (f"lever-{lever}", seed, fold)
            for lever in levers
            for seed in seeds or [None]
            for fold in folds or [None]
        ]
        for metrics in latest_by(project, wanted, key_of, env).values():
            config = metrics["config"]
            lever = config["run_label"].removeprefix("lever-")
            results[(lever, env, config["seed"], config.get("validation_fold", 0))] = metrics
    return results


def run_all(
    project: Path,
    levers: list[str],
    envs: list[str],
    seeds: list[int | None],
    folds,
    extra: dict,
    resume: bool = False,
) -> None:
    """Run every (collection, fold, seed, lever); with ``resume``, skip those that already
    have saved metrics (the newest run with that label, seed and fold), so an interrupted
    runner picks up where it stopped instead of starting over."""
    for env in envs:
        done = {run_key(m, seeds[0] is not None, folds) for m in saved_metrics(project, env)}
        refolded = False
        try:
            # fold 0, the default split, last: the project is left on it
            for fold in sorted(folds, key=lambda f: f == 0) if folds else [None]:
                todo = [
                    (seed, lever)
                    for seed in seeds
                    for lever in levers
                    if not (resume and (f"lever-{lever}", seed, fold) in done)
                ]
                if not todo:
                    logger.info("%s, fold %s: every run saved already, skipped", env, fold)
                    continue
                if fold is not None or not data_dir(project, env).joinpath("04_feature").is_dir():
                    split = {} if fold is None else {"ingest": {"validation_fold": fold}}
                    kedro_run(
                        project, stages("ingest", "feature_extraction"), merge(extra, split), env
                    )
                    refolded = fold not in (None, 0)
                for seed, lever in todo:
                    params = run_params(lever, extra, seed, fold)
                    kedro_run(project, stages("captioning"), params, env)
        finally:
            if refolded:  # an interrupted runner leaves the default split behind it
                kedro_run(project, stages("ingest", "feature_extraction"), extra, env)


def log_to_mlflow(project: Path, out: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mark_model_training(mlflow.set_experiment("cart_pipeline").experiment_id)
    with mlflow.start_run(run_name="levers-summary", tags={"run_label": "levers-summary"}):
        for path in sorted(out.glob("*")):
            mlflow.log_artifact(str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levers", nargs="+", default=[], help="names in experiments/conf/levers")
    parser.add_argument("--envs", nargs="+", default=[DEFAULT_ENV], help="collections (Kedro envs)")
    parser.add_argument("--seeds", nargs="+", type=int, help="run every lever once per seed")
    parser.add_argument("--folds", nargs="+", type=int, help="run every lever once per fold")
    parser.add_argument(
        "--params", nargs="+", default=[], metavar="KEY=VALUE",
        help="overrides for every run, e.g. modalities=[image] decoder_training.epochs=5",
    )  # fmt: skip
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--report-only", action="store_true", help="tables from saved runs only")
    parser.add_argument(
        "--resume", action="store_true", help="skip runs whose metrics are saved already"
    )
    parser.add_argument("--list", action="store_true", help="list the levers and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available("levers")))  # noqa: T201
        return 0
    for lever in args.levers:
        overrides("levers", lever)  # an unknown name stops here, listing the known ones
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project = args.project.resolve()
    levers = list(dict.fromkeys(["base", *args.levers]))
    extra = merge(*(dotted(p) for p in args.params))
    if not args.report_only:
        run_all(project, levers, args.envs, args.seeds or [None], args.folds, extra, args.resume)

    results = collect(project, levers, args.envs, args.seeds, args.folds)
    per_run = lever_table(results)
    summary = summary_table(per_run)
    agreement = validation_agreement(per_run)
    pooled = pooled_validation_gain(results)
    out = data_dir(project) / "08_reporting" / "levers"
    out.mkdir(parents=True, exist_ok=True)
    for name, table in [("per_run", per_run), ("summary", summary), ("pooled", pooled),
                        ("agreement", agreement)]:  # fmt: skip
        write_atomically(out / f"{name}.csv", table.to_csv(index=False))
    over = f"collections {' '.join(args.envs)}"
    over += "".join(f", {k} {' '.join(map(str, v))}" for k, v in
                    [("folds", args.folds), ("seeds", args.seeds)] if v)  # fmt: skip
    report = f"# Levers over {over}\n\nmean ± sd over runs\n\n{markdown_table(summary)}\n"
    report += "CART's validation gain over base, query by query, pooled over collections and runs"
    report += f" (adopted: MRR@10 CI above 0 and a gain on every collection)\n\n{markdown_table(pooled)}\n"
    report += f"Paired validation gain vs paired test gain\n\n{markdown_table(agreement, digits=2)}"
    write_atomically(out / "report.md", report)
    log_to_mlflow(project, out)
    print(markdown_table(pooled) if len(pooled) else markdown_table(summary))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
