"""The two search paths on their own: `CartIndex` (CART's one inference path) and the dual
tower (train, exact cosine search, checkpoint), each on a tiny corpus."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io.core import Version

from cart_pipeline.core.decoder.checkpoint import decoder_to_checkpoint
from cart_pipeline.core.decoder.model import CartDecoder, DecoderConfig
from cart_pipeline.core.metrics import pessimistic_ranks
from cart_pipeline.core.retrieval.cart import CartIndex, native_bf16
from cart_pipeline.core.retrieval.dual_tower import (
    DualTowerConfig,
    DualTowerIndex,
    dual_tower_from_checkpoint,
    dual_tower_to_checkpoint,
    embed_items,
    rerank,
    score_items,
    search,
    train_dual_tower,
)
from cart_pipeline.io import TorchCheckpointDataset

pytestmark = pytest.mark.usefixtures("single_thread")


# ------------------------------------------------------------------------------ CartIndex

# six items, identifiers (coarse, fine, unique) in global token ids: coarse 2..3, fine 4..6, u 7..8
IDENTIFIERS = [[2, 4, 7], [2, 4, 8], [2, 5, 7], [3, 4, 7], [3, 6, 7], [3, 6, 8]]
RANGES = [(2, 4), (4, 7), (7, 9)]


@pytest.fixture(scope="module")
def cart_index(text_encoder) -> CartIndex:
    torch.manual_seed(0)
    model = CartDecoder(
        DecoderConfig(vocab_size=9, position_ranges=RANGES, n_layers=1, d_model=32, n_heads=2)
    )
    extra = {"identifiers": IDENTIFIERS, "item_ids": [f"item{i}" for i in range(6)]}
    return CartIndex.from_checkpoint(
        {**decoder_to_checkpoint(model, extra), "saved_version": "v1"}, text_encoder
    )


def test_cart_index_returns_distinct_existing_items_best_first(cart_index):
    top, scores, timing = cart_index.search(["a brown hen", "a fire truck"], top_k=3, beam_size=4)

    assert top.shape == scores.shape == (2, 3)
    assert ((top >= 0) & (top < 6)).all() and all(len(set(row)) == 3 for row in top.tolist())
    assert (np.diff(scores, axis=1) <= 0).all() and (scores <= 0).all()  # log-probabilities
    assert timing["encode_s"] > 0 and timing["decode_s"] > 0
    assert cart_index.version == "v1"


def test_cart_index_past_the_corpus_ranks_every_item_once_and_pads(cart_index):
    top, scores, _ = cart_index.search(["a brown hen"], top_k=10, beam_size=50)

    assert sorted(top[0, :6].tolist()) == list(
        range(6)
    )  # the beam is capped at the corpus: all of it
    assert (top[0, 6:] == -1).all() and np.isneginf(scores[0, 6:]).all()
    # with every identifier in the beam the search is exact: probabilities over the corpus sum to <= 1
    assert np.exp(scores[0, :6]).sum() <= 1 + 1e-5


def test_cart_index_refuses_top_k_below_one(cart_index):
    with pytest.raises(ValueError, match="top_k and beam_size must be >= 1"):
        cart_index.search(["a hen"], top_k=0)


# ------------------------------------------------------------------------------ dual tower


def tiny_corpus(n_items: int = 12, texts_per_item: int = 3, seed: int = 0):
    """Items with 16-d features; each text is a noisy linear image of its item's features."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, 16)).astype(np.float32)
    projection = rng.normal(size=(16, 8)).astype(np.float32)
    pair_items = np.repeat(np.arange(n_items), texts_per_item)
    texts = items[pair_items] @ projection + 0.05 * rng.normal(size=(len(pair_items), 8)).astype(
        np.float32
    )
    return texts, pair_items, items


CONFIG = DualTowerConfig(
    text_dim=8,
    item_dim=16,
    embed_dim=16,
    hidden_dim=32,
    dropout=0.0,
    epochs=80,
    batch_size=12,
    lr=3e-3,
    patience=80,
    seed=0,
)


def test_dual_tower_overfits_a_tiny_set_and_keeps_its_best_epoch():
    texts, pair_items, items = tiny_corpus()

    model, history = train_dual_tower(
        texts, pair_items, items, CONFIG, val_text_features=texts, val_items=pair_items
    )

    ranks = pessimistic_ranks(score_items(model, texts, items), pair_items)
    assert (ranks == 1).mean() == 1.0
    assert history[-1]["loss"] < history[0]["loss"]
    assert max(h["val_mrr10"] for h in history) == 1.0


def test_dual_tower_search_is_exact_over_the_whole_corpus():
    texts, pair_items, items = tiny_corpus()
    model, _ = train_dual_tower(
        texts, pair_items, items, DualTowerConfig(**{**CONFIG.__dict__, "epochs": 5})
    )
    duplicated = np.concatenate([items, items[:1]])  # item 12 is a copy of item 0

    found, scores = search(model, texts, duplicated, top_k=3)

    brute = score_items(model, texts, duplicated)  # (Q, N) cosine in the joint space
    np.testing.assert_array_equal(found[:, :3], np.argsort(-brute, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(scores[:, :3], -np.sort(-brute, axis=1)[:, :3], rtol=1e-6)
    np.testing.assert_allclose(
        brute[:, 0], brute[:, 12], atol=1e-6
    )  # a copy scores as its original
    item_embeddings = embed_items(model, duplicated)  # a prebuilt index gives the same answer
    np.testing.assert_array_equal(
        search(model, texts, top_k=3, item_embeddings=item_embeddings)[0], found
    )


def test_dual_tower_checkpoint_round_trip_through_the_dataset(tmp_path):
    texts, pair_items, items = tiny_corpus()
    model, history = train_dual_tower(
        texts, pair_items, items, DualTowerConfig(**{**CONFIG.__dict__, "epochs": 3})
    )
    dataset = TorchCheckpointDataset(
        filepath=str(tmp_path / "dual_tower.pt"), version=Version(None, "2026-01-01T00.00.00.000Z")
    )
    dataset.save(dual_tower_to_checkpoint(model, {"history": history}))

    loaded = TorchCheckpointDataset(
        filepath=str(tmp_path / "dual_tower.pt"), version=Version(None, None)
    ).load()
    again = dual_tower_from_checkpoint(loaded)

    assert (
        loaded["saved_version"] == "2026-01-01T00.00.00.000Z"
        and loaded["extra"]["history"] == history
    )
    torch.testing.assert_close(embed_items(again, items), embed_items(model, items))


def test_dual_tower_embeds_an_empty_item_set():
    model = dual_tower_from_checkpoint(
        dual_tower_to_checkpoint(
            train_dual_tower(*tiny_corpus(), DualTowerConfig(**{**CONFIG.__dict__, "epochs": 1}))[0]
        )
    )
    assert embed_items(model, np.zeros((0, 16), np.float32)).shape == (0, CONFIG.embed_dim)


def test_int8_index_quantises_the_linear_layers_and_searches_the_same_corpus(cart_index):
    quantised = cart_index.int8()

    kinds = {type(m).__module__ for m in quantised.decoder.modules()}
    assert any("quantized" in k for k in kinds)
    assert not any(
        "quantized" in type(m).__module__ for m in cart_index.decoder.modules()
    )  # a copy
    top8, scores8, _ = quantised.search(["a brown hen", "a fire truck"], top_k=6, beam_size=6)
    top32, scores32, _ = cart_index.search(["a brown hen", "a fire truck"], top_k=6, beam_size=6)
    assert [sorted(r) for r in top8.tolist()] == [
        sorted(r) for r in top32.tolist()
    ]  # the whole corpus
    np.testing.assert_allclose(np.sort(scores8, 1), np.sort(scores32, 1), atol=0.1)
    assert quantised.version == cart_index.version
    # the fine branch's matmuls, which read their weights directly, run in bf16 on request
    fine = {m.fine_dtype for m in quantised.decoder.modules() if hasattr(m, "fine_dtype")}
    assert fine == {torch.bfloat16 if native_bf16() else None}
    assert {
        m.fine_dtype
        for m in cart_index.int8(bf16_fine=True).decoder.modules()
        if hasattr(m, "fine_dtype")
    } == {torch.bfloat16}
    assert {m.fine_dtype for m in cart_index.decoder.modules() if hasattr(m, "fine_dtype")} == {
        None
    }


def test_dual_tower_index_searches_in_batches_like_one_call_and_times_encoding():
    texts, pair_items, items = tiny_corpus()
    model, _ = train_dual_tower(
        texts, pair_items, items, DualTowerConfig(**{**CONFIG.__dict__, "epochs": 3})
    )
    checkpoint = {**dual_tower_to_checkpoint(model), "saved_version": "v7"}
    index = DualTowerIndex.from_checkpoint(
        checkpoint, [f"item{i}" for i in range(len(items))], items
    )
    encoded = []

    found, scores, timing = index.search(texts, top_k=3, batch_size=5, encode=encoded.append)

    whole, whole_scores = search(model, texts, items, top_k=3)
    np.testing.assert_array_equal(found[:, :3], whole[:, :3])
    np.testing.assert_allclose(scores[:, :3], whole_scores[:, :3], rtol=1e-6)
    assert [b.start for b in encoded] == list(range(0, len(texts), 5))  # once per batch
    assert timing["decode_s"] > 0 and index.version == "v7"


def test_rerank_reorders_each_querys_candidates_by_the_dual_tower_cosine():
    texts, pair_items, items = tiny_corpus()
    model, _ = train_dual_tower(
        texts, pair_items, items, DualTowerConfig(**{**CONFIG.__dict__, "epochs": 5})
    )
    # two queries, each with three candidates in some first-stage order
    candidates = {"q0": [5, 0, 7], "q1": [3, 11, 1]}
    rankings = pd.DataFrame(
        [
            {"query_id": q, "rank": r + 1, "item_id": f"item{i}", "score": -float(r)}
            for q, row in candidates.items()
            for r, i in enumerate(row)
        ]
    )
    unique_items = rankings.item_id.unique()
    reranked = rerank(
        model,
        rankings,
        texts[[0, 1]],
        items[[int(i.removeprefix("item")) for i in unique_items]],
    )

    cosine = score_items(model, texts[[0, 1]], items)  # (2, 12)
    for q, (query, row) in enumerate(candidates.items()):
        mine = reranked[reranked.query_id == query]
        expected = sorted(row, key=lambda i: -cosine[q, i])
        assert mine.item_id.tolist() == [f"item{i}" for i in expected]  # same set, new order
        assert mine["rank"].tolist() == [1, 2, 3]
        np.testing.assert_allclose(mine.score, cosine[q, expected], rtol=1e-5)
