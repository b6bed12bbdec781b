"""The lever runner: its levers are YAML overrides, and its verdict follows the declared rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.levers import (
    pooled_validation_gain,
    run_params,
    summary_table,
    validation_agreement,
)
from experiments.runs import available, dotted, overrides


def test_a_lever_is_its_yaml_overrides_over_the_extra_params_with_label_seed_and_fold():
    extra = dotted("decoder_training.lr=0.002,modalities=[image]")
    params = run_params("distill_0.25", extra, seed=7, fold=2)
    assert params == {
        "decoder_training": {"lr": 0.002, "soft_target_weight": 0.25},
        "modalities": ["image"],
        "run_label": "lever-distill_0.25",
        "evaluation": {"validation_ranks": True},
        "seed": 7,
        "ingest": {"validation_fold": 2},
    }
    assert run_params("base", {}, seed=None, fold=None) == {
        "run_label": "lever-base",
        "evaluation": {"validation_ranks": True},
    }


def test_a_list_lever_reaches_the_run_whole():
    params = run_params("no_caption_retrieval", dotted("seed=7"), seed=None, fold=None)
    captioners = params["captioning"]["captioners"]
    assert captioners == overrides("levers", "no_caption_retrieval")["captioning"]["captioners"]
    assert all(c["name"] != "dual_tower_retrieval" for m in captioners.values() for c in m)
    assert params["seed"] == 7


def test_every_shipped_lever_sets_only_parameters_the_project_has():
    from cart_pipeline.pipelines.parameters import check_parameters
    from tests.conftest import project_parameters

    defaults = project_parameters()
    for name in available("levers"):
        from experiments.runs import merge

        check_parameters(merge(defaults, overrides("levers", name)))  # raises on a bad key


def test_an_unknown_lever_is_refused_listing_the_known_ones():
    with pytest.raises(SystemExit, match="no lever 'distil_0.25' .* distill_0.25"):
        overrides("levers", "distil_0.25")


def per_run(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"lever": lever, "env": env, "seed": seed, "fold": 0, "modality": "image",
             "system": system, "val MRR@10": val, "R@1": r1, "R@10": 0.5, "MRR@10": r1}
            for lever, env, seed, val, r1 in rows
            for system in ("cart", "pair_lookup")
        ]
    )  # fmt: skip


def test_over_seeds_a_lever_is_paired_with_base_of_the_same_collection_and_seed():
    rows = [
        # M_2 beats base at 2025 and 2026, loses at 2027; emoji's base is much higher
        ("base", "local", 2025, 0.30, 0.2), ("base", "local", 2026, 0.32, 0.2),
        ("base", "local", 2027, 0.31, 0.2), ("M_2", "local", 2025, 0.35, 0.2),
        ("M_2", "local", 2026, 0.33, 0.2), ("M_2", "local", 2027, 0.30, 0.2),
        ("base", "emoji", 2025, 0.60, 0.2), ("M_2", "emoji", 2025, 0.61, 0.2),
    ]  # fmt: skip
    table = summary_table(per_run(rows).sample(frac=1, random_state=0))
    table = table.set_index(["lever", "env", "system"])
    assert table.loc[("M_2", "local", "cart"), "val MRR@10 gain per run"].split() == [
        "+0.050", "+0.010", "-0.010"
    ]  # fmt: skip
    assert table.loc[("M_2", "emoji", "cart"), "val MRR@10 gain per run"] == "+0.010"
    assert table.loc[("base", "local", "cart"), "val MRR@10"] == "0.310 ± 0.010"
    assert table.loc[("M_2", "local", "cart"), "runs"] == 3
    # a system with no validation of its own (cart_rerank) shows none, not "nan ± nan"
    cart = per_run(rows).query("system == 'cart'")
    rerank = cart.assign(system="cart_rerank", **{"val MRR@10": np.nan})
    both = summary_table(rerank).set_index(["lever", "env", "system"])
    assert pd.isna(both.loc[("base", "local", "cart_rerank"), "val MRR@10"])
    assert both.loc[("base", "local", "cart_rerank"), "R@1"] == "0.200 ± 0.000"


def test_validation_agreement_correlates_paired_gains_over_levers_and_runs():
    # a lever whose test gain is twice its validation gain at every seed (and, below, minus)
    rows = [("base", "local", seed, 0.30, 0.20) for seed in (1, 2, 3)]
    rows += [("good", "local", 1, 0.31, 0.22), ("good", "local", 2, 0.33, 0.26),
             ("good", "local", 3, 0.29, 0.18)]  # fmt: skip
    agree = validation_agreement(per_run(rows)).set_index("test gain")
    assert agree.loc["R@1", "pairs"] == 3  # base is the reference, not a pair; CART only
    assert agree.loc["R@1", "pearson"] == pytest.approx(1.0)
    assert agree.loc["R@1", "spearman"] == pytest.approx(1.0)
    flipped = per_run(rows).assign(**{"R@1": lambda f: 0.4 - f["R@1"]})
    assert validation_agreement(flipped).set_index("test gain").loc["R@1", "pearson"] == (
        pytest.approx(-1.0)
    )


def _run(ranks: list[int], query_ids: list[str]) -> dict:
    """A metrics.json as the evaluation writes it, reduced to CART's validation ranks."""
    validation = {"mrr10": 0.0, "query_ids": query_ids, "ranks": ranks}
    return {"by_modality": {"image": {"cart": {"validation": validation}}}}


def test_pooled_gain_pairs_each_query_with_base_of_its_run_and_needs_every_collection():
    # two collections x two folds of 40 distinct queries; base ranks each item 2nd (RR 0.5)
    runs = {}
    for env in ("local", "emoji"):
        for fold in (0, 1):
            ids = [f"{env}{fold}-{i}" for i in range(40)]
            runs[("base", env, 7, fold)] = _run([2] * 40, ids)
            # M_2 puts 30 of 40 first and misses 10 (RR 0): +0.25 per query, everywhere
            runs[("M_2", env, 7, fold)] = _run([1] * 30 + [21] * 10, ids)
            # k_15 gains a lot on Tux Paint and loses a little on emoji: pooled CI above 0,
            # but a setting that fits one collection only is not adopted
            runs[("k_15", env, 7, fold)] = _run([1] * 40 if env == "local" else [3] * 40, ids)
            # n_layers_6 gains on fold 0 exactly what it loses on fold 1: no gain
            runs[("n_layers_6", env, 7, fold)] = _run([1] * 40 if fold == 0 else [21] * 40, ids)
    pooled = pooled_validation_gain(runs).set_index("lever")

    assert pooled.loc["M_2", "validation queries"] == 160 and pooled.loc["M_2", "runs"] == 4
    assert pooled.loc["M_2", "val MRR@10 gain"] == pytest.approx(0.25)
    assert pooled.loc["M_2", "adopted"]
    assert pooled.loc["M_2", "val MRR@10 gain by collection"] == "emoji +0.250 local +0.250"
    lo = float(pooled.loc["k_15", "val MRR@10 gain 95% CI"].strip("[]").split(",")[0])
    assert lo > 0 and not pooled.loc["k_15", "adopted"]
    assert pooled.loc["n_layers_6", "val MRR@10 gain"] == pytest.approx(0.0)
    assert not pooled.loc["n_layers_6", "adopted"]


def test_pooled_gain_refuses_runs_validated_on_other_queries():
    runs = {
        ("base", "local", 7, 0): _run([2, 2], ["a", "b"]),
        ("M_2", "local", 7, 0): _run([1, 1], ["a", "c"]),
    }
    with pytest.raises(
        ValueError, match="M_2 and base in local at seed 7, fold 0 .* same per-query"
    ):
        pooled_validation_gain(runs)


def test_a_resumed_runner_skips_the_runs_it_saved_and_reruns_the_rest(tmp_path, monkeypatch):
    import json

    import experiments.levers as levers

    def saved(label: str, fold: int) -> None:
        versions = tmp_path / "data/08_reporting/metrics.json"
        n = len(list(versions.glob("*"))) if versions.is_dir() else 0
        folder = versions / f"2026-01-01T00.00.0{n}.000Z"
        folder.mkdir(parents=True, exist_ok=True)
        config = {"run_label": label, "seed": 2025, "validation_fold": fold}
        (folder / "metrics.json").write_text(json.dumps({"config": config}))

    for env in ("base", "local"):
        (tmp_path / "conf" / env).mkdir(parents=True)
    (tmp_path / "conf/base/globals.yml").write_text("data_dir: data\n")
    for label in ("lever-base", "lever-distill_0.25"):
        saved(label, 1)  # fold 1 complete
    saved("lever-base", 0)  # fold 0 half done
    calls = []
    monkeypatch.setattr(levers, "kedro_run", lambda project, stages, params, env: calls.append(
        (stages.split(",")[0], params.get("run_label"), params.get("ingest", {}).get("validation_fold"))
    ))  # fmt: skip
    levers.run_all(tmp_path, ["base", "distill_0.25"], ["local"], [None], [0, 1], {}, True)
    # fold 1 needs nothing (not even its ingest); fold 0 re-ingests and runs the missing lever
    assert calls == [("ingest", None, 0), ("captioning", "lever-distill_0.25", 0)]
    calls.clear()
    levers.run_all(tmp_path, ["base", "distill_0.25"], ["local"], [None], [0, 1], {}, False)
    assert calls == [  # without --resume: every run again, fold 0 (the default split) last
        (stage, label, fold)
        for fold in (1, 0)
        for stage, label in [("ingest", None), *(("captioning", f"lever-{x}") for x in ("base", "distill_0.25"))]
    ]  # fmt: skip
