"""The lever runner's overrides: `--params` strings, and a dict for what they cannot hold."""

from __future__ import annotations

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
