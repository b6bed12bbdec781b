"""Behaviour of core.quantize: k-means, RQ-VAE, hierarchical k-means codes, identifiers."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from cart_pipeline.core.quantize import (
    SEMANTIC_ID_COLUMNS,
    Vocabulary,
    assign_unique,
    atomic_identifiers,
    build_identifiers,
    default_n_clusters,
    extend_identifiers,
    fine_codes_for_variant,
    fit_kmeans,
    frozen_codes,
    hierarchical_kmeans_codes,
    identifier_stats,
    identifiers_for_variant,
    l2_normalize,
)
from cart_pipeline.core.quantize.ids import semantic_ids_from_tokens
from cart_pipeline.core.quantize.rqvae import (
    EMACodebook,
    RQVAEConfig,
    rqvae_diagnostics,
    rqvae_from_checkpoint,
    rqvae_to_checkpoint,
    train_rqvae,
)
from cart_pipeline.core.tables import int_lists_to_matrix, read_parquet

# Small enough to train in ~2 s on one CPU thread, big enough to have to learn something.
RQ_CONFIG = RQVAEConfig(
    latent_dim=32,
    hidden_dims=(128, 64),
    n_levels=3,
    codebook_size=32,
    epochs=12,
    batch_size=256,
    lr=2e-3,
    seed=7,
)
TINY_RQ_CONFIG = RQVAEConfig(
    latent_dim=16,
    hidden_dims=(32,),
    n_levels=2,
    codebook_size=8,
    epochs=3,
    batch_size=64,
    seed=3,
)


@pytest.fixture(scope="module", autouse=True)
def torch_state():
    """One thread (tiny models; shared CI cores), and restore the global flags we touch."""
    threads, deterministic = torch.get_num_threads(), torch.get_deterministic_debug_mode()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_deterministic_debug_mode(deterministic)


def gaussian_blobs(n_per: int, dim: int, n_clusters: int, noise: float, seed: int):
    """Clusters that differ in *direction* (k-means works on L2-normalised rows)."""
    rng = np.random.default_rng(seed)
    centers = l2_normalize(rng.standard_normal((n_clusters, dim)))
    labels = np.repeat(np.arange(n_clusters), n_per)
    x = centers[labels] + noise * rng.standard_normal((len(labels), dim))
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def structured_residual() -> np.ndarray:
    """(2000, 128) two-scale mixture: a big 16-way and a smaller 16-way component, plus noise.

    Residual quantisation should find the big one in level 1 and the smaller one after it.
    """
    rng = np.random.default_rng(0)
    n, dim = 2000, 128
    big, small = rng.standard_normal((16, dim)), 0.5 * rng.standard_normal((16, dim))
    x = (
        big[rng.integers(0, 16, n)]
        + small[rng.integers(0, 16, n)]
        + 0.2 * rng.standard_normal((n, dim))
    )
    return (x - x.mean(0)).astype(np.float32)


@pytest.fixture(scope="module")
def trained(structured_residual):
    seen: list[tuple[int, dict]] = []
    model, history = train_rqvae(
        structured_residual, RQ_CONFIG, on_epoch=lambda e, row: seen.append((e, row))
    )
    return model, history, seen


# ---------------------------------------------------------------- k-means


def test_default_n_clusters_is_sqrt_clipped_and_at_most_n():
    assert [default_n_clusters(n) for n in (1, 3, 100, 950, 10**7)] == [1, 2, 10, 31, 1024]


@pytest.mark.parametrize("method", ["full", "faiss", "minibatch"])
def test_kmeans_recovers_separated_clusters_deterministically(method):
    x, labels = gaussian_blobs(n_per=120, dim=16, n_clusters=5, noise=0.05, seed=1)
    a = fit_kmeans(x, 5, seed=0, method=method)
    b = fit_kmeans(x, 5, seed=0, method=method)
    assert adjusted_rand_score(labels, a.assignments) > 0.95
    assert a.centroids.shape == (5, 16) and a.centroids.dtype == np.float32
    assert a.assignments.dtype == np.int64 and a.distances.dtype == np.float32
    assert a.centroids.tobytes() == b.centroids.tobytes()
    assert np.array_equal(a.assignments, b.assignments)
    # distances are squared L2 to the assigned centroid, in the normalised space
    expected = ((l2_normalize(x) - a.centroids[a.assignments]) ** 2).sum(1)
    np.testing.assert_allclose(a.distances, expected, rtol=1e-4, atol=1e-5)


def test_kmeans_normalises_so_scale_does_not_matter():
    x, _ = gaussian_blobs(n_per=50, dim=8, n_clusters=3, noise=0.05, seed=2)
    scaled = x * np.random.default_rng(0).uniform(0.1, 10, (len(x), 1)).astype(np.float32)
    assert np.array_equal(
        fit_kmeans(x, 3, seed=0).assignments, fit_kmeans(scaled, 3, seed=0).assignments
    )


def test_kmeans_rejects_more_clusters_than_points():
    with pytest.raises(ValueError):
        fit_kmeans(np.ones((3, 4), np.float32), 4, seed=0)


# ---------------------------------------------------------------- RQ-VAE


def test_rqvae_reconstructs_far_better_than_zero(trained, structured_residual):
    model, _, _ = trained
    diag = rqvae_diagnostics(model, structured_residual)
    assert diag["explained_variance"] > 0.6
    assert diag["recon_mse"] < 0.4 * diag["zero_mse"]
    # each residual level adds (or at least keeps) explained variance
    assert diag["explained_variance_at_l1"] <= diag["explained_variance_at_l2"] + 1e-3
    assert diag["explained_variance_at_l1"] > 0.3


def test_rqvae_uses_its_codebooks(trained, structured_residual):
    model, history, _ = trained
    codes = model.encode_codes(structured_residual)
    assert codes.shape == (len(structured_residual), 3) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < RQ_CONFIG.codebook_size
    diag = rqvae_diagnostics(model, structured_residual)
    for level in (1, 2, 3):
        assert diag[f"usage_l{level}"] > 0.25
        assert diag[f"perplexity_l{level}"] > 4
        assert history[-1][f"usage_l{level}"] > 0.25


def test_rqvae_history_and_callback(trained):
    _, history, seen = trained
    assert [row["epoch"] for row in history] == list(range(1, RQ_CONFIG.epochs + 1))
    assert [e for e, _ in seen] == [row["epoch"] for row in history]
    assert seen[-1][1] == history[-1]
    keys = {
        "epoch",
        "loss",
        "recon_loss",
        "commit_loss",
        "usage_l1",
        "perplexity_l1",
        "restarts_l3",
    }
    assert keys <= set(history[0])
    assert history[-1]["recon_loss"] < 0.5 * history[0]["recon_loss"]
    for row in history:
        assert row["loss"] == pytest.approx(
            row["recon_loss"] + RQ_CONFIG.beta * row["commit_loss"], rel=1e-5
        )


def test_rqvae_same_seed_same_codes(trained, structured_residual):
    model, history, _ = trained
    again, history_again = train_rqvae(structured_residual, RQ_CONFIG)
    assert np.array_equal(
        model.encode_codes(structured_residual), again.encode_codes(structured_residual)
    )
    assert history == history_again


def test_rqvae_checkpoint_round_trip_under_weights_only(trained, structured_residual):
    model, _, _ = trained
    buffer = io.BytesIO()
    torch.save(rqvae_to_checkpoint(model), buffer)
    buffer.seek(0)
    restored = rqvae_from_checkpoint(torch.load(buffer, weights_only=True))
    assert restored.config == model.config
    assert np.array_equal(
        restored.encode_codes(structured_residual), model.encode_codes(structured_residual)
    )
    np.testing.assert_array_equal(
        restored.reconstruct(structured_residual[:50]), model.reconstruct(structured_residual[:50])
    )


def test_dead_codes_are_restarted_from_current_residuals():
    book = EMACodebook(size=4, dim=2, decay=0.9, dead_threshold=0.5)
    book.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0], [60.0, 60.0]]))
    book.usage.copy_(torch.tensor([0.5, 0.5, 0.0, 0.0]))  # codes 2, 3 never used
    book.embed_sum.copy_(book.embed * book.usage[:, None])
    r = torch.tensor([[0.1, 0.0], [0.0, 0.1], [1.0, 0.9], [0.9, 1.0]])
    torch.manual_seed(0)
    assert book.ema_update(r, book.nearest(r)) == 2
    for code in (2, 3):  # re-seeded with one of the batch's residuals, with a grace share
        assert any(torch.equal(book.embed[code], row) for row in r)
        assert book.usage[code] == pytest.approx(0.25)
    assert book.embed[0].norm() < 0.1 and (book.embed[1] - 1).abs().max() < 0.1  # live codes stay


# ---------------------------------------------------------------- hierarchical k-means


def test_hierarchical_codes_follow_the_cluster_tree():
    # 3 top-level directions, each with 3 well-separated sub-directions, 15 items per leaf
    rng = np.random.default_rng(0)
    top = 4 * l2_normalize(rng.standard_normal((3, 32)))
    sub = l2_normalize(rng.standard_normal((3, 3, 32)))
    leaf = np.repeat(np.arange(9), 15)
    x = top[leaf // 3] + sub[leaf // 3, leaf % 3] + 0.02 * rng.standard_normal((len(leaf), 32))
    codes = hierarchical_kmeans_codes(x, branching=3, depth=2, seed=0)
    assert codes.shape == (135, 2) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 3  # branching respected
    # same leaf <=> same code prefix
    leaf_of_code = np.unique(codes, axis=0, return_inverse=True)[1].ravel()
    assert adjusted_rand_score(leaf, leaf_of_code) == 1.0
    assert adjusted_rand_score(leaf // 3, codes[:, 0]) == 1.0
    assert np.array_equal(codes, hierarchical_kmeans_codes(x, branching=3, depth=2, seed=0))


def test_hierarchical_small_groups_are_numbered_by_position():
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    codes = hierarchical_kmeans_codes(x[:3], branching=4, depth=3, seed=0)
    assert codes.tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 0]]
    # with an initial partition, each of its groups is numbered on its own
    codes = hierarchical_kmeans_codes(
        x, branching=3, depth=2, seed=0, within=np.array([7, 7, 2, 2, 2])
    )
    assert codes.tolist() == [[0, 0], [1, 0], [0, 0], [1, 0], [2, 0]]


def test_hierarchical_within_groups_are_independent():
    x, _ = gaussian_blobs(n_per=25, dim=16, n_clusters=6, noise=0.3, seed=4)
    within = np.random.default_rng(0).integers(0, 3, len(x))
    codes = hierarchical_kmeans_codes(x, branching=4, depth=3, seed=1, within=within)
    assert codes.max() < 4 and len(np.unique(np.column_stack([within, codes]), axis=0)) > 24
    for g in range(3):  # each initial group is coded exactly as if it were the whole corpus
        rows = within == g
        assert np.array_equal(
            codes[rows], hierarchical_kmeans_codes(x[rows], branching=4, depth=3, seed=1)
        )


# ---------------------------------------------------------------- unique token, vocabulary, ids


def test_assign_unique_numbers_collisions_in_row_order():
    prefix = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 0], [5, 5]])
    assert assign_unique(prefix).tolist() == [0, 1, 0, 2, 1, 0]
    assert assign_unique(np.zeros((3, 0), np.int64)).tolist() == [0, 1, 2]


def test_assign_unique_makes_ids_unique_and_is_stable():
    rng = np.random.default_rng(0)
    prefix = rng.integers(0, 3, (500, 2))  # 9 prefixes: many collisions
    u = assign_unique(prefix)
    assert len(np.unique(np.column_stack([prefix, u]), axis=0)) == 500
    assert np.array_equal(u, assign_unique(prefix.copy()))
    for p in np.unique(prefix, axis=0):
        rows = np.flatnonzero((prefix == p).all(1))
        assert u[rows].tolist() == list(range(len(rows)))  # first row of a group gets 0


def test_vocabulary_ranges_are_disjoint_and_tokens_land_in_them():
    vocab = Vocabulary([5, 3, 3, 2])
    assert vocab.offsets == [2, 7, 10, 13] and vocab.size == 15 and vocab.length == 4
    ranges = vocab.position_ranges()
    assert ranges[0][0] == 2  # after PAD=0, BOS=1
    assert all(end == nxt for (_, end), (nxt, _) in zip(ranges[:-1], ranges[1:], strict=True))
    codes = np.array([[4, 0, 2, 1], [0, 2, 0, 0]])
    tokens = vocab.to_tokens(codes)
    for i, (start, end) in enumerate(ranges):
        assert ((tokens[:, i] >= start) & (tokens[:, i] < end)).all()
    assert np.array_equal(vocab.from_tokens(tokens), codes)
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab
    with pytest.raises(ValueError):
        vocab.to_tokens(np.array([[5, 0, 0, 0]]))
    with pytest.raises(ValueError):
        vocab.from_tokens(np.array([[2, 2, 10, 13]]))


def test_build_identifiers_contract_on_a_hand_example(tmp_path):
    frame, vocab, stats = build_identifiers(
        ["b", "a", "c", "d"],
        coarse=[1, 1, 0, 1],
        fine=[[2, 3], [2, 3], [0, 0], [2, 4]],
        fine_sizes=8,
    )
    assert list(frame.columns) == SEMANTIC_ID_COLUMNS
    assert frame["item_id"].tolist() == ["a", "b", "c", "d"]  # sorted; u assigned in this order
    assert frame["unique"].tolist() == [0, 1, 0, 0]
    assert frame["id_str"].tolist() == ["c1-f2-f3-u0", "c1-f2-f3-u1", "c0-f0-f0-u0", "c1-f2-f4-u0"]
    assert vocab.position_sizes == [2, 8, 8, 2] and vocab.offsets == [2, 4, 12, 20]
    assert int_lists_to_matrix(frame["tokens"]).tolist() == [
        [3, 6, 15, 20],
        [3, 6, 15, 21],
        [2, 4, 12, 20],
        [3, 6, 16, 20],
    ]
    frame.to_parquet(tmp_path / "ids.parquet")
    back = read_parquet(tmp_path / "ids.parquet")
    assert int_lists_to_matrix(back["fine"]).tolist() == [[2, 3], [2, 3], [0, 0], [2, 4]]
    assert stats == identifier_stats(back, vocab)
    with pytest.raises(ValueError):
        build_identifiers(["a", "a"], [0, 1], [[0], [0]])
    with pytest.raises(ValueError):
        build_identifiers(["a", "b"], [0, 3], [[0], [0]], coarse_size=2)


def test_identifier_stats_exact_values():
    frame, vocab, stats = build_identifiers(
        ["i1", "i2", "i3", "i4", "i5", "i6"],
        coarse=[0, 0, 0, 1, 1, 2],
        fine=[[1, 1], [1, 1], [1, 1], [0, 3], [0, 2], [0, 2]],
        coarse_size=4,
        fine_sizes=4,
    )
    assert frame["unique"].tolist() == [0, 1, 2, 0, 0, 0]
    assert stats == {
        "n_items": 6,
        "id_length": 4,
        "n_fine_levels": 2,
        "n_distinct_prefixes": 4,  # (0,1,1) x3, (1,0,3), (1,0,2), (2,0,2)
        "collision_rate": 0.5,  # i1..i3 share a prefix
        "max_collision_group": 3,
        "max_unique": 2,
        "distinct_prefixes_depth_1": 3,
        "distinct_prefixes_depth_2": 3,
        "distinct_prefixes_depth_3": 4,
        "distinct_prefixes_depth_4": 6,
        "coarse_usage": 0.75,
        "fine_usage_l1": 0.5,
        "fine_usage_l2": 0.75,
        "vocab_size": 2 + 4 + 4 + 4 + 3,
    }


def test_atomic_identifiers_are_one_unique_token_per_item():
    frame, vocab, stats = atomic_identifiers(["z", "x", "y"])
    assert frame["item_id"].tolist() == ["x", "y", "z"]
    assert frame["id_str"].tolist() == ["a0", "a1", "a2"]
    tokens = int_lists_to_matrix(frame["tokens"])
    assert tokens.ravel().tolist() == [2, 3, 4] and vocab.size == 5
    assert int_lists_to_matrix(frame["fine"]).shape == (3, 0)
    assert stats["collision_rate"] == 0.0 and stats["id_length"] == 1


# ---------------------------------------------------------------- variants, end to end


@pytest.fixture(scope="module")
def corpus():
    x, _ = gaussian_blobs(n_per=40, dim=24, n_clusters=8, noise=0.4, seed=5)
    ids = np.array([f"item{i:04d}" for i in range(len(x))])
    perm = np.random.default_rng(0).permutation(len(x))  # callers need not pre-sort
    return ids[perm], x[perm]


def _semantic_ids_bytes(variant, ids, x, path) -> bytes:
    km = fit_kmeans(x, default_n_clusters(len(x)), seed=11)
    codes = fine_codes_for_variant(variant, x, km, TINY_RQ_CONFIG, seed=11)
    frame, _, _ = identifiers_for_variant(
        variant, ids, codes.coarse, codes.fine, codes.coarse_size, codes.fine_size
    )
    frame.to_parquet(path)
    return path.read_bytes()


def test_whole_chain_is_byte_identical_for_the_same_seed(corpus, tmp_path):
    ids, x = corpus
    first = _semantic_ids_bytes("cart", ids, x, tmp_path / "a.parquet")
    second = _semantic_ids_bytes("cart", ids, x, tmp_path / "b.parquet")
    assert first == second


@pytest.mark.parametrize("variant", ["cart", "rqvae_only", "hierarchical_kmeans", "atomic"])
def test_every_variant_gives_unique_identifiers_of_the_right_shape(corpus, variant):
    ids, x = corpus
    km = fit_kmeans(x, default_n_clusters(len(x)), seed=0)
    codes = fine_codes_for_variant(variant, x, km, TINY_RQ_CONFIG)
    frame, vocab, stats = identifiers_for_variant(
        variant, ids, codes.coarse, codes.fine, codes.coarse_size, codes.fine_size
    )
    tokens = int_lists_to_matrix(frame["tokens"])
    assert len(np.unique(tokens, axis=0)) == len(ids) == len(frame)
    assert frame["item_id"].tolist() == sorted(ids)
    expected_length = 1 if variant == "atomic" else 1 + TINY_RQ_CONFIG.n_levels + 1
    assert tokens.shape[1] == vocab.length == stats["id_length"] == expected_length
    assert tokens.min() >= 2 and tokens.max() < vocab.size
    if variant in ("cart", "rqvae_only"):
        assert codes.model is not None and len(codes.history) == TINY_RQ_CONFIG.epochs
        assert "explained_variance" in codes.diagnostics
    if variant in ("cart", "hierarchical_kmeans"):
        # coarse token is the K-Means cluster, mapped through the sorted item order
        by_id = dict(zip(ids, km.assignments, strict=True))
        assert frame["coarse"].tolist() == [by_id[i] for i in frame["item_id"]]


@pytest.mark.parametrize("variant", ["cart", "rqvae_only"])
def test_a_sampled_rqvae_training_still_encodes_every_item(corpus, variant):
    """train_max_items: the RQ-VAE sees a seeded sample, every row gets codes, same seed ⇒
    same codes; the training sample is what the diagnostics describe."""
    ids, x = corpus
    km = fit_kmeans(x, default_n_clusters(len(x)), seed=0)
    sampled = replace(TINY_RQ_CONFIG, train_max_items=100)
    first = fine_codes_for_variant(variant, x, km, sampled)
    again = fine_codes_for_variant(variant, x, km, sampled)
    whole = fine_codes_for_variant(variant, x, km, TINY_RQ_CONFIG)

    assert first.fine.shape == whole.fine.shape == (len(x), TINY_RQ_CONFIG.n_levels)
    assert np.array_equal(first.fine, again.fine) and np.array_equal(first.coarse, again.coarse)
    assert not np.array_equal(first.fine, whole.fine)  # trained on other rows: other codes
    assert first.diagnostics["distinct_code_tuples"] <= 100


def test_unknown_variant_is_rejected(corpus):
    with pytest.raises(ValueError):
        fine_codes_for_variant("nope", corpus[1], None, TINY_RQ_CONFIG)
    with pytest.raises(ValueError):
        identifiers_for_variant("nope", ["a"], [0], [[0]])


def test_semantic_ids_frame_types():
    frame, _, _ = build_identifiers(["a", "b"], [0, 0], [[1], [1]])
    assert frame["coarse"].dtype == np.int64 and frame["unique"].dtype == np.int64
    assert isinstance(frame["fine"].dtype, pd.ArrowDtype) and isinstance(
        frame["tokens"].dtype, pd.ArrowDtype
    )


# ---------------------------------------------------------------- adding items to an index


def _index_of(ids, x):
    """A trained `cart` index over (ids, x): its K-Means, RQ-VAE, identifiers and vocabulary."""
    km = fit_kmeans(x, default_n_clusters(len(x)), seed=11)
    codes = fine_codes_for_variant("cart", x, km, TINY_RQ_CONFIG, seed=11)
    frame, vocab, _ = identifiers_for_variant(
        "cart", ids, codes.coarse, codes.fine, codes.coarse_size, codes.fine_size
    )
    return km, codes.model, frame, vocab


def test_frozen_codes_reproduce_the_codes_the_index_gave_its_own_items(corpus):
    ids, x = corpus
    km, rqvae, frame, _ = _index_of(ids, x)
    coarse, fine = frozen_codes(x, km.centroids, rqvae)
    again = frame.set_index("item_id").loc[ids]
    assert (coarse == km.assignments).all() and (coarse == again.coarse.to_numpy()).all()
    assert (fine == int_lists_to_matrix(again.fine).reshape(len(ids), -1)).all()


def test_added_items_leave_every_existing_identifier_and_token_id_unchanged(corpus):
    ids, x = corpus
    old = ids < "item0250"  # 250 indexed items, 70 added later
    km, rqvae, frame, vocab = _index_of(ids[old], x[old])
    coarse, fine = frozen_codes(x[~old], km.centroids, rqvae)
    grown, grown_vocab, stats = extend_identifiers(frame, vocab, ids[~old], coarse, fine)

    before = frame.set_index("item_id")
    after = grown.set_index("item_id").loc[before.index]
    assert after[SEMANTIC_ID_COLUMNS[1:]].astype(str).equals(before.astype(str))
    assert grown_vocab.offsets == vocab.offsets  # only the unique range may grow, at the end
    assert grown_vocab.position_sizes[:-1] == vocab.position_sizes[:-1]
    assert stats["n_items"] == len(ids) and grown.item_id.is_monotonic_increasing
    tokens = int_lists_to_matrix(grown.tokens).reshape(len(grown), -1)
    assert len(np.unique(tokens, axis=0)) == len(grown)
    # the new ids sort after the old ones, so u comes out as a rebuild over all items with the
    # same (frozen) codes would number it
    rebuilt, _, _ = build_identifiers(
        grown.item_id, grown.coarse.to_numpy(), int_lists_to_matrix(grown.fine).reshape(len(grown), -1),
        vocab.position_sizes[0], vocab.position_sizes[1:-1],
    )  # fmt: skip
    assert (rebuilt.unique.to_numpy() == grown.unique.to_numpy()).all()


def test_u_continues_after_the_largest_existing_u_of_the_prefix_group():
    frame, vocab, _ = build_identifiers(["a", "b", "c"], [0, 0, 1], [[2], [2], [3]], 2, 4)
    assert frame.unique.tolist() == [0, 1, 0] and vocab.position_sizes == [2, 4, 2]
    grown, grown_vocab, _ = extend_identifiers(
        frame, vocab, ["e", "d", "f"], np.array([0, 0, 1]), np.array([[2], [2], [0]])
    )
    assert grown.set_index("item_id").unique.to_dict() == {
        "a": 0, "b": 1, "c": 0, "d": 2, "e": 3, "f": 0
    }  # fmt: skip
    assert grown_vocab.position_sizes == [2, 4, 4] and grown_vocab.offsets == vocab.offsets


def test_adding_an_existing_id_or_codes_of_another_shape_is_refused():
    frame, vocab, _ = build_identifiers(["a", "b"], [0, 1], [[2], [3]], 2, 4)
    with pytest.raises(ValueError, match="already have identifiers, e.g. 'b'"):
        extend_identifiers(frame, vocab, ["b"], np.array([0]), np.array([[1]]))
    with pytest.raises(ValueError, match="same quantisers"):
        extend_identifiers(frame, vocab, ["c"], np.array([0]), np.array([[1, 1]]))
    with pytest.raises(ValueError, match="outside its position's range"):
        extend_identifiers(frame, vocab, ["c"], np.array([5]), np.array([[1]]))


def test_a_semantic_ids_table_comes_back_from_its_token_ids(corpus):
    ids, x = corpus
    _, _, frame, vocab = _index_of(ids, x)
    tokens = int_lists_to_matrix(frame.tokens).reshape(len(frame), -1)
    order = np.random.default_rng(1).permutation(len(frame))  # any row order
    again = semantic_ids_from_tokens(frame.item_id.to_numpy()[order], tokens[order], vocab)
    assert again.astype(str).equals(frame[SEMANTIC_ID_COLUMNS].astype(str))
