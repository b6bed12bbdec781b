"""Grow a trained index by new items without retraining it (`kedro run --pipeline add_items`).

The search index (``core/search_index.py``) is the index's whole state: the decoder with every
item's identifier, the items, the baselines' item stores, the training pairs and the frozen
quantisers. Growing it:

1. codes each new item with the index's *frozen* K-Means centroids and RQ-VAE
   (``ids.frozen_codes``), so it lands in the prefix group of the items it resembles, which
   the decoder already learned to reach; its unique token continues after the group's largest
   (``ids.extend_identifiers``). No existing identifier or token id changes;
2. grows the decoder's vocabulary at its end (``extend_decoder_checkpoint``), and then either
   stops there (``none``: the trie reaches the new items through their shared prefixes) or
   fine-tunes briefly on the new items' pairs mixed with a replay sample of the old ones
   (``finetune``, DSI++-style, so that learning the new items does not overwrite the old);
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

DECODER_UPDATES = ("none", "finetune")
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
    bundle: dict, item_ids: np.ndarray, features: np.ndarray
) -> tuple[pd.DataFrame, Vocabulary, dict]:
    """Identifiers of every item, old and new (rows sorted by item_id), with the index's frozen
    quantisers; the old rows are the index's own, unchanged. ``features`` (N, D) raw."""
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
    return extend_identifiers(semantic_ids, vocabulary, item_ids, coarse, fine)


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
