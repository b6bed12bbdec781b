"""Grow a trained index by new items without retraining it (`kedro run --pipeline add_items`).

The search index (``core/search_index.py``) is the index's whole state: the decoder with every
item's identifier, the items, the baselines' item stores, the training pairs and the frozen
quantisers. Growing it:

1. codes each new item with the index's *frozen* K-Means centroids and RQ-VAE
   (``ids.frozen_codes``), so it lands in the prefix group of the items it resembles, which
   the decoder already learned to reach; its unique token continues after the group's largest
   (``ids.extend_identifiers``). No existing identifier or token id changes;
2. grows the decoder's vocabulary at its end (``extend_decoder_checkpoint``), and then either
   stops there (``none``: the trie reaches the new items through their shared prefixes),
   fine-tunes briefly on the new items' pairs mixed with a replay sample of the old ones
   (``finetune``, DSI++-style, so that learning the new items does not overwrite the old), or
   (``fit_tokens``) places each new item under the indexed prefix the decoder already reaches
   for its texts, gives it a token of its own and fits only that token's row, the decoder
   frozen (``placed_prefixes``, ``fit_new_tokens``);
3. grows the baselines as well (the dual tower's and the pair lookup's item stores, the
   zero-shot embeddings), or the comparison with them would not be fair.

The result is a new search index; the previous one stays a loadable version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cart_pipeline.core.config import setting
from cart_pipeline.core.errors import InputError
from cart_pipeline.core.quantize.ids import (
    Vocabulary,
    extend_identifiers,
    frozen_codes,
    semantic_ids_from_tokens,
)
from cart_pipeline.core.search_index import PAIR_FIELDS, pairs_to_lists

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DECODER_UPDATES = ("none", "finetune", "fit_tokens")
# below this share of the index's own items re-coded to their stored identifiers, the
# quantisers are not the ones that coded the index (float ties may flip a rare item)
MIN_QUANTISER_AGREEMENT = 0.98


class IndexNotGrowable(InputError):
    """The search index cannot take new items (made before `add_items` existed, or by an
    identifier variant other than ``cart``)."""


@dataclass(frozen=True)
class Finetune:
    """``add_items.finetune``: a short fine-tune on the new items' pairs plus replayed old ones."""

    epochs: int = setting(ge=1)
    lr: float = setting(gt=0)
    batch_size: int = setting(ge=1)
    replay_per_new_pair: float = setting(ge=0)  # old training pairs replayed per new pair


@dataclass(frozen=True)
class FitTokens:
    """``add_items.fit_tokens``: fit the new items' own token rows, the decoder frozen."""

    replay_per_new_pair: float = setting(ge=0)  # other old training pairs per new pair
    l2: float = setting(ge=0)  # pull of each fitted row towards its initialisation
    max_iter: int = setting(ge=1)  # L-BFGS iterations


def growable(bundle: dict) -> None:
    """Raise :class:`IndexNotGrowable` unless ``bundle`` carries what growing it needs."""
    missing = [k for k in ("training_pairs", "quantisers") if not bundle.get(k)]
    if missing or "split" not in bundle["items"]:
        raise IndexNotGrowable(
            f"the {bundle['modality']} search index predates add_items (it has no "
            f"{', '.join(missing) or 'item splits'}): rerun the serving stage "
            "(`kedro run --pipeline serving`) to rewrite it, then add the items"
        )
    variant = bundle["quantisers"]["variant"]
    if variant != "cart" or bundle["quantisers"].get("rqvae") is None:
        raise IndexNotGrowable(
            f"the {bundle['modality']} index has {variant!r} identifiers; add_items codes new "
            "items with the frozen K-Means and RQ-VAE of `cart` identifiers"
        )


def indexed_items(bundle: dict) -> pd.DataFrame:
    """item_id, media_path, description, split of every item of a search index."""
    return pd.DataFrame(bundle["items"])


def indexed_pairs(bundle: dict) -> pd.DataFrame:
    """The index's training pairs (its validation queries flagged ``is_validation``)."""
    return pd.DataFrame(bundle["training_pairs"], columns=list(PAIR_FIELDS))


def indexed_features(bundle: dict) -> pd.Series:
    """item_id -> the item's raw media embedding (what the quantisers and the dual tower read)."""
    part = bundle["baselines"]["dual_tower"]
    return pd.Series(list(part["item_features"].numpy()), index=part["item_ids"])


def semantic_ids_of(bundle: dict) -> tuple[pd.DataFrame, Vocabulary]:
    """The index's ``semantic_ids`` table and vocabulary, read back from its decoder."""
    extra = bundle["decoder"]["extra"]
    vocabulary = Vocabulary.from_dict(extra["vocabulary"])
    return semantic_ids_from_tokens(extra["item_ids"], extra["identifiers"], vocabulary), vocabulary


def quantisers_of(bundle: dict):
    """(centroids (K, D), RQ-VAE) frozen in the index."""
    from cart_pipeline.core.quantize.rqvae import rqvae_from_checkpoint

    part = bundle["quantisers"]
    return part["centroids"].numpy(), rqvae_from_checkpoint(part["rqvae"])


def code_new_items(
    bundle: dict, item_ids: np.ndarray, features: np.ndarray, placed: pd.Series | None = None
) -> tuple[pd.DataFrame, Vocabulary, dict]:
    """Identifiers of every item, old and new (rows sorted by item_id), with the index's frozen
    quantisers; the old rows are the index's own, unchanged. ``features`` (N, D) raw.
    ``placed`` (item_id -> (L-1,) prefix tokens, from ``placed_prefixes``): those items take
    that indexed prefix instead of their frozen code, and every new item a token of its own."""
    semantic_ids, vocabulary = semantic_ids_of(bundle)
    centroids, rqvae = quantisers_of(bundle)
    # the quantisers must be the ones that coded this index: re-code its own items
    old = indexed_features(bundle).loc[semantic_ids.item_id]
    coarse, fine = frozen_codes(np.stack(old.to_numpy()), centroids, rqvae)
    stored = np.column_stack([semantic_ids.coarse, np.stack(semantic_ids.fine.to_numpy())])
    agreement = float((np.column_stack([coarse, fine]) == stored).all(1).mean())
    if agreement < MIN_QUANTISER_AGREEMENT:
        raise IndexNotGrowable(
            f"the index's quantisers give {agreement:.1%} of its own items their identifiers: "
            "they are not the ones that coded it; rebuild the index with `kedro run`"
        )
    coarse, fine = frozen_codes(features, centroids, rqvae)
    if placed is not None:
        ids = np.asarray(item_ids).astype(str)
        has = np.isin(ids, placed.index.astype(str))
        if has.any():
            codes = np.stack(placed.loc[ids[has]].to_numpy()) - np.asarray(vocabulary.offsets[:-1])
            coarse[has], fine[has] = codes[:, 0], codes[:, 1:]
    return extend_identifiers(
        semantic_ids, vocabulary, item_ids, coarse, fine, own_tokens=placed is not None
    )


def replay_sample(old_pairs: pd.DataFrame, n_new: int, per_new: float, seed: int) -> pd.DataFrame:
    """A seeded sample of ``per_new`` old training pairs per new pair (all when fewer)."""
    train = old_pairs[~old_pairs.is_validation]
    n = min(len(train), round(per_new * n_new))
    rows = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    return train.iloc[rows]


def finetune_decoder(
    checkpoint: dict,
    new_pairs: pd.DataFrame,
    old_pairs: pd.DataFrame,
    text_encoder,
    config: Finetune,
    train_config,
    device: str | torch.device = "cpu",
) -> tuple[dict, list[dict]]:
    """The grown decoder (``checkpoint``: from ``extend_decoder_checkpoint``) fine-tuned on the
    new items' training pairs plus a replay sample of the old ones, for ``config.epochs``
    (the last epoch is kept: the index's validation queries are all of old items, so selecting
    on them would favour the epoch that learned the new items least; the schedule itself was
    chosen on them, docs/experiments.md). ``train_config``: the index's TrainConfig, whose schedule
    and batch this replaces; ``device``: where to train. -> (checkpoint, history)."""
    import torch

    from cart_pipeline.core.decoder import (
        decoder_from_checkpoint,
        decoder_to_checkpoint,
        train_decoder,
    )

    model, extra = decoder_from_checkpoint(checkpoint, map_location=device)
    row_of = pd.Series(np.arange(len(extra["item_ids"])), index=extra["item_ids"])
    replay = replay_sample(old_pairs, len(new_pairs), config.replay_per_new_pair,
                           train_config.seed)  # fmt: skip
    train = pd.concat([new_pairs[~new_pairs.is_validation], replay], ignore_index=True)
    identifiers = torch.as_tensor(extra["identifiers"], dtype=torch.long)
    settings = replace(
        train_config, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
        min_epochs=1, patience=None, soft_target_weight=0.0,
    )  # fmt: skip
    logger.info(
        "fine-tuning on %d new and %d replayed pairs for %d epochs",
        len(train) - len(replay), len(replay), config.epochs,
    )  # fmt: skip
    model.train()
    _, history = train_decoder(
        model, train.text.tolist(), np.array(row_of.loc[train.item_id]), identifiers,
        text_encoder, settings,
    )  # fmt: skip
    return decoder_to_checkpoint(model.cpu().eval(), extra=extra), history


def _texts_of(pairs: pd.DataFrame, text_encoder):
    """(distinct texts' frozen encoder states, (P,) each pair's text index)."""
    import torch

    from cart_pipeline.core.decoder import PackedTextStates

    texts, text_idx = np.unique(pairs.text.to_numpy(str), return_inverse=True)
    return PackedTextStates(texts, text_encoder), torch.as_tensor(text_idx.ravel())


def placed_prefixes(
    checkpoint: dict, new_pairs: pd.DataFrame, text_encoder, beam_size: int = 10
) -> pd.Series:
    """item_id -> (L-1,) prefix tokens: the indexed prefix that the decoder of ``checkpoint``
    (the index's, not grown) reaches for the new item's training texts. Each text's top
    ``beam_size`` identifiers vote for their prefix with their probability, summed over the
    item's texts; ties go to the smaller prefix. Items with no training text are absent."""
    import torch

    from cart_pipeline.core.decoder import (
        IdentifierTrie,
        constrained_beam_search,
        decoder_from_checkpoint,
    )
    from cart_pipeline.core.decoder.train import batch_memory

    pairs = new_pairs[~new_pairs.is_validation].reset_index(drop=True)
    if pairs.empty:
        return pd.Series(dtype=object)
    model, extra = decoder_from_checkpoint(checkpoint)
    identifiers = torch.as_tensor(extra["identifiers"], dtype=torch.long)  # (E, L)
    trie = IdentifierTrie.from_tokens(identifiers)
    states, text_idx = _texts_of(pairs, text_encoder)
    found, logp = [], []
    for idx in torch.arange(len(states)).split(128):
        mem = batch_memory(model, states, idx)
        items, scores = constrained_beam_search(
            model, None, None, trie, beam_size, beam_size, memory=mem
        )  # (b, k) each
        found.append(items)
        logp.append(scores)
    found, logp = torch.cat(found)[text_idx].numpy(), torch.cat(logp)[text_idx].numpy()  # (P, k)
    prefixes, group = np.unique(identifiers[:, :-1].numpy(), axis=0, return_inverse=True)
    hit = found >= 0
    votes = pd.DataFrame({
        "item_id": np.repeat(pairs.item_id.to_numpy(), found.shape[1])[hit.ravel()],
        "group": group.ravel()[found[hit]], "weight": np.exp(logp[hit]),
    })  # fmt: skip
    totals = votes.groupby(["item_id", "group"], sort=True).weight.sum().reset_index()
    best = totals.sort_values(["item_id", "weight", "group"], ascending=[True, False, True],
                              kind="stable").drop_duplicates("item_id")  # fmt: skip
    return pd.Series(list(prefixes[best.group.to_numpy()]), index=best.item_id.to_numpy())


def fit_new_tokens(
    checkpoint: dict,
    first_own_token: int,
    new_pairs: pd.DataFrame,
    old_pairs: pd.DataFrame,
    text_encoder,
    config: FitTokens,
    seed: int,
) -> tuple[dict, list[dict]]:
    """The grown decoder (``checkpoint``: from ``extend_decoder_checkpoint``) with the rows of
    the new items' own tokens (ids ``first_own_token`` to the vocabulary's end) fitted, every
    other weight unchanged.

    The decoder is frozen, so the last position's hidden states h (P, d) of the pairs are
    computed once: the new items' training pairs, the old train pairs of every prefix group
    that received a new item (the items the new tokens compete with), and a seeded replay of
    ``config.replay_per_new_pair`` other old pairs per new pair (the last position's softmax
    spans every unique token). The rows then minimise the cross-entropy of h·Wᵀ over the last
    position's range (new-pair and old-pair terms averaged separately), plus ``config.l2``
    times their squared distance from the initialisation, by full-batch L-BFGS: a convex
    problem in the rows, so the result does not depend on batching. -> (checkpoint, history)."""
    import torch
    import torch.nn.functional as F

    from cart_pipeline.core.decoder import decoder_from_checkpoint, decoder_to_checkpoint
    from cart_pipeline.core.decoder.train import batch_memory

    model, extra = decoder_from_checkpoint(checkpoint)
    identifiers = torch.as_tensor(extra["identifiers"], dtype=torch.long)  # (N, L)
    row_of = pd.Series(np.arange(len(extra["item_ids"])), index=extra["item_ids"])
    lo, hi = model.cfg.position_ranges[-1]
    new = new_pairs[~new_pairs.is_validation]
    prefix_key = [tuple(r) for r in identifiers[:, :-1].tolist()]
    receiving = {prefix_key[i] for i in np.flatnonzero(identifiers[:, -1] >= first_own_token)}
    train = old_pairs[~old_pairs.is_validation]
    sibling = np.array([prefix_key[i] in receiving for i in row_of.loc[train.item_id]], bool)
    replay = replay_sample(train[~sibling], len(new), config.replay_per_new_pair, seed)
    pairs = pd.concat([new, train[sibling], replay], ignore_index=True)
    is_new = torch.zeros(len(pairs), dtype=torch.bool)
    is_new[: len(new)] = True
    targets = identifiers[torch.as_tensor(row_of.loc[pairs.item_id].to_numpy(copy=True))]  # (P, L)
    states, text_idx = _texts_of(pairs, text_encoder)
    hidden = []
    with torch.inference_mode():  # h at the last position: the state that picks the unique token
        for rows in torch.arange(len(pairs)).split(256):
            mem = batch_memory(model, states, text_idx[rows])
            inputs = torch.cat([torch.full_like(targets[rows, :1], model.cfg.bos_token),
                                targets[rows, :-1]], dim=1)  # [BOS, t1 .. t_{L-1}]  # fmt: skip
            h, _ = model.decode(inputs[:, None], mem)  # (b, 1, L, d)
            hidden.append(h[:, 0, -1])
    hidden = torch.cat(hidden).clone()  # (P, d), out of inference mode
    weight = model.head.weight.detach().clone()  # (V, d), tied with the input embedding
    fixed = weight[lo:first_own_token]  # (U_old, d)
    init = weight[first_own_token:hi].clone()  # (U_new, d)
    rows = init.clone().requires_grad_(True)
    target = targets[:, -1] - lo  # (P,)
    optimiser = torch.optim.LBFGS([rows], max_iter=config.max_iter, line_search_fn="strong_wolfe")

    def loss_of(new_rows: torch.Tensor) -> torch.Tensor:
        nll = F.cross_entropy(hidden @ torch.cat([fixed, new_rows]).T, target, reduction="none")
        loss = nll[is_new].mean() + config.l2 * (new_rows - init).pow(2).sum(1).mean()
        return loss + nll[~is_new].mean() if (~is_new).any() else loss

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_of(rows)
        loss.backward()
        return loss

    optimiser.step(objective)
    with torch.no_grad():
        top1 = ((hidden @ torch.cat([fixed, rows]).T).argmax(1) == target).float()
        losses = float(loss_of(init)), float(loss_of(rows))
    history = [{"loss_before": losses[0], "loss": losses[1], "pairs_new": int(is_new.sum()),
                "pairs_old": int((~is_new).sum()),
                "new_pairs_top1": float(top1[is_new].mean()) if is_new.any() else 0.0,
                "old_pairs_top1": float(top1[~is_new].mean()) if (~is_new).any() else 0.0}]  # fmt: skip
    logger.info("fitted %d new tokens on %d new and %d old pairs: %s",
                hi - first_own_token, int(is_new.sum()), int((~is_new).sum()), history[0])  # fmt: skip
    weight[first_own_token:hi] = rows.detach()
    model.tok_emb.weight.data.copy_(weight)  # the head shares it
    return decoder_to_checkpoint(model.eval(), extra=extra), history


def grow_search_index(
    bundle: dict,
    decoder: dict,
    new_items: pd.DataFrame,
    new_features: np.ndarray,
    new_pairs: pd.DataFrame,
    new_pair_embeddings: np.ndarray,
    addition: dict,
) -> dict:
    """``bundle`` with the new items in every system: ``decoder`` (the grown checkpoint),
    ``new_items`` (item_id, media_path, description, split), their raw features (N, D), their
    training pairs and those pairs' text embeddings (P, D), and ``addition`` recorded."""
    import torch

    from cart_pipeline.core.retrieval.pair_lookup import PairLookup

    old_ids = list(bundle["items"]["item_id"])
    ids = new_items.item_id.astype(str).tolist()
    items = {k: list(v) + new_items[k].astype(str).tolist() for k, v in bundle["items"].items()}
    features = torch.from_numpy(np.asarray(new_features, dtype=np.float32))
    baselines = {system: dict(part) for system, part in bundle["baselines"].items()}
    tower = baselines["dual_tower"]
    tower["item_ids"] = tower["item_ids"] + ids
    tower["item_features"] = torch.cat([tower["item_features"], features])
    if "zero_shot" in baselines:
        shot = baselines["zero_shot"]
        shot["item_ids"] = shot["item_ids"] + ids
        shot["item_embeddings"] = torch.cat([shot["item_embeddings"], features])
    if "pair_lookup" in baselines:
        lookup = baselines["pair_lookup"]
        row_of = pd.Series(np.arange(len(ids)) + len(lookup["item_ids"]), index=ids)
        train = ~new_pairs.is_validation.to_numpy()
        grown = PairLookup.from_pairs(
            np.asarray(new_pair_embeddings)[train],
            row_of.loc[new_pairs.item_id[train]].to_numpy(),
            len(lookup["item_ids"]) + len(ids),
        )
        lookup["item_ids"] = lookup["item_ids"] + ids
        lookup["text_embeddings"] = torch.cat(
            [lookup["text_embeddings"], torch.from_numpy(grown.text_embeddings)]
        )
        lookup["pair_items"] = torch.cat([lookup["pair_items"], torch.from_numpy(grown.pair_items)])
    added = pairs_to_lists(new_pairs)
    pairs = {name: list(bundle["training_pairs"][name]) + added[name] for name in PAIR_FIELDS}
    logger.info(
        "%s: %d items added to %d (%d training pairs)",
        bundle["modality"], len(ids), len(old_ids), len(new_pairs),
    )  # fmt: skip
    return {
        **bundle,
        "decoder": {k: v for k, v in decoder.items() if k != "saved_version"},
        "items": items,
        "baselines": baselines,
        "training_pairs": pairs,
        "additions": [*bundle.get("additions", []), dict(addition)],
    }
