"""Thin Kedro adapters over :mod:`cart_pipeline.core.add_items`: new manifest rows in, a grown
search index out. Each step reuses the stage that does it for a full build (ingest's
validation, feature extraction, the captioners and their held-out guard, the pairs)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cart_pipeline.core.add_items import (
    DECODER_UPDATES,
    Finetune,
    code_new_items,
    finetune_decoder,
    grow_search_index,
    growable,
    indexed_features,
    indexed_items,
    indexed_pairs,
)
from cart_pipeline.core.captioners import CaptionContext
from cart_pipeline.core.captioners.pseudo_queries import pseudo_queries
from cart_pipeline.core.config import from_params
from cart_pipeline.core.decoder import TrainConfig
from cart_pipeline.core.decoder.checkpoint import extend_decoder_checkpoint
from cart_pipeline.core.device import stage_device
from cart_pipeline.core.manifest import REJECT_COLUMNS, build_tables, check_rejected_share
from cart_pipeline.core.pairs import item_descriptions, text_features_of
from cart_pipeline.core.seeding import seed_everything
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix
from cart_pipeline.pipelines.captioning.nodes import configured_captioners
from cart_pipeline.pipelines.encoders import load_encoder
from cart_pipeline.pipelines.feature_extraction.encode import encode_candidates
from cart_pipeline.pipelines.feature_extraction.nodes import extract_query_features
from cart_pipeline.pipelines.modalities import for_modality
from cart_pipeline.pipelines.tracking import log_metrics

logger = logging.getLogger(__name__)


def select_new_items(
    manifest: pd.DataFrame,
    valid_manifest: pd.DataFrame,
    search_index: dict,
    params: dict[str, Any],
    modality: str,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """This modality's new rows -> (candidates, human queries, rejects). An item_id the index
    already holds is a rejected row, never an overwrite. A new item is a test item where a full
    build would make it one (the split is a hash of its id or group, ``manifest.split_of``),
    otherwise a train item: the index's validation set stays as it was."""
    rows = valid_manifest[valid_manifest.modality == modality]
    if len(rows):
        growable(search_index)
    indexed = rows.item_id.isin(indexed_items(search_index).item_id)
    row_of = pd.Series(np.arange(1, len(manifest) + 1), index=manifest.item_id.str.strip())
    row_of = row_of[~row_of.index.duplicated()]
    rejects = pd.DataFrame(
        {"row": row_of.loc[rows.item_id[indexed]].to_numpy(), "item_id": rows.item_id[indexed],
         "reason": f"item_id is already in the {modality} index (add_items never overwrites)"},
        columns=REJECT_COLUMNS,
    )  # fmt: skip
    for _, reject in rejects.iterrows():
        logger.warning("new items row %d (%r) rejected: %s", *reject)
    if indexed.all():  # nothing new for this modality
        return (pd.DataFrame(columns=["item_id", "modality", "media_path", "split"]),
                pd.DataFrame(columns=["query_id", "item_id", "text", "split", "source"]),
                rejects)  # fmt: skip
    candidates, queries = build_tables(
        rows[~indexed], seed=int(params["split_seed"]), test_fraction=float(params["test_fraction"])
    )
    logger.info(
        "%s: %d new items (%d test), %d rows already indexed",
        modality, len(candidates), (candidates.split == "test").sum(), indexed.sum(),
    )  # fmt: skip
    return candidates, queries, rejects


def extract_new_features(
    candidates: pd.DataFrame,
    valid_manifest: pd.DataFrame,
    manifest_rejects: pd.DataFrame,
    index_rejects: pd.DataFrame,
    ingest_params: dict[str, Any],
    params: dict[str, Any],
    modality: str,
    dataset_root: str,
    device: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The new items' media embeddings, once the rejected rows (saved by now) are few enough."""
    rejects = pd.concat([manifest_rejects, index_rejects], ignore_index=True)
    check_rejected_share(
        len(valid_manifest) + len(manifest_rejects), rejects,
        float(ingest_params["max_rejected_share"]),
    )  # fmt: skip
    if candidates.empty:  # nothing new for this modality
        no_rows = pd.DataFrame({"item_id": pd.Series([], dtype=str), "embedding": []})
        return no_rows, pd.DataFrame(columns=["item_id", "reason"])
    return encode_candidates(candidates, params, modality, dataset_root, device)


def caption_new_items(
    search_index: dict,
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
    modality: str,
    dataset_root: str,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Pseudo-queries of the new items, by the index's captioners over the whole grown corpus
    (a new item borrows texts from its indexed neighbours), guarded against the new items'
    own held-out queries. The old items keep the pseudo-queries they were trained on."""
    new = candidates.merge(candidate_features[["item_id"]], on="item_id")
    if new.empty:
        return pd.DataFrame(columns=["query_id", "item_id", "text", "split", "source"]), {
            "modality": modality, "items": 0
        }  # fmt: skip
    old = indexed_items(search_index)
    old_pairs = indexed_pairs(search_index)
    old_train = old_pairs[(old_pairs.source == "human") & ~old_pairs.is_validation]
    corpus = pd.concat(
        [old[["item_id", "media_path", "split"]].assign(modality=modality),
         new[["item_id", "media_path", "split", "modality"]]], ignore_index=True,
    )  # fmt: skip
    features = np.concatenate(
        [np.stack(indexed_features(search_index).loc[old.item_id].to_numpy()),
         column_to_matrix(candidate_features.set_index("item_id").embedding.loc[new.item_id])]
    )  # fmt: skip
    train_queries = pd.concat(
        [old_train[["item_id", "text"]].assign(split="train"),
         queries[queries.split == "train"][["item_id", "text", "split"]]], ignore_index=True,
    )  # fmt: skip
    classes = {}
    if "class_top" in candidate_features:
        # the index keeps no class predictions of its items; only the new items' rows are
        # read for their own captions, so the old rows are placeholders
        new_rows = candidate_features.set_index("item_id").loc[new.item_id]
        top = int_lists_to_matrix(new_rows.class_top)
        prob = np.stack(new_rows.class_prob.to_numpy())
        classes = {
            "class_top": np.concatenate([np.zeros((len(old), top.shape[1]), top.dtype), top]),
            "class_prob": np.concatenate([np.zeros((len(old), prob.shape[1]), prob.dtype), prob]),
        }
    context = CaptionContext(
        candidates=corpus, features=features, train_queries=train_queries,
        dataset_root=Path(dataset_root), text_encoder=load_encoder(text_encoder_spec),
        seed=int(seed), **classes,
    )  # fmt: skip
    pseudo, report = pseudo_queries(
        context,
        configured_captioners(params, modality),
        queries,
        params["heldout_query_matches"],
        int(params["spare_captions"]),
    )
    pseudo = pseudo[pseudo.item_id.isin(new.item_id)].reset_index(drop=True)
    covered = pseudo.item_id.nunique()
    report = {
        "modality": modality,
        "items": len(new),
        "items_with_pseudo_queries": int(covered),
        "coverage": covered / len(new),
        "pseudo_queries": len(pseudo),
        "per_source": {k: int(v) for k, v in pseudo.source.value_counts().sort_index().items()},
        "heldout_guard": report["heldout_guard"],
        "not_captioned": [r for r in report["not_captioned"] if r["item_id"] in set(new.item_id)],
    }
    logger.info(
        "%s: %d pseudo-queries for %d of %d new items", modality, len(pseudo), covered, len(new)
    )
    return pseudo, report


def encode_new_pairs(
    training_pairs: pd.DataFrame, params: dict[str, Any], device: str
) -> pd.DataFrame:
    """The new pairs' text embeddings (the pair lookup's new rows), as the build encodes them."""
    if training_pairs.empty:  # nothing new for this modality: no text encoder to load
        return pd.DataFrame({"query_id": pd.Series([], dtype=str), "embedding": []})
    return extract_query_features(training_pairs, params, device)


def add_to_index(
    search_index: dict,
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    candidate_features: pd.DataFrame,
    training_pairs: pd.DataFrame,
    pair_features: pd.DataFrame,
    params: dict[str, Any],
    decoder_params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
    modality: str,
    seed: int,
    device: str,
) -> tuple[dict, dict[str, Any]]:
    """The search index grown by the new items (``core.add_items``), and what was done."""
    started = time.perf_counter()
    update = params["decoder"]
    if update not in DECODER_UPDATES:
        raise ValueError(f"add_items.decoder must be one of {DECODER_UPDATES}, got {update!r}")
    seed_everything(seed)
    features = candidate_features.set_index("item_id")
    new = candidates[candidates.item_id.isin(features.index)].reset_index(drop=True)
    new = new.assign(description=new.item_id.map(item_descriptions(queries)).fillna(""))
    new_features = column_to_matrix(features.embedding.loc[new.item_id]) if len(new) else None
    addition = {"items": len(new), "decoder": update, "pairs": len(training_pairs),
                "base_decoder_version": search_index.get("decoder_version")}  # fmt: skip
    if new.empty:
        logger.warning("%s: no new items to add; the index is unchanged", modality)
        return search_index, {"modality": modality, **addition}
    growable(search_index)

    semantic_ids, vocabulary, stats = code_new_items(search_index, new.item_id, new_features)
    tokens = int_lists_to_matrix(semantic_ids.tokens).reshape(len(semantic_ids), -1)
    decoder = extend_decoder_checkpoint(
        search_index["decoder"], vocabulary.to_dict(), tokens, semantic_ids.item_id.tolist()
    )
    history = []
    if update == "finetune":
        train_config = from_params(
            TrainConfig, for_modality(decoder_params, modality), "decoder_training", seed=int(seed)
        )
        decoder, history = finetune_decoder(
            decoder, training_pairs, indexed_pairs(search_index),
            load_encoder(text_encoder_spec),
            from_params(Finetune, params["finetune"], "add_items.finetune"), train_config,
            stage_device(decoder_params, device),
        )  # fmt: skip
    pair_embeddings = text_features_of(training_pairs.query_id, pair_features)
    grown = grow_search_index(
        search_index, decoder, new[["item_id", "media_path", "description", "split"]],
        new_features, training_pairs, pair_embeddings, addition,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    report = {
        "modality": modality,
        **addition,
        "items_before": len(search_index["items"]["item_id"]),
        "items_after": len(grown["items"]["item_id"]),
        "seconds": seconds,
        "identifiers": {k: stats[k] for k in ("collision_rate", "max_unique", "vocab_size")},
        "finetune_history": history,
    }
    log_metrics(report, prefix=f"{modality}.add_items.")
    logger.info(
        "%s: %d items added (decoder: %s) in %.1f s; the index now holds %d",
        modality, len(new), update, seconds, report["items_after"],
    )  # fmt: skip
    return grown, report
