"""The pair-lookup floor: a soft vote over each item's training texts."""

from __future__ import annotations

import numpy as np
import pytest

from cart_pipeline.core.retrieval.pair_lookup import PairLookup


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def lookup() -> PairLookup:
    rng = np.random.default_rng(0)
    texts = _unit(rng.normal(size=(9, 16)))
    items = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])  # item 3 has no training text
    return PairLookup.from_pairs(texts, items, n_items=4, temperature=0.1)


def test_scores_are_the_tempered_log_sum_exp_of_cosines(lookup):
    query = _unit(np.random.default_rng(1).normal(size=(3, 16)))
    for tau in (0.01, 0.1, 1.0):
        got = lookup.scores(query, tau)
        cos = query @ lookup.text_embeddings.T
        for item in range(3):
            own = cos[:, lookup.pair_items == item]
            expected = tau * np.log(np.exp(own / tau).sum(1))
            np.testing.assert_allclose(got[:, item], expected, rtol=1e-5)
        assert np.isneginf(got[:, 3]).all(), "an item with no training text is never found"
    # a small temperature is (close to) the nearest training text
    np.testing.assert_allclose(
        lookup.scores(query, 1e-3)[:, 0],
        (query @ lookup.text_embeddings[lookup.pair_items == 0].T).max(1),
        atol=3e-3,
    )


def test_a_repeated_text_of_one_item_votes_once():
    text = _unit(np.ones((1, 4)))
    twice = PairLookup.from_pairs(np.repeat(text, 2, 0), np.array([0, 0]), 2)
    once = PairLookup.from_pairs(text, np.array([0]), 2)
    assert len(twice.pair_items) == 1
    np.testing.assert_allclose(twice.scores(text), once.scores(text))
    # the same text for two items is two votes, one each
    shared = PairLookup.from_pairs(np.repeat(text, 2, 0), np.array([0, 1]), 2)
    assert len(shared.pair_items) == 2


def test_temperature_is_chosen_on_validation_and_search_returns_the_voted_item(lookup):
    # validation queries sit exactly on a training text of their item
    val = lookup.text_embeddings[[0, 3, 5]]
    by_tau = lookup.fit_temperature(val, np.array([0, 1, 2]), grid=(0.01, 0.5, 5.0))
    assert set(by_tau) == {0.01, 0.5, 5.0}
    assert lookup.temperature == max(by_tau, key=lambda t: (by_tau[t], -t))
    top, scores = lookup.search(val, top_k=2)
    assert top[:, 0].tolist() == [0, 1, 2]
    assert (np.diff(scores, axis=1) <= 0).all()


def test_rescoring_a_beam_reads_only_its_candidates_and_equals_the_full_scores(lookup):
    query = _unit(np.random.default_rng(2).normal(size=(4, 16)))
    full = lookup.scores(query)
    beams = np.array([[2, 0, -1], [1, 3, 0], [0, 1, 2], [3, -1, -1]])
    got = lookup.rescore(query, beams)
    for q, beam in enumerate(beams):
        for b, item in enumerate(beam):
            if item < 0:
                assert np.isneginf(got[q, b])
            else:
                assert got[q, b] == pytest.approx(full[q, item], rel=1e-6, abs=1e-9)
    # what a rerank keeps beside the index: the texts' vectors, per item
    assert lookup.nbytes_per_item() == 9 * 16 * 4 / 4
