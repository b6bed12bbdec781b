"""The quality levers of issue #13, each as its own tracked `kedro run`, then one table.

    python -m cart_pipeline.levers                      # every lever, one after the other
    python -m cart_pipeline.levers --levers base cap0   # a subset
    python -m cart_pipeline.levers --report-only        # redraw the table from the saved runs
    python -m cart_pipeline.levers --seeds 2025 2026 2027 --levers base M_2   # over seeds

A lever is a set of `--params` overrides on top of the defaults (and of `--params`, e.g. a
new baseline), or a dict of parameters for what `--params` cannot express (it splits on
commas, so no lists): those go to `kedro run --config <file>` as `run.params`. A lever that
changes only the decoder or the search (`decoder_training.*`, `evaluation.*`) reruns only
those two stages when the runner's previous run left the defaults' pairs and identifiers on
disk (same seed, same params: the same files, byte for byte); the first one runs them all. Every run reruns all the stages after feature extraction, so no lever inherits
another's pairs or identifiers; each is an MLflow run tagged `run_label=lever-<name>`. Settings are chosen by the *validation* MRR@10
the table shows beside the test metrics; test numbers are reported, never optimised.
Output: data/08_reporting/levers/levers.{csv,md}.

With ``--seeds`` every lever runs once per seed (`seed=<s>`, the split stays fixed), and
levers_seeds.{csv,md} hold mean ± sd over the seeds, with each lever's validation MRR@10
minus the `base` run's of the same seed. Every seed validates on the same ~95 image queries,
though, so seeds average out training noise but never the draw of those queries.

With ``--folds 0 1 2`` every lever runs once per validation fold (`ingest.validation_fold`:
disjoint validation sets carved from the non-test items; the test split stays fixed), after
re-ingesting for that fold. levers_folds.{csv,md} then also pool each lever's per-query
validation ranks over the folds, paired query by query with `base` of the same fold and
seed, into one validation MRR@10 gain with a 95 % bootstrap CI over ~3 x 95 distinct queries.
The rule (README, "Quality levers"): a lever is adopted only when that pooled gain's CI lies
above 0 and the gain is positive in every fold (the CI holds each run's training fixed).
(Combined with ``--seeds``, a query repeats once per seed, so the CI is optimistic.)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf

from cart_pipeline.core.metrics import metrics_from_ranks, paired_comparison
from cart_pipeline.runs import kedro, latest_by, markdown_table

logger = logging.getLogger("cart_pipeline.levers")

STAGES = "captioning,dual_tower,coarse_clustering,rqvae_quantization,id_assignment,decoder_training,evaluation"
DECODER_STAGES = "decoder_training,evaluation"
DECODER_GROUPS = ("decoder_training", "evaluation")
# name -> overrides: each a departure from the defaults (`base`), which are what these
# measurements chose on validation (README, "Quality levers", for the path that led there)
LEVERS: dict[str, str | dict] = {
    "base": "",
    # captioning / training pairs
    "no_caption_retrieval": {  # the captioners without dual_tower_retrieval
        "captioning": {
            "captioners": {
                "image": [{"name": "imagenet_labels", "n": 3}, {"name": "knn_transfer", "n": 3}],
                "audio": [{"name": "knn_transfer", "n": 3}],
            }
        }
    },
    "knn_transfer_6": {  # twice the neighbours' descriptions (image; audio as the defaults)
        "captioning": {
            "captioners": {
                "image": [
                    {"name": "imagenet_labels", "n": 3},
                    {"name": "knn_transfer", "n": 6},
                    {"name": "dual_tower_retrieval", "n": 3},
                ]
            }
        }
    },
    "pseudo_per_described_all": "captioning.pseudo_per_described_item=null",
    "pseudo_per_described_1": "captioning.pseudo_per_described_item=1",
    # objective and schedule
    "no_distillation": "decoder_training.soft_target_weight=0.0",
    "distill_0.8": "decoder_training.soft_target_weight=0.8",
    # the dual tower's targets put 0.11-0.33 of their mass on the pair's own item (it varies
    # with the seed), so at λ 0.5 the decoder is taught only 0.56-0.67 on its pair's item
    "distill_0.25": "decoder_training.soft_target_weight=0.25",
    "siblings_0.2": "decoder_training.soft_target_weight=0.2,decoder_training.soft_targets.source=siblings",
    "epochs_10": "decoder_training.epochs=10",
    "epochs_20": "decoder_training.epochs=20",
    "lr_0.002": "decoder_training.lr=0.002",
    "ema_1": "decoder_training.ema_half_life=1.0",
    "ema_2": "decoder_training.ema_half_life=2.0",
    "dropout_0": "decoder_training.dropout=0.0",  # no dropout, hence no R-Drop term either
    # scoring
    "trie_softmax": "decoder_training.trie_softmax=true",
    "trie_renormalise_search": "evaluation.trie_renormalise=true",
    "sentence_input": "decoder_training.sentence_input=true",
    # decoder size
    "d_model_128": "decoder_training.d_model=128",
    "n_layers_2": "decoder_training.n_layers=2",
    "n_layers_6": "decoder_training.n_layers=6",
    # identifiers: space, k, M, codebook size
    "identifier_space_dual_tower": "identifier_space=dual_tower",
    "k_15": "coarse_clustering.n_clusters=15",
    "k_60": "coarse_clustering.n_clusters=60",
    "M_2": "rqvae_quantization.n_levels=2",
    "codebook_64": "rqvae_quantization.codebook_size=64",
}
METRICS = ("R@1", "R@10", "MRR@10")
LATE_EPOCHS = 3
LATE = f"val MRR@10, last {LATE_EPOCHS} epochs"


def lever_table(results: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, metrics in results.items():
        for modality, systems in metrics["by_modality"].items():
            for system in ("cart", "cart_rerank", "dual_tower", "pair_lookup"):
                values = systems.get(system)
                if values is None:
                    continue
                row = {
                    "lever": name,
                    "modality": modality,
                    "system": system,
                    "val MRR@10": values.get("validation", {}).get("mrr10"),
                }
                for metric in METRICS:
                    lo, hi = values[f"{metric}_ci95"]
                    row[metric] = values[metric]
                    row[f"{metric} 95% CI"] = f"[{lo:.3f}, {hi:.3f}]"
                row["q/s search"] = values.get("qps_search")
                rows.append(row)
    return pd.DataFrame(rows)


def late_validation_mrr(
    project: Path, label: str, seed: int, modality: str, last: int, fold: int | None = None
) -> float:
    """Mean validation MRR@10 of the last ``last`` epochs of the newest MLflow run labelled
    ``label`` at ``seed`` (and validation ``fold``): a fixed point of the schedule, free of the
    upward bias of the selected epoch's value (the best of 15 noisy ones, which also picked
    the checkpoint)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.run_label = '{label}' and tags.seed = '{seed}'"
        + (f" and tags.validation_fold = '{fold}'" if fold is not None else ""),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return float("nan")
    history = client.get_metric_history(runs[0].info.run_id, f"{modality}.decoder.val_mrr10")
    values = [m.value for m in sorted(history, key=lambda m: m.step)][-last:]
    return float(sum(values) / len(values)) if values else float("nan")


def validation_metrics(per_seed: pd.DataFrame) -> list[str]:
    """The validation columns the frame has: the selected epoch's, and the late-epoch one."""
    return [m for m in ("val MRR@10", LATE) if m in per_seed]


def gains_over_base(per_seed: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each row's ``metrics`` minus those of `base` at the same modality, system, seed and
    validation fold (a paired gain; `base` rows get 0), in the frame's row order."""
    keys = ["modality", "system", "seed", *(["fold"] if "fold" in per_seed else [])]
    base = per_seed[per_seed.lever == "base"].set_index(keys)
    paired = base.reindex(pd.MultiIndex.from_frame(per_seed[keys]))
    return pd.DataFrame(
        {m: per_seed[m].to_numpy(float) - paired[m].to_numpy(float) for m in metrics},
        index=per_seed.index,
    )


def validation_agreement(per_seed: pd.DataFrame, system: str = "cart") -> pd.DataFrame:
    """Does a lever's validation gain over `base` predict its test gain? Over every (lever,
    seed) pair of ``system``, each paired validation gain against each paired test gain:
    Pearson and Spearman correlation. Near 0 means the validation split cannot choose among
    these levers, whatever rule reads it."""
    runs = per_seed[per_seed.system == system]
    validation = validation_metrics(per_seed)
    gains = gains_over_base(runs, [*validation, *METRICS]).assign(modality=runs.modality.to_numpy())
    gains = gains[(runs.lever != "base").to_numpy()]
    rows = []
    for modality, g in gains.groupby("modality"):
        for v in validation:
            for t in METRICS:
                pair = g[[v, t]].dropna()
                varies = (pair.nunique() > 1).all()  # a constant gain has no correlation
                rows.append(
                    {
                        "modality": modality,
                        "validation gain": v,
                        "test gain": t,
                        "pairs": len(pair),
                        "pearson": pair[v].corr(pair[t]) if varies else float("nan"),
                        "spearman": pair[v].corr(pair[t], method="spearman")
                        if varies
                        else float("nan"),
                    }
                )
    return pd.DataFrame(rows)


def seed_summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per (lever, modality, system): mean ± sd over its runs (seeds, and validation folds
    where the frame has a `fold` column) of the validation MRR@10 (and, where the frame has
    it, of the late-epoch one) and the test metrics, and the validation MRR@10 paired with
    `base` at each run (needs `base`), in (fold, seed) order."""
    validation = validation_metrics(per_seed)
    gains = gains_over_base(per_seed, validation)
    frame = per_seed.assign(**{f"gain {m}": gains[m] for m in validation})
    order = ["fold", "seed"] if "fold" in frame else ["seed"]
    rows = []
    for (lever, modality, system), g in frame.groupby(["lever", "modality", "system"], sort=False):
        g = g.sort_values(order)
        row = {"lever": lever, "modality": modality, "system": system, "runs": len(g)}
        for metric in (*validation, *METRICS):
            v = g[metric].astype(float)
            if v.isna().all():  # a system without this metric (no validation of its own)
                row[metric] = None
            else:
                row[metric] = f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else v.iloc[0]
        if lever != "base" and g["val MRR@10"].notna().any():
            for m in validation:
                gains_m = g[f"gain {m}"]
                if gains_m.notna().any():  # the baselines have no late-epoch validation
                    row[f"{m} gain vs base"] = " ".join(f"{x:+.3f}" for x in gains_m)
            row["gain at every run"] = bool((g["gain val MRR@10"] > 0).all())
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_validation_gain(
    results: dict[tuple[str, int, int], dict], n_boot: int = 1000
) -> pd.DataFrame:
    """CART's validation gain of each lever over `base`, query by query: ``results`` maps
    (lever, seed, fold) to a run's metrics.json; each lever's per-query validation ranks are
    paired with base's of the same seed and fold, pooled over its runs, and compared by
    :func:`paired_comparison` (MRR@10, R@1, R@10 differences with 95 % bootstrap CIs). That
    CI resamples queries and holds each run's trained model fixed, so it leaves out the
    run-to-run noise of training (a paired gain's sd over seeds on one split is ~0.02 here):
    a lever is `adopted` only when the MRR@10 gain's CI lies above 0 *and* the gain is
    positive in every run."""
    rows = []
    levers = sorted({lever for lever, _, _ in results} - {"base"}, key=list(LEVERS).index)
    for lever in levers:
        runs = sorted((seed, fold) for name, seed, fold in results if name == lever)
        for modality in results[(lever, *runs[0])]["by_modality"]:
            ours, base, per_run = [], [], []
            for seed, fold in runs:
                a = results[(lever, seed, fold)]["by_modality"][modality]["cart"]["validation"]
                b = results[("base", seed, fold)]["by_modality"][modality]["cart"]["validation"]
                if "ranks" not in a or a["query_ids"] != b.get("query_ids"):
                    raise ValueError(
                        f"{lever} and base at seed {seed}, fold {fold} ({modality}) lack the same "
                        "per-query validation ranks: rerun both with this version"
                    )
                ours.append(a["ranks"])
                base.append(b["ranks"])
                mrr = [metrics_from_ranks(r, n_boot=0)["MRR@10"] for r in (a["ranks"], b["ranks"])]
                per_run.append(mrr[0] - mrr[1])
            ours_ranks, base_ranks = np.concatenate(ours), np.concatenate(base)
            diff = paired_comparison(ours_ranks, base_ranks, n_boot)
            row = {
                "lever": lever,
                "modality": modality,
                "runs": len(runs),
                "validation queries": len(ours_ranks),
            }
            for metric in ("MRR@10", "R@1", "R@10"):
                lo, hi = diff[metric]["diff_ci95"]
                row[f"val {metric} gain"] = diff[metric]["diff"]
                row[f"val {metric} gain 95% CI"] = f"[{lo:+.3f}, {hi:+.3f}]"
            row["p (MRR@10)"] = diff["MRR@10"]["p_bootstrap"]
            row["val MRR@10 gain per run"] = " ".join(f"{g:+.3f}" for g in per_run)
            row["adopted"] = bool(diff["MRR@10"]["diff_ci95"][0] > 0 and min(per_run) > 0)
            rows.append(row)
    return pd.DataFrame(rows)


def lever_params(name: str, extra_params: str = "") -> str | dict:
    """The runtime parameters of lever ``name``: a `--params` string, or a dict for a lever
    that sets what `--params` cannot (lists), with ``extra_params`` and the run label merged in."""
    lever, label = LEVERS[name], f"run_label=lever-{name}"
    if isinstance(lever, str):
        return ",".join(p for p in (extra_params, lever, label) if p)
    dotlist = [p for p in (*extra_params.split(","), label) if p]
    return OmegaConf.to_container(OmegaConf.merge(OmegaConf.from_dotlist(dotlist), lever))


def decoder_only(name: str) -> bool:
    """Whether lever ``name`` leaves pairs and identifiers as the defaults make them."""
    lever = LEVERS[name]
    keys = [p.split("=")[0] for p in lever.split(",") if p] if isinstance(lever, str) else lever
    return name != "base" and all(k.split(".")[0] in DECODER_GROUPS for k in keys)


def run_lever(project: Path, name: str, extra_params: str = "", stages: str = STAGES) -> None:
    params = lever_params(name, extra_params)
    if isinstance(params, str):
        kedro(project, "--pipelines", stages, "--params", params)
        return
    # `--params` would replace the config file's params: all of them go in the file
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as config:
        yaml.safe_dump({"run": {"params": params}}, config)
    try:
        kedro(project, "--pipelines", stages, "--config", config.name)
    finally:
        Path(config.name).unlink()


def run_levers(project: Path, names: list[str], extra_params: str) -> None:
    # decoder-only levers first (the first of them runs every stage), `base` last: the
    # project's newest artifacts are then the defaults' (cart-search)
    defaults_on_disk = False
    for name in sorted(names, key=lambda n: (n == "base", not decoder_only(n))):
        reuse = decoder_only(name) and defaults_on_disk
        run_lever(project, name, extra_params, DECODER_STAGES if reuse else STAGES)
        defaults_on_disk = decoder_only(name) or name == "base"


def ingest_fold(project: Path, fold: int, extra_params: str) -> None:
    """Re-carve the split for validation ``fold`` (the test split does not move) and pass it
    through feature extraction; the features themselves do not depend on the split."""
    params = ",".join(p for p in (extra_params, f"ingest.validation_fold={fold}") if p)
    kedro(project, "--pipelines", "ingest,feature_extraction", "--params", params)


def replicated_runs(
    project: Path, names: list[str], seeds: list[int] | None, folds: list[int] | None
) -> dict[tuple[str, int, int], dict]:
    """The newest saved metrics of each lever at each requested seed and fold, keyed by
    (lever, seed, fold) as the runs recorded them."""
    seed_of = (lambda m: m["config"]["seed"]) if seeds else (lambda m: None)
    fold_of = (lambda m: m["config"].get("validation_fold", 0)) if folds else (lambda m: None)
    wanted = [(f"lever-{n}", s, f) for n in names for s in seeds or [None] for f in folds or [None]]
    results = latest_by(
        project, wanted, lambda m: (m["config"].get("run_label"), seed_of(m), fold_of(m))
    )
    return {
        (
            label.removeprefix("lever-"),
            m["config"]["seed"],
            m["config"].get("validation_fold", 0),
        ): m
        for (label, _, _), m in results.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument(
        "--params", default="", help="extra kedro --params for every run (e.g. a new baseline)"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="run every lever once per seed (and `base` with them)"
    )
    parser.add_argument(
        "--folds",
        nargs="+",
        type=int,
        help="run every lever once per validation fold (and `base` with them), re-ingesting each",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the table from the saved runs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project = args.project.resolve()
    replicated = bool(args.seeds or args.folds)
    names = list(dict.fromkeys(["base", *args.levers] if replicated else args.levers))
    if not args.report_only:
        # fold 0, the default split, last: the project's newest artifacts are then the defaults'
        ingested = None  # the validation fold on disk, when this runner changed it
        try:
            for fold in sorted(args.folds, key=lambda f: f == 0) if args.folds else [None]:
                if fold is not None:
                    ingest_fold(project, fold, args.params)
                    ingested = fold
                elif not any((project / "data/04_feature").glob("*/query_features.parquet")):
                    kedro(project, "--pipelines", "ingest,feature_extraction")
                for seed in args.seeds or [None]:
                    extra = (
                        args.params,
                        seed and f"seed={seed}",
                        fold is not None and f"ingest.validation_fold={fold}",
                    )
                    run_levers(project, names, ",".join(p for p in extra if p))
        finally:
            if ingested not in (None, 0):  # an interrupted runner leaves the default split
                ingest_fold(project, 0, args.params)
    out = project / "data/08_reporting/levers"
    out.mkdir(parents=True, exist_ok=True)
    if not replicated:
        results = latest_by(
            project, [f"lever-{n}" for n in names], lambda m: m["config"].get("run_label")
        )
        table = lever_table({name.removeprefix("lever-"): m for name, m in results.items()})
        table.to_csv(out / "levers.csv", index=False)
        (out / "levers.md").write_text(markdown_table(table))
        print(markdown_table(table))  # noqa: T201
        return 0

    runs = replicated_runs(project, names, args.seeds, args.folds)
    per_run = pd.concat(
        [
            lever_table({lever: m}).assign(seed=seed, fold=fold)
            for (lever, seed, fold), m in runs.items()
        ],
        ignore_index=True,
    )
    late = {  # CART's decoder only: the baselines have no epochs of their own here
        (lever, seed, fold, modality): late_validation_mrr(
            project, f"lever-{lever}", seed, modality, LATE_EPOCHS, fold if args.folds else None
        )
        for lever, seed, fold in runs
        for modality in per_run.modality.unique()
    }
    per_run[LATE] = [
        late[(r.lever, r.seed, r.fold, r.modality)] if r.system == "cart" else float("nan")
        for r in per_run.itertuples()
    ]
    table = seed_summary(per_run)
    agreement = validation_agreement(per_run)
    over = [("folds", args.folds), ("seeds", args.seeds)]
    report = "mean ± sd over " + ", ".join(f"{k} {' '.join(map(str, v))}" for k, v in over if v)
    report += "\n\n" + markdown_table(table)
    if args.folds:
        files = {"per run": "levers_folds_per_run", "summary": "levers_folds",
                 "agreement": "levers_folds_validation_agreement"}  # fmt: skip
        pooled = pooled_validation_gain(runs)
        pooled.to_csv(out / "levers_folds_pooled.csv", index=False)
        report += (
            "\n\nCART: validation gain over base, query by query, pooled over the runs "
            "(paired bootstrap; adopted: the MRR@10 gain's CI above 0)\n\n" + markdown_table(pooled)
        )
        print(markdown_table(pooled))  # noqa: T201
    else:
        files = {"per run": "levers_seeds_per_seed", "summary": "levers_seeds",
                 "agreement": "levers_validation_agreement"}  # fmt: skip
    report += (
        "\n\nCART: paired validation gain vs paired test gain over (lever, run)\n\n"
        + markdown_table(agreement, digits=2)
    )
    per_run.to_csv(out / f"{files['per run']}.csv", index=False)
    table.to_csv(out / f"{files['summary']}.csv", index=False)
    agreement.to_csv(out / f"{files['agreement']}.csv", index=False)
    (out / f"{files['summary']}.md").write_text(report)
    print(markdown_table(table))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
