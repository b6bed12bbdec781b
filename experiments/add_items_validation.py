"""Choose how `add_items` reaches new items, on validation only (docs/experiments.md, where
`fit_tokens` was measured with it and not adopted).

    python -m experiments.add_items_validation                      # seeds 2025-2027, f = 0.1
    python -m experiments.add_items_validation --updates none --seeds 2025
    python -m experiments.add_items_validation --report-only        # tables from saved ranks

The benchmark's `before` projects (`python -m benchmarks.add_items`, under --work) hold an
index built without a held-back share of the items. Each is copied and grown by
`kedro run --pipeline add_items` once per decoder update, with `ingest.test_fraction` just below
1 for that run (checked to make every new item a test item): every new item's human queries are
then held out exactly as a test item's are (no training pair, the captioners' guard on), so
they can score the update without the test split.

- **new-item validation queries**: the human queries of the held-back items that are not test
  items of the full build;
- **old-item validation queries**: the `before` index's own validation queries.

Per seed and update: CART's ranks of both groups (top 10, ties against the relevant item),
the add_items wall time, and the old-item change from `before`. Pooled over seeds: each update's
new-item MRR@10 against the reference update's, paired query by query (95 % bootstrap CI).
Writes data/08_reporting/add_items_validation/{ranks.csv, runs.csv, summary.md} and one MLflow
run per update.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from benchmarks.add_items import (
    MODALITY,
    built,
    full_build_queries,
    grown_copy,
    held_back,
    image_manifest,
    ingest_settings,
    newest_index,
    ranks,
    timed_run,
)
from cart_pipeline.core.add_items import indexed_pairs
from cart_pipeline.core.manifest import build_tables
from cart_pipeline.core.metrics import metrics_from_ranks, paired_comparison
from cart_pipeline.io import write_atomically
from experiments.runs import markdown_table

logger = logging.getLogger("experiments.add_items_validation")

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "data" / "08_reporting" / "add_items_validation"
ALL_NEW_HELD_OUT = 0.999999  # ingest.test_fraction of the add_items runs (1 is not a fraction)


def validation_queries(fraction: float, seed: int, before: Path) -> dict[str, pd.DataFrame]:
    """{"new": the held-back non-test items' human queries, "old": the `before` index's own
    validation queries}, each (query_id, item_id, text)."""
    import torch

    manifest, ingest = image_manifest(), ingest_settings()
    back = held_back(manifest, fraction, seed, ingest)
    queries = full_build_queries(manifest, ingest)
    new = queries[queries.item_id.isin(manifest.item_id[back]) & (queries.split != "test")]
    held_out, _ = build_tables(manifest[back], seed=int(ingest["split_seed"]),
                               test_fraction=ALL_NEW_HELD_OUT)  # fmt: skip
    if (held_out.split != "test").any():
        raise SystemExit("a new item would train on its human queries: lower ALL_NEW_HELD_OUT")
    bundle = torch.load(newest_index(before), map_location="cpu", weights_only=True)
    pairs = indexed_pairs(bundle)
    old = pairs[pairs.is_validation]
    columns = ["query_id", "item_id", "text"]
    return {"new": new[columns].reset_index(drop=True), "old": old[columns].reset_index(drop=True)}


def run_seed(fraction: float, seed: int, updates: list[str], work: Path) -> tuple[list, list]:
    """Per-query rank rows and wall-time rows of every update at one seed."""
    tag = f"f{round(fraction * 100)}_s{seed}"
    before = work / f"before_{tag}"
    if not built(before):
        raise SystemExit(f"{before} has no index: run `python -m benchmarks.add_items` first")
    groups = validation_queries(fraction, seed, before)
    rank_rows, run_rows = [], []
    folders = {"before": before}
    for update in updates:
        folder = grown_copy(before, work / f"validation_{update}_{tag}")
        params = {"modalities": [MODALITY], "seed": seed, "run_label": f"validation {update}",
                  "add_items": {"decoder": update}, "ingest": {"test_fraction": ALL_NEW_HELD_OUT}}  # fmt: skip
        seconds = timed_run(folder, "add_items", params)
        run_rows.append({"fraction": fraction, "seed": seed, "update": update,
                         "add_items_s": seconds})  # fmt: skip
        folders[update] = folder
    for name, folder in folders.items():
        for group, queries in groups.items():
            if name == "before" and group == "new":
                continue  # not in that index
            rank, _ = ranks(folder, queries, "cart")
            rank_rows += [{"fraction": fraction, "seed": seed, "update": name, "queries": group,
                           "query_id": q, "rank": int(r)}
                          for q, r in zip(queries.query_id, rank, strict=True)]  # fmt: skip
    return rank_rows, run_rows


def summary(ranked: pd.DataFrame, runs: pd.DataFrame, reference: str) -> tuple[str, pd.DataFrame]:
    """The report: per seed and pooled metrics, and each update against ``reference``."""
    rows = []
    for (update, group), part in ranked.groupby(["update", "queries"], sort=False):
        per_seed = {s: metrics_from_ranks(p["rank"], n_boot=0)["MRR@10"]
                    for s, p in part.groupby("seed")}  # fmt: skip
        pooled = metrics_from_ranks(part["rank"], n_boot=1000, seed=0)
        rows.append({"update": update, "queries": group, "n": len(part),
                     **{m: pooled[m] for m in ("R@1", "R@10", "MRR@10")},
                     "MRR@10 per seed": " ".join(f"{v:.3f}" for v in per_seed.values())})  # fmt: skip
    table = pd.DataFrame(rows)
    comparisons = []
    keys = ["seed", "query_id"]
    for update in sorted(set(ranked["update"]) - {reference, "before"}):
        for group, base in (("new", reference), ("old", reference), ("old", "before")):
            a = ranked[(ranked["update"] == update) & (ranked.queries == group)].sort_values(keys)
            b = ranked[(ranked["update"] == base) & (ranked.queries == group)].sort_values(keys)
            if a.empty or b.empty:
                continue
            if not a[keys].reset_index(drop=True).equals(b[keys].reset_index(drop=True)):
                raise ValueError(f"{update} and {base} ranked different {group} queries")
            diff = paired_comparison(a["rank"].to_numpy(), b["rank"].to_numpy())
            per_seed = (
                a.assign(base=b["rank"].to_numpy()).groupby("seed")
                .apply(lambda p: metrics_from_ranks(p["rank"], n_boot=0)["MRR@10"]
                       - metrics_from_ranks(p["base"], n_boot=0)["MRR@10"], include_groups=False)
            )  # fmt: skip
            lo, hi = diff["MRR@10"]["diff_ci95"]
            comparisons.append({
                "update": update, "against": base, "queries": group, "n": len(a),
                "MRR@10 diff": diff["MRR@10"]["diff"], "95% CI": f"[{lo:+.3f}, {hi:+.3f}]",
                "mean of per-seed diffs": float(per_seed.mean()),
                "R@10 diff": diff["R@10"]["diff"],
            })  # fmt: skip
    versus = pd.DataFrame(comparisons)
    report = "\n".join([
        "# add_items decoder updates on validation (`python -m experiments.add_items_validation`)",
        "", "Pooled over seeds (new: held-back non-test items' human queries; old: the `before`"
        " index's validation queries).", "", markdown_table(table), "",
        f"## Against `{reference}` (paired, pooled) and old items against `before`", "",
        markdown_table(versus), "", "## add_items wall time (s)", "",
        markdown_table(runs.pivot(index="seed", columns="update", values="add_items_s")
                       .reset_index()), "",
    ])  # fmt: skip
    return report, table


def log_to_mlflow(ranked: pd.DataFrame, runs: pd.DataFrame) -> None:
    """One MLflow run per update: its pooled and per-seed validation metrics and wall times."""
    import mlflow

    from cart_pipeline.pipelines.tracking import mark_model_training

    mlflow.set_tracking_uri(f"sqlite:///{REPO / 'mlflow.db'}")
    mark_model_training(mlflow.set_experiment("cart_pipeline").experiment_id)
    for update, part in ranked.groupby("update"):
        with mlflow.start_run(run_name=f"add_items validation {update}",
                              tags={"kind": "experiment", "add_items.decoder": update}):  # fmt: skip
            for group, rows in part.groupby("queries"):
                stats = metrics_from_ranks(rows["rank"], n_boot=0)
                mlflow.log_metrics({f"{group}.{m}".replace("@", "_at_"): stats[m]
                                    for m in ("R@1", "R@10", "MRR@10")})  # fmt: skip
            for row in runs[runs["update"] == update].itertuples(index=False):
                mlflow.log_metric(f"s{row.seed}.add_items_s", row.add_items_s)
            for name in ("ranks.csv", "runs.csv", "summary.md"):
                mlflow.log_artifact(str(OUT / name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", nargs="+", default=["finetune", "none"])
    parser.add_argument("--reference", default="finetune")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2025, 2026, 2027])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--work", type=Path, default=REPO / "data" / "benchmarks" / "add_items")
    parser.add_argument("--report-only", action="store_true", help="from the saved ranks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.report_only:
        rank_rows, run_rows = [], []
        for seed in args.seeds:
            ranked, timed = run_seed(args.fraction, seed, args.updates, args.work)
            rank_rows += ranked
            run_rows += timed
        OUT.mkdir(parents=True, exist_ok=True)
        write_atomically(OUT / "ranks.csv", pd.DataFrame(rank_rows).to_csv(index=False))
        write_atomically(OUT / "runs.csv", pd.DataFrame(run_rows).to_csv(index=False))
    ranked, runs = pd.read_csv(OUT / "ranks.csv"), pd.read_csv(OUT / "runs.csv")
    report, _ = summary(ranked, runs, args.reference)
    write_atomically(OUT / "summary.md", report)
    print(report)  # noqa: T201
    log_to_mlflow(ranked, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
