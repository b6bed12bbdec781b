"""Growing a search index (core/add_items.py): frozen quantisers code the new items, no old
identifier changes, every system's item store grows in step, and an index that cannot be
grown says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cart_pipeline.core.add_items import (
    IndexNotGrowable,
    code_new_items,
    grow_search_index,
    growable,
    replay_sample,
    semantic_ids_of,
)
from cart_pipeline.core.decoder import IdentifierTrie, decoder_to_checkpoint
from cart_pipeline.core.decoder.checkpoint import extend_decoder_checkpoint
from cart_pipeline.core.quantize.rqvae import rqvae_to_checkpoint
from cart_pipeline.core.search_index import SEARCH_INDEX_FORMAT, pairs_to_lists
from cart_pipeline.core.tables import int_lists_to_matrix
from tests.core.test_decoder import tiny_model
from tests.core.test_quantize import _index_of, gaussian_blobs


def pairs_of(ids: np.ndarray, validation: set[str] = frozenset()) -> pd.DataFrame:
    return pd.DataFrame({
        "query_id": [f"q:{i}" for i in ids], "text": [f"text of {i}" for i in ids],
        "item_id": ids, "source": "human", "is_validation": [i in validation for i in ids],
    })  # fmt: skip


def make_bundle(ids: np.ndarray, x: np.ndarray) -> dict:
    """A search index over (ids, x) with everything `add_items` reads."""
    km, rqvae, frame, vocab = _index_of(ids, x)
    tokens = torch.as_tensor(int_lists_to_matrix(frame.tokens).reshape(len(frame), -1))
    decoder = decoder_to_checkpoint(
        tiny_model(vocab.position_ranges(), vocab.size),
        extra={"item_ids": frame.item_id.tolist(), "identifiers": tokens,
               "vocabulary": vocab.to_dict()},
    )  # fmt: skip
    features = torch.from_numpy(x.astype(np.float32))
    pairs = pairs_of(ids, validation={ids[0]})
    return {
        "format": SEARCH_INDEX_FORMAT,
        "modality": "image",
        "decoder": decoder,
        "decoder_version": "v0",
        "items": {
            "item_id": list(ids),
            "media_path": [f"{i}.png" for i in ids],
            "description": [f"text of {i}" for i in ids],
            "split": ["train"] * len(ids),
        },
        "baselines": {
            "dual_tower": {
                "checkpoint": {},
                "version": "v0",
                "item_ids": list(ids),
                "item_features": features,
            },
            "pair_lookup": {
                "text_embeddings": features[1:],
                "pair_items": torch.arange(1, len(ids)),
                "item_ids": list(ids),
                "temperature": 0.05,
            },
        },  # fmt: skip
        "training_pairs": pairs_to_lists(pairs),
        "quantisers": {
            "variant": "cart",
            "centroids": torch.from_numpy(km.centroids),
            "rqvae": rqvae_to_checkpoint(rqvae),
        },  # fmt: skip
        "additions": [],
    }


@pytest.fixture(scope="module")
def halves():
    x, _ = gaussian_blobs(n_per=30, dim=24, n_clusters=6, noise=0.4, seed=3)
    ids = np.array([f"item{i:04d}" for i in range(len(x))])
    old = np.random.default_rng(0).random(len(x)) < 0.8
    return make_bundle(ids[old], x[old]), ids[~old], x[~old]


def test_new_items_get_frozen_codes_and_no_old_identifier_changes(halves):
    bundle, new_ids, new_x = halves
    before, vocab = semantic_ids_of(bundle)
    grown, grown_vocab, stats = code_new_items(bundle, new_ids, new_x)
    kept = grown.set_index("item_id").loc[before.item_id]
    assert kept.tokens.astype(str).tolist() == before.tokens.astype(str).tolist()
    assert grown_vocab.offsets == vocab.offsets
    assert stats["n_items"] == len(before) + len(new_ids)
    # each new item sits in the coarse cluster of its nearest frozen centroid
    centroids = bundle["quantisers"]["centroids"].numpy()
    unit = new_x / np.linalg.norm(new_x, axis=1, keepdims=True)
    nearest = ((unit[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (grown.set_index("item_id").loc[new_ids].coarse.to_numpy() == nearest).all()


def test_quantisers_that_did_not_code_the_index_are_refused(halves):
    bundle, new_ids, new_x = halves
    shuffled = bundle["quantisers"]["centroids"].flip(0)  # the clusters' numbers swapped
    wrong = {**bundle, "quantisers": {**bundle["quantisers"], "centroids": shuffled}}
    with pytest.raises(IndexNotGrowable, match="not the ones that coded it"):
        code_new_items(wrong, new_ids, new_x)


def test_every_system_grows_and_the_old_bundle_is_left_as_it_was(halves):
    bundle, new_ids, new_x = halves
    n_old = len(bundle["items"]["item_id"])
    frame, vocab, _ = code_new_items(bundle, new_ids, new_x)
    tokens = int_lists_to_matrix(frame.tokens).reshape(len(frame), -1)
    decoder = extend_decoder_checkpoint(bundle["decoder"], vocab.to_dict(), tokens,
                                        frame.item_id.tolist())  # fmt: skip
    new_items = pd.DataFrame({"item_id": new_ids, "media_path": [f"{i}.png" for i in new_ids],
                              "description": "", "split": "train"})  # fmt: skip
    new_pairs = pairs_of(new_ids)
    grown = grow_search_index(bundle, decoder, new_items, new_x, new_pairs,
                              new_x / np.linalg.norm(new_x, axis=1, keepdims=True),
                              {"items": len(new_ids), "decoder": "none"})  # fmt: skip

    everyone = set(bundle["items"]["item_id"]) | set(new_ids)
    assert set(grown["items"]["item_id"]) == everyone
    for system in ("dual_tower", "pair_lookup"):
        assert set(grown["baselines"][system]["item_ids"]) == everyone
    tower = grown["baselines"]["dual_tower"]
    assert torch.equal(tower["item_features"][n_old:], torch.from_numpy(new_x.astype(np.float32)))
    lookup = grown["baselines"]["pair_lookup"]
    new_rows = lookup["pair_items"][len(bundle["baselines"]["pair_lookup"]["pair_items"]) :]
    assert [lookup["item_ids"][i] for i in new_rows.tolist()] == list(new_ids)
    assert len(grown["training_pairs"]["text"]) == len(bundle["training_pairs"]["text"]) + len(
        new_ids
    )
    assert grown["additions"] == [{"items": len(new_ids), "decoder": "none"}]
    trie = IdentifierTrie.from_tokens(torch.as_tensor(grown["decoder"]["extra"]["identifiers"]))
    assert trie.n_items == len(everyone)
    # nothing of the index it grew from changed
    assert len(bundle["items"]["item_id"]) == n_old and bundle["additions"] == []
    assert len(bundle["baselines"]["dual_tower"]["item_ids"]) == n_old


def test_an_index_without_what_growing_needs_says_how_to_get_it(halves):
    bundle, _, _ = halves
    with pytest.raises(IndexNotGrowable, match="rerun the serving stage"):
        growable({**bundle, "training_pairs": None})
    atomic = {**bundle, "quantisers": {**bundle["quantisers"], "variant": "atomic"}}
    with pytest.raises(IndexNotGrowable, match="'atomic' identifiers"):
        growable(atomic)


def test_replay_samples_old_training_pairs_only_and_reproducibly():
    ids = np.array([f"i{k}" for k in range(50)])
    pairs = pairs_of(ids, validation=set(ids[:10]))
    first = replay_sample(pairs, n_new=12, per_new=2.0, seed=3)
    assert len(first) == 24 and not first.is_validation.any()
    assert first.equals(replay_sample(pairs, n_new=12, per_new=2.0, seed=3))
    assert len(replay_sample(pairs, n_new=100, per_new=2.0, seed=3)) == 40  # all there are
