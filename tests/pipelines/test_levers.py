"""The lever runner's overrides: `--params` strings, and a dict for what they cannot hold."""

from __future__ import annotations

import pytest

from cart_pipeline.levers import LEVERS, decoder_only, lever_params


def test_a_scalar_lever_is_a_params_string_with_its_run_label():
    assert (
        lever_params("epochs_10", "seed=7")
        == "seed=7,decoder_training.epochs=10,run_label=lever-epochs_10"
    )


def test_a_list_lever_goes_as_a_dict_that_keeps_the_extra_params_and_the_label():
    params = lever_params("no_caption_retrieval", "seed=7,decoder_training.lr=0.002")

    assert params["seed"] == 7 and params["decoder_training"] == {"lr": 0.002}
    assert params["run_label"] == "lever-no_caption_retrieval"
    captioners = params["captioning"]["captioners"]
    assert captioners == LEVERS["no_caption_retrieval"]["captioning"]["captioners"]
    assert all(c["name"] != "dual_tower_retrieval" for m in captioners.values() for c in m)


def test_only_decoder_and_search_levers_may_reuse_the_defaults_pairs_and_identifiers():
    assert decoder_only("lr_0.002") and decoder_only("trie_renormalise_search")
    assert decoder_only("siblings_0.2")  # two decoder_training keys
    assert not decoder_only("base")
    assert not decoder_only("k_15") and not decoder_only("identifier_space_dual_tower")
    assert not decoder_only("no_caption_retrieval")  # a dict lever on captioning


def test_over_seeds_a_lever_is_paired_with_base_of_the_same_seed():
    import numpy as np
    import pandas as pd

    from cart_pipeline.levers import LATE, seed_summary

    rows = [
        # lever, seed, validation MRR@10: M_2 beats base at 2025 and 2026, loses at 2027
        ("base", 2025, 0.30),
        ("base", 2026, 0.32),
        ("base", 2027, 0.31),
        ("M_2", 2025, 0.35),
        ("M_2", 2026, 0.33),
        ("M_2", 2027, 0.30),
        ("k_15", 2025, 0.31),
        ("k_15", 2026, 0.33),
        ("k_15", 2027, 0.32),
    ]
    per_seed = pd.DataFrame(
        [
            {"lever": lever, "seed": seed, "modality": "image", "system": "cart",
             "val MRR@10": val, LATE: val - (0.02 if lever == "M_2" else 0.0),
             "R@1": 0.2, "R@10": 0.5, "MRR@10": 0.3}
            for lever, seed, val in rows
        ]
    )  # fmt: skip

    table = seed_summary(per_seed.sample(frac=1, random_state=0)).set_index("lever")

    assert table.loc["M_2", "val MRR@10 gain vs base"].split() == ["+0.050", "+0.010", "-0.010"]
    # the late-epoch validation is paired the same way; the adoption flag reads the selected one
    assert table.loc["M_2", f"{LATE} gain vs base"].split() == ["+0.030", "-0.010", "-0.030"]
    assert not table.loc["M_2", "gain at every run"]
    assert table.loc["k_15", "gain at every run"]
    assert table.loc["base", "val MRR@10"] == "0.310 ± 0.010"
    assert table.loc["M_2", "runs"] == 3
    # a system with no validation of its own (cart_rerank) shows none, not "nan ± nan"
    rerank = per_seed.assign(system="cart_rerank", **{"val MRR@10": np.nan, LATE: np.nan})
    both = seed_summary(pd.concat([per_seed, rerank])).set_index(["lever", "system"])
    assert pd.isna(both.loc[("base", "cart_rerank"), "val MRR@10"])
    assert both.loc[("base", "cart_rerank"), "R@1"] == "0.200 ± 0.000"
    assert pd.isna(both.loc[("M_2", "cart_rerank"), "val MRR@10 gain vs base"])
    # a baseline validated only at its kept epoch has no late-epoch gain to show
    tower = per_seed.assign(system="dual_tower", **{LATE: np.nan})
    towers = seed_summary(pd.concat([per_seed, tower])).set_index(["lever", "system"])
    assert pd.isna(towers.loc[("M_2", "dual_tower"), f"{LATE} gain vs base"])
    assert towers.loc[("M_2", "dual_tower"), "val MRR@10 gain vs base"].startswith("+0.050")


def test_validation_agreement_correlates_paired_gains_over_levers_and_seeds():
    import pandas as pd

    from cart_pipeline.levers import validation_agreement

    # a lever whose test gain is twice its validation gain at every seed (and, below, minus)
    rows = [("base", seed, 0.30, 0.20) for seed in (1, 2, 3)]
    rows += [("good", 1, 0.31, 0.22), ("good", 2, 0.33, 0.26), ("good", 3, 0.29, 0.18)]
    per_seed = pd.DataFrame(
        [
            {"lever": lever, "seed": seed, "modality": "image", "system": system,
             "val MRR@10": val, "R@1": r1, "R@10": 0.5, "MRR@10": r1}
            for lever, seed, val, r1 in rows
            for system in ("cart", "pair_lookup")
        ]
    )  # fmt: skip

    agree = validation_agreement(per_seed).set_index("test gain")
    assert agree.loc["R@1", "pairs"] == 3  # base is the reference, not a pair; CART only
    assert agree.loc["R@1", "pearson"] == pytest.approx(1.0)
    assert agree.loc["R@1", "spearman"] == pytest.approx(1.0)

    flipped = per_seed.assign(**{"R@1": 0.4 - per_seed["R@1"]})
    assert validation_agreement(flipped).set_index("test gain").loc["R@1", "pearson"] == (
        pytest.approx(-1.0)
    )


def _run(ranks: list[int], query_ids: list[str]) -> dict:
    """A metrics.json as the evaluation writes it, reduced to CART's validation ranks."""
    validation = {"mrr10": 0.0, "query_ids": query_ids, "ranks": ranks}
    return {"by_modality": {"image": {"cart": {"validation": validation}}}}


def test_pooled_validation_gain_pairs_each_query_with_base_of_its_fold():
    from cart_pipeline.levers import pooled_validation_gain

    # two folds of 40 distinct queries; base ranks each item 2nd (RR 0.5)
    folds = {f: [f"q{f}-{i}" for i in range(40)] for f in (0, 1)}
    base = {("base", 7, f): _run([2] * 40, ids) for f, ids in folds.items()}
    # M_2 puts 30 of each fold's 40 queries first and misses 10 (RR 0): +0.25 per query
    better = {("M_2", 7, f): _run([1] * 30 + [21] * 10, ids) for f, ids in folds.items()}
    # k_15 gains on fold 0 exactly what it loses on fold 1: pooled, no gain
    mixed = {("k_15", 7, 0): _run([1] * 40, folds[0]), ("k_15", 7, 1): _run([21] * 40, folds[1])}

    # n_layers_6 gains a lot on fold 0 and loses a little on fold 1: a pooled CI above 0 from
    # one run's model is not enough (the CI holds each run's training fixed)
    lucky = {
        ("n_layers_6", 7, 0): _run([1] * 40, folds[0]),
        ("n_layers_6", 7, 1): _run([2] * 38 + [3] * 2, folds[1]),
    }

    runs = {**base, **better, **mixed, **lucky}
    pooled = pooled_validation_gain(runs).set_index("lever")

    assert pooled.loc["M_2", "validation queries"] == 80
    assert pooled.loc["M_2", "val MRR@10 gain"] == pytest.approx(0.25)
    assert pooled.loc["M_2", "adopted"]  # its CI is above 0
    assert pooled.loc["M_2", "val MRR@10 gain per run"] == "+0.250 +0.250"
    assert pooled.loc["k_15", "val MRR@10 gain"] == pytest.approx(0.0)
    assert not pooled.loc["k_15", "adopted"]
    lo = float(pooled.loc["n_layers_6", "val MRR@10 gain 95% CI"].strip("[]").split(",")[0])
    assert lo > 0 and pooled.loc["n_layers_6", "val MRR@10 gain per run"] == "+0.500 -0.008"
    assert not pooled.loc["n_layers_6", "adopted"]


def test_pooled_validation_gain_refuses_runs_validated_on_other_queries():
    from cart_pipeline.levers import pooled_validation_gain

    runs = {("base", 7, 0): _run([2, 2], ["a", "b"]), ("M_2", 7, 0): _run([1, 1], ["a", "c"])}
    with pytest.raises(ValueError, match="M_2 and base at seed 7, fold 0 .* same per-query"):
        pooled_validation_gain(runs)
