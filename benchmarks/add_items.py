"""Add items to a trained index instead of rebuilding it: recall on the new items and on the
old ones, against a full rebuild, with the time each takes.

    python -m benchmarks.add_items                                  # 10 % and 30 %, seeds 2025-2027
    python -m benchmarks.add_items --fractions 0.1 --seeds 2025     # one quick pair
    python -m benchmarks.add_items --resume                         # only the (fraction, seed) not saved
    python -m benchmarks.add_items --report-only                    # tables from the saved rows

For each seed, on the default collection's images (Tux Paint):
1. **full rebuild**: `kedro run` on the whole manifest: the upper bound, and its wall time;
2. for each fraction f: hold back f of the items, drawn per split (a seeded hash of the item,
   so the test split keeps test items among both the old and the new ones), `kedro run` on the
   rest (**before**), then `kedro run --pipeline add_items` on the held-back rows, once with
   `add_items.decoder=none` and once with `finetune`, each in its own copy of the trained
   project (each wall time measured end to end).

Every index is then searched through its published search index (`Retriever`, the path
`cart-search` takes) with the full build's test queries, split into those of the **new**
(held-back) items and of the **old** ones: R@1, R@10 and MRR@10 with 95 % bootstrap CIs, for
CART (none / finetune / rebuild / before), the dual tower and the pair lookup grown by the
same add_items run, and the share of old items' test queries whose top-1 changed. A rank is
computed from the top 10 with ties counted against the relevant item.

Writes benchmarks/results/add_items.csv (one row per fraction, seed, index, system, query
group), add_items_runs.csv (wall times) and add_items.md (means ± sd over seeds, and the CIs
of each seed), and logs the summary as an MLflow run of the repository's tracking store.
Scratch projects live under --work (default data/benchmarks/add_items; not in git).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cart_pipeline.core.manifest import build_tables, unit_draws
from cart_pipeline.core.metrics import metrics_from_ranks, relevant_ranks
from cart_pipeline.io import write_atomically
from experiments.runs import kedro_run, markdown_table

logger = logging.getLogger("benchmarks.add_items")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATASET = REPO / "data" / "01_raw" / "tuxpaint"
MODALITY = "image"
DEPTH = 10
METRICS = ("R@1", "R@10", "MRR@10")


def held_back(manifest: pd.DataFrame, fraction: float, seed: int, ingest: dict) -> pd.Series:
    """(rows,) bool: the rows to add later. Within each split of the full build (train,
    validation, test) the rows whose seeded draw falls below ``fraction``, so both halves
    keep test items."""
    candidates, _ = build_tables(
        manifest, seed=int(ingest["split_seed"]), test_fraction=float(ingest["test_fraction"]),
        validation_fraction=float(ingest["validation_fraction"]),
        min_validation_queries=int(ingest["min_validation_queries"]),
        max_validation_fraction=float(ingest["max_validation_fraction"]),
    )  # fmt: skip
    split = manifest.item_id.map(candidates.set_index("item_id").split)
    draws = unit_draws(manifest.item_id, seed=seed + 7919)  # not the split's draw
    keep = pd.Series(False, index=manifest.index)
    for _, rows in draws.groupby(split):
        keep[rows.index] = rows.rank(method="first") <= round(fraction * len(rows))
    return keep


def image_manifest() -> pd.DataFrame:
    """The default collection's manifest rows of the benchmarked modality."""
    manifest = pd.read_csv(DATASET / "manifest.csv", dtype=str, keep_default_na=False)
    return manifest[manifest.modality == MODALITY].reset_index(drop=True)


def ingest_settings() -> dict:
    """The shipped `ingest` parameters: the split every build draws."""
    import yaml

    return yaml.safe_load((REPO / "conf/base/parameters_ingest.yml").read_text())["ingest"]


def full_build_queries(manifest: pd.DataFrame, ingest: dict) -> pd.DataFrame:
    """Every human query of ``manifest`` with the split (test or not) a full build gives it."""
    _, queries = build_tables(
        manifest, seed=int(ingest["split_seed"]), test_fraction=float(ingest["test_fraction"])
    )
    return queries


def dataset(folder: Path, rows: pd.DataFrame, new_rows: pd.DataFrame | None = None) -> Path:
    """A dataset folder: manifest.csv (and new_items.csv) with the media hard-linked in."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in pd.concat([rows, new_rows]).media_path if new_rows is not None else rows.media_path:
        target = folder / path
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(DATASET / path, target)
            except OSError:  # another file system
                shutil.copy(DATASET / path, target)
    rows.to_csv(folder / "manifest.csv", index=False)
    if new_rows is not None:
        new_rows.to_csv(folder / "new_items.csv", index=False)
    return folder


def project(folder: Path, data: Path) -> Path:
    """A scratch copy of the project (conf/base, src) whose dataset_root is ``data``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in ("pyproject.toml", ".telemetry"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, folder / name)
    shutil.copytree(REPO / "conf" / "base", folder / "conf" / "base")
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "conf" / "local").mkdir(parents=True)
    (folder / "conf" / "local" / "globals.yml").write_text(f"dataset_root: {data}\n")
    return folder


def newest_index(folder: Path) -> Path | None:
    """The newest published search index of the project ``folder``, if it has one."""
    saved = sorted((folder / "data/06_models" / MODALITY / "search_index.pt").glob("*/*.pt"))
    return saved[-1] if saved else None


def built(folder: Path) -> bool:
    """Whether ``folder`` holds a project with a published index (``--reuse-builds``)."""
    return newest_index(folder) is not None


def grown_copy(before: Path, folder: Path) -> Path:
    """A copy of the trained project ``before`` to grow, with this tree's add_items code and
    settings (src, conf/base)."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(before, folder, symlinks=True)
    for part in ("conf/base", "src"):
        shutil.rmtree(folder / part)
        shutil.copytree(REPO / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


# The add_items nodes each system needs (`kedro run`'s journal times each node): the dual
# tower appends the new items' media vectors, the pair lookup the vectors of their pairs
DUAL_TOWER_NODES = ("validate_new_items", "select_new_items", "extract_new_features")
PAIR_LOOKUP_NODES = (*DUAL_TOWER_NODES, "caption_new_items", "build_new_training_pairs",
                     "encode_new_training_pairs")  # fmt: skip


def node_seconds(folder: Path) -> dict[str, float]:
    """Node (namespace dropped) -> seconds, of the newest `add_items` run in ``folder``."""
    import json

    journals = [json.loads(p.read_text())
                for p in (folder / "data/09_tracking/runs").glob("*.json")]  # fmt: skip
    runs = [j for j in journals if j.get("pipeline_names") == ["add_items"]]
    newest = max(runs, key=lambda j: j["session_id"])  # session ids are timestamps
    return {name.split(".")[-1]: s for name, s in newest.get("node_seconds", {}).items()}


def timed_run(folder: Path, pipelines: str | None, params: dict) -> float:
    started = time.perf_counter()
    kedro_run(folder, pipelines or "__default__", params)
    return time.perf_counter() - started


def ranks(folder: Path, queries: pd.DataFrame, system: str) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) pessimistic ranks (DEPTH + 1 = not in the top DEPTH) and (Q,) top-1 item ids of
    ``queries`` (query_id, item_id, text) on the project's published index."""
    from cart_pipeline.search import Retriever

    retriever = Retriever.load(folder, baselines=system != "cart")
    results = retriever.search(queries.text.tolist(), k=DEPTH, system=system)
    rankings = pd.DataFrame(
        [(qid, r.item_id, r.rank, r.score) for qid, rows in zip(queries.query_id, results,
                                                                  strict=True) for r in rows],
        columns=["query_id", "item_id", "rank", "score"],
    )  # fmt: skip
    rank = relevant_ranks(rankings, queries[["query_id", "item_id"]], depth=DEPTH)
    top1 = [rows[0].item_id if rows else "" for rows in results]
    return rank.loc[queries.query_id].to_numpy(), np.asarray(top1)


def measure(
    fraction: float, seed: int, work: Path, full: Path, base_params: dict, saved_times: dict
) -> tuple:
    """Every index of one (fraction, seed): rows of the results table, and the wall times.
    ``saved_times``: the wall times of builds reused from an earlier run (``--reuse-builds``)."""
    manifest, ingest = image_manifest(), ingest_settings()
    back = held_back(manifest, fraction, seed, ingest)
    tag = f"f{round(fraction * 100)}_s{seed}"
    data = dataset(work / "datasets" / tag, manifest[~back], manifest[back])
    before = work / f"before_{tag}"
    times = {"fraction": fraction, "seed": seed, "items_added": int(back.sum()),
             "items_before": int((~back).sum())}  # fmt: skip
    if "build_before_s" in saved_times and built(before):
        times["build_before_s"] = saved_times["build_before_s"]
    else:
        times["build_before_s"] = timed_run(project(before, data), None, base_params)
    grown, nodes = {}, {}
    for update in ("none", "finetune"):
        grown[update] = grown_copy(before, work / f"{update}_{tag}")
        times[f"add_items_{update}_s"] = timed_run(
            grown[update], "add_items", {**base_params, "add_items": {"decoder": update}}
        )
        nodes[update] = node_seconds(grown[update])
        times[f"add_to_index_{update}_s"] = nodes[update]["add_to_index"]
    # the baselines grow alike whatever CART's decoder does: their nodes in the `none` run
    times["dual_tower_add_s"] = sum(nodes["none"][n] for n in DUAL_TOWER_NODES)
    times["pair_lookup_add_s"] = sum(nodes["none"][n] for n in PAIR_LOOKUP_NODES)

    queries = full_build_queries(manifest, ingest)
    test = queries[queries.split == "test"].reset_index(drop=True)
    new_items = set(manifest.item_id[back])
    groups = {"new": test[test.item_id.isin(new_items)], "old": test[~test.item_id.isin(new_items)]}
    indexes = {"before": before, "none": grown["none"], "finetune": grown["finetune"],
               "rebuild": full}  # fmt: skip
    rows, top1 = [], {}
    for index, folder in indexes.items():
        for system in ("cart", "dual_tower", "pair_lookup"):
            if system != "cart" and index in ("finetune",):
                continue  # the baselines grow the same way whatever CART's decoder does
            for group, group_queries in groups.items():
                if index == "before" and group == "new":
                    continue  # not in that index
                rank, top = ranks(folder, group_queries.reset_index(drop=True), system)
                top1[(index, system, group)] = top
                stats = metrics_from_ranks(rank, n_boot=1000, seed=seed)
                rows.append({"fraction": fraction, "seed": seed, "index": index,
                             "system": system, "queries": group, "n_queries": len(rank),
                             **{m: stats[m] for m in METRICS},
                             **{f"{m}_ci95": stats[f"{m}_ci95"] for m in METRICS}})  # fmt: skip
    for index in ("none", "finetune", "rebuild"):
        for system in ("cart", "dual_tower", "pair_lookup"):
            key = (index, system, "old")
            if key in top1:
                changed = float((top1[key] != top1[("before", system, "old")]).mean())
                for row in rows:
                    if (row["index"], row["system"], row["queries"]) == key:
                        row["old_top1_changed"] = changed
    return rows, times


def summary(results: pd.DataFrame, runs: pd.DataFrame) -> str:
    """The markdown report: mean ± sd over seeds per (fraction, index, system, group)."""
    keys = ["fraction", "index", "system", "queries"]
    grouped = results.groupby(keys, sort=False)
    table = grouped[list(METRICS)].agg(["mean", "std"])
    lines = ["| f | index | system | queries | n seeds | " + " | ".join(METRICS)
             + " | old top-1 changed |", "|" + "---|" * (6 + len(METRICS))]  # fmt: skip
    for key, group in grouped:
        cells = []
        for m in METRICS:
            mean, sd = table.loc[key, (m, "mean")], table.loc[key, (m, "std")]
            cells.append(f"{mean:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else ""))
        changed = group.get("old_top1_changed", pd.Series(dtype=float)).mean()
        lines.append(
            f"| {key[0]:.0%} | {key[1]} | {key[2]} | {key[3]} | {len(group)} | "
            + " | ".join(cells)
            + f" | {'' if pd.isna(changed) else f'{changed:.3f}'} |"
        )
    per_seed = results.assign(
        **{f"{m} [95% CI]": results.apply(
            lambda r, m=m: f"{r[m]:.3f} [{r[f'{m}_ci95'][0]:.3f}, {r[f'{m}_ci95'][1]:.3f}]"
            if isinstance(r[f"{m}_ci95"], (list, tuple, np.ndarray)) else f"{r[m]:.3f}", axis=1)
           for m in METRICS}
    )[["fraction", "seed", "index", "system", "queries", "n_queries",
       *(f"{m} [95% CI]" for m in METRICS)]]  # fmt: skip
    timing = runs.assign(
        add_none_share_of_rebuild=runs.add_items_none_s / runs.rebuild_s,
        add_finetune_share_of_rebuild=runs.add_items_finetune_s / runs.rebuild_s,
        none_s_per_item=runs.add_items_none_s / runs.items_added,
        finetune_s_per_item=runs.add_items_finetune_s / runs.items_added,
    )
    for system in ("dual_tower", "pair_lookup"):
        if f"{system}_add_s" in runs:  # not in rows saved before the journal timed nodes
            timing[f"{system}_s_per_item"] = runs[f"{system}_add_s"] / runs.items_added
    return "\n".join([
        "# Adding items vs rebuilding (`python -m benchmarks.add_items`)", "",
        "Means ± sd over seeds; test queries of the held-back (new) and the indexed (old) items.",
        "", *lines, "", "## Wall times (seconds; each `kedro run` end to end)", "",
        "`dual_tower_add_s` and `pair_lookup_add_s`: the add_items nodes each baseline needs "
        "(ingest and media features; and the captions and pair vectors), from the run "
        "journal, without Kedro's start-up; `add_to_index_*_s`: CART's identifiers and decoder "
        "update with every store's append.", "",
        markdown_table(timing.round(3)), "", "## Each seed, with 95 % bootstrap CIs", "",
        markdown_table(per_seed), "",
    ])  # fmt: skip


def log_to_mlflow(results: pd.DataFrame, runs: pd.DataFrame) -> None:
    import mlflow

    from cart_pipeline.pipelines.tracking import mark_model_training

    mlflow.set_tracking_uri(f"sqlite:///{REPO / 'mlflow.db'}")
    mark_model_training(mlflow.set_experiment("cart_pipeline").experiment_id)
    with mlflow.start_run(run_name="benchmark add_items", tags={"kind": "benchmark"}):
        means = results.groupby(["fraction", "index", "system", "queries"])[list(METRICS)].mean()
        for (fraction, index, system, group), values in means.iterrows():
            for metric, value in values.items():
                name = f"f{round(fraction * 100)}.{index}.{system}.{group}.{metric}"
                mlflow.log_metric(name.replace("@", "_at_"), float(value))
        for row in runs.itertuples(index=False):
            prefix = f"f{round(row.fraction * 100)}.s{row.seed}"
            mlflow.log_metrics({f"{prefix}.add_items_finetune_s": row.add_items_finetune_s,
                                f"{prefix}.add_items_none_s": row.add_items_none_s,
                                f"{prefix}.rebuild_s": row.rebuild_s})  # fmt: skip
        for name in ("add_items.csv", "add_items_runs.csv", "add_items.md"):
            mlflow.log_artifact(str(RESULTS / name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2025, 2026, 2027])
    parser.add_argument("--work", type=Path, default=REPO / "data" / "benchmarks" / "add_items")
    parser.add_argument("--resume", action="store_true", help="skip (fraction, seed) saved")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--reuse-builds", action="store_true",
        help="reuse the rebuild and `before` projects under --work (and their saved wall "
        "times), re-running only add_items and the measurements: a changed add_items setting",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    csv, runs_csv = RESULTS / "add_items.csv", RESULTS / "add_items_runs.csv"
    saved = pd.read_csv(csv) if (args.resume or args.report_only) and csv.exists() else None
    saved_runs = pd.read_csv(runs_csv) if saved is not None else None
    earlier = pd.read_csv(runs_csv) if args.reuse_builds and runs_csv.exists() else None
    results = [saved] if saved is not None else []
    runs = [saved_runs] if saved_runs is not None else []
    if not args.report_only:
        for seed in args.seeds:
            base_params = {"modalities": [MODALITY], "seed": seed, "run_label": "add_items"}
            full = None
            for fraction in args.fractions:
                done = (
                    saved is not None
                    and ((saved.fraction == fraction) & (saved.seed == seed)).any()
                )
                if done:
                    continue
                saved_times = {}
                if earlier is not None:
                    match = earlier[(earlier.fraction == fraction) & (earlier.seed == seed)]
                    saved_times = match.iloc[-1].to_dict() if len(match) else {}
                if full is None:  # one rebuild per seed serves every fraction
                    full = args.work / f"rebuild_s{seed}"
                    rebuilt = [r[r.seed == seed].rebuild_s for r in (saved_runs, earlier)
                               if r is not None and (r.seed == seed).any()]  # fmt: skip
                    if rebuilt and built(full):  # this seed's rebuild, saved for any fraction
                        rebuild_s = float(rebuilt[0].iloc[-1])
                    else:
                        data = dataset(args.work / "datasets" / "full", image_manifest())
                        rebuild_s = timed_run(project(full, data), None, base_params)
                rows, times = measure(fraction, seed, args.work, full, base_params, saved_times)
                results.append(pd.DataFrame(rows))
                runs.append(pd.DataFrame([{**times, "rebuild_s": rebuild_s}]))
                RESULTS.mkdir(parents=True, exist_ok=True)
                write_atomically(csv, pd.concat(results).to_csv(index=False))
                write_atomically(runs_csv, pd.concat(runs).to_csv(index=False))
    results_frame = pd.read_csv(csv)
    for m in METRICS:  # CIs come back from the CSV as text
        results_frame[f"{m}_ci95"] = results_frame[f"{m}_ci95"].map(
            lambda s: [float(x) for x in str(s).strip("[]").split(",")]
        )
    report = summary(results_frame, pd.read_csv(runs_csv))
    write_atomically(RESULTS / "add_items.md", report)
    print(report)  # noqa: T201
    log_to_mlflow(results_frame, pd.read_csv(runs_csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
