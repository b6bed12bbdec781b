"""CART decoder: model shapes/masking, fusion, consistency loss, trie, beam search, training, checkpoints."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cart_pipeline.core.decoder import (
    CartDecoder,
    DecoderConfig,
    IdentifierTrie,
    PackedTextStates,
    TrainConfig,
    consistency_loss,
    constrained_beam_search,
    decoder_from_checkpoint,
    decoder_to_checkpoint,
    evaluate_recall,
    extend_decoder_checkpoint,
    score_all_identifiers,
    train_decoder,
)
from cart_pipeline.core.decoder.train import batch_memory, length_bucketed_batches

S, H, T = 3, 16, 7  # tiny text side: 3 layers of width 16, 7 tokens


pytestmark = pytest.mark.usefixtures("single_thread")


def semantic_ids(
    n: int, sizes=(3, 2, 2, 2), seed: int = 0
) -> tuple[torch.Tensor, list[tuple[int, int]], int]:
    """(k, v1, v2, v3, u) identifiers in global token ids; few codes so collisions are common."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, s, (n,), generator=g) for s in sizes], 1)
    seen: dict[tuple, int] = {}
    u = []
    for c in map(tuple, codes.tolist()):  # unique token: a counter per colliding code tuple
        u.append(seen.get(c, 0))
        seen[c] = u[-1] + 1
    u = torch.tensor(u)
    sizes = (*sizes, int(u.max()) + 1)
    starts = [2 + sum(sizes[:i]) for i in range(len(sizes))]
    ranges = [(s, s + z) for s, z in zip(starts, sizes, strict=True)]
    ids = torch.cat([codes, u[:, None]], 1) + torch.tensor(starts)
    return ids, ranges, starts[-1] + sizes[-1]


def tiny_model(ranges, vocab, fusion=True, dropout=0.0, seed=0, **kw) -> CartDecoder:
    torch.manual_seed(seed)
    cfg = DecoderConfig(
        vocab_size=vocab,
        position_ranges=ranges,
        text_dim=H,
        text_layers=S,
        n_layers=2,
        d_model=32,
        n_heads=2,
        dropout=dropout,
        fusion=fusion,
        **kw,
    )
    return CartDecoder(cfg)


def text_states(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None] < torch.randint(2, T + 1, (b, 1), generator=g)  # ragged lengths
    return torch.randn(b, S, T, H, generator=g), mask


def children_by_prefix(ids: torch.Tensor) -> dict[tuple, set]:
    out: dict[tuple, set] = {}
    for row in ids.tolist():
        for d in range(len(row)):
            out.setdefault(tuple(row[:d]), set()).add(row[d])
    return out


# -- model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", [True, False])
def test_logits_shape_and_position_mask(fusion):
    ids, ranges, vocab = semantic_ids(30)
    model = tiny_model(ranges, vocab, fusion=fusion).eval()
    with torch.no_grad():  # make PAD the unmasked favourite, so the mask has to do the work
        model.tok_emb.weight[0] = 5 * model.ln_f.weight.sign()
    layers, mask = text_states(4)
    logits = model(layers, mask, ids[:4])
    assert logits.shape == (4, 5, vocab)
    for i, (a, b) in enumerate(ranges):
        assert torch.isfinite(logits[:, i, a:b]).all()
        assert torch.isneginf(logits[:, i, :a]).all() and torch.isneginf(logits[:, i, b:]).all()
        assert ((logits[:, i].argmax(-1) >= a) & (logits[:, i].argmax(-1) < b)).all()


def test_fusion_uses_all_layers_and_ablation_only_the_last():
    ids, ranges, vocab = semantic_ids(10)
    layers, mask = text_states(3)
    changed = layers.clone()
    changed[:, :-1] += torch.randn_like(changed[:, :-1])  # perturb E_1..E_{S-1}, keep E_S
    for fusion in (True, False):
        model = tiny_model(ranges, vocab, fusion=fusion).eval()
        same = torch.allclose(model(layers, mask, ids[:3]), model(changed, mask, ids[:3]))
        assert same != fusion


def test_fine_branch_equals_weighted_sum_of_per_layer_attentions():
    """The fused, memory-unprojected fine branch == Σ_s w_s·CrossAttn(Y, P_s E_s) done plainly."""
    ids, ranges, vocab = semantic_ids(10)
    model = tiny_model(ranges, vocab).eval()
    fusion = model.layers[0].cross
    with torch.no_grad():
        fusion.alpha.copy_(torch.randn(S))
        fusion.fine.kv.bias.normal_()  # biases matter: b_k must cancel, b_v must come through
        fusion.fine.q.bias.normal_()
        layers, mask = text_states(3)
        e = model.encode_memory(layers, mask).shared["e"]  # (B, T, S, d)
        # P_s E_s + b_s at the real tokens
        ref_e = torch.einsum("bsth,shd->btsd", layers, model.fine_in_w) + model.fine_in_b
        torch.testing.assert_close(e[mask], ref_e[mask], atol=1e-5, rtol=1e-5)
        x = torch.randn(3, 4, 32)
        got = fusion.fine_attention(x, e, mask)  # (B, Q, d), before W_o
        k, v = fusion.fine.kv(e).chunk(2, dim=-1)  # every memory vector projected: (B, T, S, d)
        k, v = (t.unflatten(-1, (2, -1)).permute(0, 2, 3, 1, 4) for t in (k, v))  # (B,S,nh,T,hd)
        q = fusion.fine.q(x).unflatten(-1, (2, -1)).transpose(1, 2)  # (B, nh, Q, hd)
        w = torch.softmax(fusion.alpha, 0)
        want = sum(
            w[s]
            * F.scaled_dot_product_attention(q, k[:, s], v[:, s], attn_mask=mask[:, None, None])
            for s in range(S)
        )
    torch.testing.assert_close(got, want.transpose(1, 2).flatten(2), atol=1e-5, rtol=1e-5)


def test_a_bf16_fine_branch_is_for_inference_only_and_close_to_float32():
    ids, ranges, vocab = semantic_ids(10)
    model = tiny_model(ranges, vocab)
    layers, mask = text_states(3)
    with torch.no_grad():
        want = model.eval()(layers, mask, ids[:3])
        for layer in model.layers:
            layer.cross.fine_dtype = torch.bfloat16
        assert model.encode_memory(layers, mask).shared["e"].dtype == torch.bfloat16  # cast once
        got = model(layers, mask, ids[:3])
        model.train()
        assert model.encode_memory(layers, mask).shared["e"].dtype == torch.float32
    assert got.dtype == torch.float32
    finite = torch.isfinite(want)
    assert torch.equal(finite, torch.isfinite(got))  # the same position masks
    assert not torch.equal(got[finite], want[finite])  # it did run in bf16 ...
    torch.testing.assert_close(got[finite], want[finite], atol=0.05, rtol=0.02)  # ... closely


@pytest.mark.parametrize("fusion", [True, False])
def test_padding_and_beam_folding_do_not_change_logits(fusion):
    """Extra padding columns, and several targets folded as beams (the R-Drop passes), give the
    same logits as one query at a time with its exact length."""
    ids, ranges, vocab = semantic_ids(10)
    model = tiny_model(ranges, vocab, fusion=fusion).eval()
    layers, mask = text_states(3)
    padded = torch.cat([layers, torch.randn(3, S, 4, H)], 2)  # garbage in the padding
    padded_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], 1)
    targets = torch.stack([ids[:3], ids[3:6]], 1)  # (B, 2, L)
    with torch.no_grad():
        folded = model.logits_for(model.encode_memory(padded, padded_mask), targets)
        for b in range(3):
            n = int(mask[b].sum())
            for j in range(2):
                one = model(layers[b : b + 1, :, :n], mask[b : b + 1, :n], targets[b : b + 1, j])
                torch.testing.assert_close(folded[b, j], one[0], atol=1e-5, rtol=1e-5)


def test_consistency_loss_zero_without_dropout_positive_with():
    ids, ranges, vocab = semantic_ids(20)
    layers, mask = text_states(8)
    for dropout, positive in ((0.0, False), (0.3, True)):
        model = tiny_model(ranges, vocab, dropout=dropout).train()
        a, b = model(layers, mask, ids[:8]), model(layers, mask, ids[:8])
        kl = consistency_loss(a, b, model.allowed)
        assert torch.isfinite(kl)
        assert (kl > 0) if positive else (kl == 0)
        assert torch.allclose(kl, consistency_loss(b, a, model.allowed))  # symmetric
        kl.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# -- trie -------------------------------------------------------------------------------------
def check_trie(ids: torch.Tensor, vocab: int) -> IdentifierTrie:
    trie = IdentifierTrie.from_tokens(ids)
    kids = children_by_prefix(ids)
    assert trie.n_nodes == len(kids) + len(ids)  # one node per distinct prefix incl. leaves
    nodes = torch.zeros(len(ids), dtype=torch.long)
    for d in range(ids.shape[1]):  # walk every identifier, all at once
        mask = trie.allowed_mask(nodes, vocab)
        for row, m in zip(ids.tolist(), mask, strict=True):
            assert set(m.nonzero().squeeze(1).tolist()) == kids[tuple(row[:d])]
        assert (trie.leaf_items(nodes) == -1).all()
        nodes = trie.step(nodes, ids[:, d])
        assert (nodes > 0).all()
    assert torch.equal(trie.leaf_items(nodes), torch.arange(len(ids)))
    assert trie.contains(ids).all()
    # tokens that are not children, and dead beams, lead nowhere
    bad = torch.tensor([vocab + 3, 0 if 0 not in kids[()] else max(kids[()]) + 1])
    assert (trie.step(torch.zeros(2, dtype=torch.long), bad) == -1).all()
    dead = torch.full((2,), -1)
    assert (trie.step(dead, ids[:2, 0]) == -1).all() and not trie.allowed_mask(dead, vocab).any()
    return trie


def test_trie_semantic_ids_with_collisions_resolved_by_u():
    ids, _, vocab = semantic_ids(200)
    assert (ids[:, -1] > ids[:, -1].min()).any()  # collisions exist
    trie = check_trie(ids, vocab)
    win = trie.allowed_mask(torch.zeros(1, dtype=torch.long), vocab, window=(3, 5))  # sliced view
    assert win.shape == (1, 2) and win.tolist() == [[True, True]]


def test_trie_atomic_ids():
    ids = torch.randperm(50)[:, None] + 2  # L = 1: the root has one child per item
    trie = check_trie(ids, 52)
    assert (
        trie.n_nodes == 51
        and trie.allowed_mask(torch.zeros(3, dtype=torch.long), 52).sum(1).eq(50).all()
    )


def test_trie_hierarchical_ids_padded_with_zeros():
    ids = torch.tensor(
        [[3, 5, 0, 0], [3, 5, 7, 0], [3, 5, 7, 8], [3, 6, 0, 0], [4, 0, 0, 0], [4, 9, 9, 9]]
    )
    check_trie(ids, 10)
    with pytest.raises(ValueError, match="duplicate"):
        IdentifierTrie.from_tokens(torch.cat([ids, ids[:1]]))


def test_trie_large_is_compact():
    n = 200_000
    g = np.random.default_rng(0)
    ids = np.concatenate([g.integers(0, 256, (n, 4)), np.arange(n)[:, None] % 7], 1)
    ids = np.unique(ids, axis=0)
    trie = IdentifierTrie.from_tokens(ids)
    assert trie.nbytes() < 24 * trie.n_nodes + 8 * len(ids)
    sample = torch.from_numpy(ids[::997])
    assert trie.contains(sample).all()
    assert torch.equal(trie.leaf_items(_walk(trie, sample)), torch.arange(0, len(ids), 997))


def _walk(trie, ids):
    nodes = torch.zeros(len(ids), dtype=torch.long)
    for d in range(ids.shape[1]):
        nodes = trie.step(nodes, ids[:, d])
    return nodes


# -- beam search ------------------------------------------------------------------------------
@pytest.mark.parametrize("kv", [True, False])
def test_beam_search_valid_sorted_and_exact(kv):
    ids, ranges, vocab = semantic_ids(40)
    model = tiny_model(ranges, vocab)
    layers, mask = text_states(5)
    trie = IdentifierTrie.from_tokens(ids)
    valid = set(range(len(ids)))
    for beam in (1, 3, 8):
        items, scores = constrained_beam_search(model, layers, mask, trie, beam, 8, use_kv_cache=kv)
        assert items.shape == (5, 8) and scores.shape == (5, 8)
        got = items[items >= 0]
        assert set(got.tolist()) <= valid and got.numel() == 5 * beam
        assert (scores[:, :-1] >= scores[:, 1:]).all()
        assert ((items == -1) == torch.isneginf(scores)).all()
    # beam ≥ corpus: exactly the brute-force ranking by teacher-forced sequence log-prob
    items, scores = constrained_beam_search(model, layers, mask, trie, 64, 50, use_kv_cache=kv)
    exact = score_all_identifiers(model, layers, mask, ids)  # (B, N)
    ref_scores, ref_items = exact.sort(1, descending=True)
    assert torch.equal(items[:, :40], ref_items)
    torch.testing.assert_close(scores[:, :40], ref_scores, atol=1e-5, rtol=1e-5)
    assert (items[:, 40:] == -1).all() and torch.isneginf(scores[:, 40:]).all()  # padding


def test_beam_search_atomic_and_padded_hierarchical_ids():
    layers, mask = text_states(3)
    atomic = torch.arange(2, 14)[:, None]
    model = tiny_model([(2, 14)], 14)
    items, scores = constrained_beam_search(
        model, layers, mask, IdentifierTrie.from_tokens(atomic), 20, 12
    )
    ref_scores, ref_items = score_all_identifiers(model, layers, mask, atomic).sort(
        1, descending=True
    )
    assert torch.equal(items, ref_items)
    # hierarchical K-Means style: variable depth padded with PAD=0, which the decoder may emit
    hier = torch.tensor([[2, 4, 0], [2, 4, 6], [2, 5, 7], [3, 0, 0], [3, 4, 6]])
    model = tiny_model([(2, 4), (4, 6), (6, 8)], 8, pad_token=0)
    trie = IdentifierTrie.from_tokens(hier)
    items, scores = constrained_beam_search(model, layers, mask, trie, 10, 5)
    ref_scores, ref_items = score_all_identifiers(model, layers, mask, hier).sort(
        1, descending=True
    )
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores)


# -- checkpoint -------------------------------------------------------------------------------
def test_checkpoint_roundtrip_weights_only():
    ids, ranges, vocab = semantic_ids(30)
    model = tiny_model(ranges, vocab, dropout=0.1).eval()
    extra = {
        "vocabulary": {"position_ranges": [list(r) for r in ranges], "size": vocab},
        "item_ids": [f"img{i}" for i in range(30)],
        "identifiers": ids,
        "val_r1": 0.5,
    }
    buf = io.BytesIO()
    torch.save(decoder_to_checkpoint(model, extra), buf)
    buf.seek(0)
    loaded, extra2 = decoder_from_checkpoint(torch.load(buf, weights_only=True))
    layers, mask = text_states(4)
    assert torch.equal(model(layers, mask, ids[:4]), loaded(layers, mask, ids[:4]))
    assert extra2["item_ids"] == extra["item_ids"] and torch.equal(extra2["identifiers"], ids)
    assert loaded.head.weight is loaded.tok_emb.weight  # tying survives
    with pytest.raises(TypeError):
        decoder_to_checkpoint(model, {"bad": np.zeros(3)})


def test_an_extended_checkpoint_keeps_every_trained_token_and_reaches_the_new_items():
    from cart_pipeline.core.quantize import build_identifiers, extend_identifiers
    from cart_pipeline.core.tables import int_lists_to_matrix

    g = np.random.default_rng(0)
    coarse, fine = g.integers(0, 3, 36), g.integers(0, 2, (36, 2))  # many collisions
    ids = [f"img{i:02d}" for i in range(36)]
    frame, vocab, _ = build_identifiers(ids[:30], coarse[:30], fine[:30], 3, 2)
    model = tiny_model(vocab.position_ranges(), vocab.size).eval()
    old_tokens = torch.as_tensor(int_lists_to_matrix(frame.tokens).reshape(30, -1))
    extra = {"item_ids": frame.item_id.tolist(), "identifiers": old_tokens.tolist(),
             "vocabulary": vocab.to_dict()}  # fmt: skip
    grown, grown_vocab, _ = extend_identifiers(frame, vocab, ids[30:], coarse[30:], fine[30:])
    tokens = torch.as_tensor(int_lists_to_matrix(grown.tokens).reshape(36, -1))
    buf = io.BytesIO()
    torch.save(
        extend_decoder_checkpoint(
            decoder_to_checkpoint(model, extra), grown_vocab.to_dict(), tokens.tolist(),
            grown.item_id.tolist(),
        ),
        buf,
    )  # fmt: skip
    buf.seek(0)
    loaded, loaded_extra = decoder_from_checkpoint(torch.load(buf, weights_only=True))
    assert grown_vocab.size > vocab.size and loaded.cfg.vocab_size == grown_vocab.size
    assert torch.equal(loaded.tok_emb.weight[: vocab.size], model.tok_emb.weight)
    assert loaded.head.weight is loaded.tok_emb.weight
    assert loaded_extra["item_ids"] == grown.item_id.tolist()

    layers, mask = text_states(4)
    before = model(layers, mask, old_tokens[:4])[:, :-1]  # (B, L, V): every position but u's
    after = loaded(layers, mask, old_tokens[:4])[:, :-1, : vocab.size]
    torch.testing.assert_close(after, before)  # the coarse and fine tokens: as trained
    # beam ≥ corpus: every item, new ones included, in the exact order of its sequence score
    trie = IdentifierTrie.from_tokens(tokens)
    items, scores = constrained_beam_search(loaded, layers, mask, trie, 64, 36)
    assert sorted(items[0].tolist()) == list(range(36))
    ref_scores, ref_items = score_all_identifiers(loaded, layers, mask, tokens).sort(
        1, descending=True
    )
    torch.testing.assert_close(scores, ref_scores, atol=1e-5, rtol=1e-5)


def test_an_extension_that_moves_a_trained_token_is_refused():
    ids, ranges, vocab = semantic_ids(10)
    checkpoint = decoder_to_checkpoint(tiny_model(ranges, vocab), {})
    moved = {"offsets": [a + 1 for a, _ in ranges], "position_sizes": [b - a for a, b in ranges]}
    with pytest.raises(ValueError, match="do not extend"):
        extend_decoder_checkpoint(checkpoint, moved, ids.tolist(), [str(i) for i in range(10)])


# -- training batches ------------------------------------------------------------------------
def test_length_bucketed_batches_cover_every_pair_once_with_less_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 12, (1000,), generator=g)
    lengths[::40] = 45  # a few long texts, as in real queries

    def epoch(gen, pool=8):
        return length_bucketed_batches(lengths, 32, gen, pool_batches=pool)

    def padded_tokens(batches):
        return sum(len(b) * int(lengths[b].max()) for b in batches)

    first = epoch(torch.Generator().manual_seed(1))
    assert sorted(torch.cat(first).tolist()) == list(range(1000))
    assert len(first) == 32 and all(len(b) <= 32 for b in first)  # ceil(1000 / 32) batches
    assert all(  # same seed, same epoch
        torch.equal(a, b)
        for a, b in zip(first, epoch(torch.Generator().manual_seed(1)), strict=True)
    )
    gen = torch.Generator().manual_seed(1)
    e1, e2 = epoch(gen), epoch(gen)  # the next epoch is batched differently
    assert {tuple(sorted(b.tolist())) for b in e1} != {tuple(sorted(b.tolist())) for b in e2}
    random_batches = epoch(torch.Generator().manual_seed(1), pool=1)
    assert sorted(torch.cat(random_batches).tolist()) == list(range(1000))
    assert padded_tokens(first) < 0.6 * padded_tokens(random_batches)


# -- training with the real text encoder ------------------------------------------------------
TEXTS = [
    "A brown hen.",
    "A red apple.",
    "A blue bicycle.",
    "A sleeping cat.",
    "A barking dog.",
    "A yellow school bus.",
    "A green frog on a leaf.",
    "A wooden guitar.",
    "A snowy mountain.",
    "A slice of pizza.",
    "A pink flamingo.",
    "A steam train.",
    "A white sailboat.",
    "A glass of milk.",
    "A bunch of bananas.",
    "A black umbrella.",
    "A small cactus.",
    "A hot air balloon.",
    "A lighthouse at night.",
    "A pair of scissors.",
]


@pytest.fixture(scope="session")
def text_encoder():
    from cart_pipeline.core.encoders.text import MiniLMTextEncoder

    return MiniLMTextEncoder(max_length=16)


def test_packed_text_states_match_encoder(text_encoder):
    states = PackedTextStates(TEXTS[:5], text_encoder, batch_size=2)
    layers, mask = states.batch(torch.tensor([3, 0, 4]))
    ref, ref_mask = text_encoder.encode_layers([TEXTS[3], TEXTS[0], TEXTS[4]])
    assert torch.equal(mask, ref_mask)
    m = mask[:, None, :, None]
    torch.testing.assert_close(layers * m, ref * m, atol=2e-2, rtol=1e-2)  # float16 storage


def test_batch_memory_encodes_repeated_texts_once(text_encoder):
    states = PackedTextStates(TEXTS[:6], text_encoder)
    idx = torch.tensor([4, 1, 4, 0, 1, 5])  # repeats, unsorted
    ranges = [(2, 4), (4, 6)]
    model = CartDecoder(
        DecoderConfig(vocab_size=6, position_ranges=ranges, n_layers=2, d_model=32, n_heads=2)
    ).eval()
    targets = torch.tensor([[2, 4], [3, 5], [2, 5], [3, 4], [2, 4], [3, 5]])[:, None]
    for rows in (idx, idx[[5, 3, 1]]):  # with repeats; all distinct (order must be kept)
        with torch.no_grad():
            got = model.logits_for(batch_memory(model, states, rows), targets[: len(rows)])
            mem = model.encode_memory(*states.batch(rows))
            want = model.logits_for(mem, targets[: len(rows)])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_training_overfits_twenty_pairs(text_encoder):
    ids, ranges, vocab = semantic_ids(len(TEXTS), seed=1)
    torch.manual_seed(0)
    model = CartDecoder(
        DecoderConfig(
            vocab_size=vocab, position_ranges=ranges, n_layers=2, d_model=64, n_heads=2, dropout=0.1
        )
    )
    cfg = TrainConfig(
        epochs=60,
        batch_size=10,
        lr=3e-3,
        warmup_ratio=0.05,
        consistency_weight=1.0,
        patience=3,
        eval_every=10,
        seed=0,
        progress=False,
    )
    seen = []
    items = list(range(len(TEXTS)))
    best, history = train_decoder(
        model,
        TEXTS,
        items,
        ids,
        text_encoder,
        cfg,
        val_texts=TEXTS,
        val_items=items,
        on_epoch=lambda e, m: seen.append(e),
    )
    assert seen == [h["epoch"] for h in history]
    assert {"epoch", "loss", "ce", "kl", "val_r1", "val_r10", "seconds"} <= set(history[-1])
    assert history[-1]["loss"] < history[0]["loss"] and history[0]["kl"] > 0
    assert max(h.get("val_r1", 0) for h in history) == 1.0
    states = PackedTextStates(TEXTS, text_encoder)
    trie = IdentifierTrie.from_tokens(ids)
    assert (
        evaluate_recall(model, states, torch.tensor(items), trie, beam_size=5)["r1"] == 1.0
    )  # best kept


def test_training_without_consistency_is_single_pass(text_encoder):
    ids, ranges, vocab = semantic_ids(4, seed=2)
    model = CartDecoder(
        DecoderConfig(vocab_size=vocab, position_ranges=ranges, n_layers=1, d_model=32, n_heads=2)
    )
    cfg = TrainConfig(epochs=2, batch_size=4, consistency_weight=0.0, progress=False)
    _, history = train_decoder(model, TEXTS[:4], [0, 1, 2, 3], ids, text_encoder, cfg)
    assert len(history) == 2 and all(h["kl"] == 0 for h in history) and "val_r1" not in history[0]


def test_beam_search_exhaustive_small_grid():
    """Every (beam, top_k) combination on a corpus where some prefixes have a single child."""
    ids = torch.tensor([[2, 4], [2, 5], [3, 4]])
    model = tiny_model([(2, 4), (4, 6)], 6)
    layers, mask = text_states(2)
    trie = IdentifierTrie.from_tokens(ids)
    exact = score_all_identifiers(model, layers, mask, ids).sort(1, descending=True)
    for beam, k in itertools.product((1, 2, 3, 5), (1, 3, 4)):
        items, scores = constrained_beam_search(model, layers, mask, trie, beam, k)
        n = min(beam, 3, k)
        assert (items[:, :n] >= 0).all() and (items[:, n:] == -1).all()
        if beam >= 3:
            assert torch.equal(items[:, :n], exact.indices[:, :n])


# -- soft targets --------------------------------------------------
def test_prefix_soft_targets_factorise_an_item_distribution_along_the_trie():
    from cart_pipeline.core.decoder.targets import prefix_soft_targets

    ids = torch.tensor([[2, 4, 6], [2, 4, 7], [2, 5, 6], [3, 4, 6]])  # items 0..3
    candidates = torch.tensor([[0, 1, 2, 3], [3, -1, -1, -1]])
    probs = torch.tensor([[0.4, 0.2, 0.3, 0.1], [1.0, 0.0, 0.0, 0.0]])
    out = prefix_soft_targets(ids, torch.tensor([0, 0]), candidates, probs, vocab_size=8)
    assert out.shape == (2, 3, 8)
    # position 0: all candidates; position 1: those with token 2 first; position 2: prefix (2, 4)
    torch.testing.assert_close(out[0, 0, 2:4], torch.tensor([0.9, 0.1]))
    torch.testing.assert_close(out[0, 1, 4:6], torch.tensor([0.6, 0.3]) / 0.9)
    torch.testing.assert_close(out[0, 2, 6:8], torch.tensor([0.4, 0.2]) / 0.6)
    # no candidate on the target's path: the target's own token
    assert out[1, 0, 3] == 1.0 and out[1, 1, 4] == 1.0 and out[1, 2, 6] == 1.0
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 3))


def test_one_hot_soft_targets_train_as_plain_targets(text_encoder):
    ids, ranges, vocab = semantic_ids(8, seed=3)
    items = list(range(8))
    own = (torch.arange(8)[:, None], torch.ones(8, 1))  # each pair's own item, probability 1

    def run(**kw):
        torch.manual_seed(0)
        model = CartDecoder(
            DecoderConfig(
                vocab_size=vocab,
                position_ranges=ranges,
                n_layers=1,
                d_model=32,
                n_heads=2,
                **kw.pop("model", {}),
            )
        )
        cfg = TrainConfig(epochs=2, batch_size=4, seed=0, progress=False, **kw.pop("train", {}))
        return train_decoder(model, TEXTS[:8], items, ids, text_encoder, cfg, **kw)[1]

    plain = run()
    mixed = run(train={"soft_target_weight": 0.5}, soft_targets=own)
    assert [h["loss"] for h in mixed] == pytest.approx([h["loss"] for h in plain], rel=1e-5)
    with pytest.raises(ValueError, match="soft targets for 3 pairs"):
        run(train={"soft_target_weight": 0.5}, soft_targets=(own[0][:3], own[1][:3]))


def test_target_summary_measures_the_mass_left_on_each_pairs_own_item():
    from cart_pipeline.core.decoder.targets import target_summary

    items = torch.tensor([[0, 1, -1], [3, 2, 1]])
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    # pair 0's item holds 0.5; pair 1's item (5) is not among the candidates: 0
    summary = target_summary(items, probs, torch.tensor([0, 5]))
    assert summary["own_item_mass"] == pytest.approx(0.25)
    assert summary["entropy_nats"] == pytest.approx((np.log(2) + 1.5 * np.log(2)) / 2)
    # one-hot targets on the own item: all the mass, no entropy
    one_hot = target_summary(torch.tensor([[4], [7]]), torch.ones(2, 1), torch.tensor([4, 7]))
    assert one_hot == {"own_item_mass": 1.0, "entropy_nats": pytest.approx(0.0)}


def test_mixed_precision_training_runs_and_an_unknown_precision_is_refused(text_encoder):
    # bf16 autocast is meant for GPUs; torch runs it on the CPU too, which is what CI can test
    ids, ranges, vocab = semantic_ids(8, seed=3)
    config = DecoderConfig(
        vocab_size=vocab, position_ranges=ranges, n_layers=1, d_model=32, n_heads=2
    )
    items = list(range(8))
    for precision in ("bf16", "fp16"):
        torch.manual_seed(0)
        cfg = TrainConfig(
            epochs=4, batch_size=4, lr=3e-3, seed=0, progress=False, autocast=precision
        )
        _, history = train_decoder(CartDecoder(config), TEXTS[:8], items, ids, text_encoder, cfg)
        losses = [h["loss"] for h in history]
        assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], (precision, losses)
    with pytest.raises(
        ValueError, match="decoder_training.autocast must be one of None, 'bf16', 'fp16'"
    ):
        TrainConfig(epochs=1, progress=False, autocast="int4")
