"""Train the CART decoder on human train queries + pseudo-queries of every item."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from cart_pipeline.core.config import from_params
from cart_pipeline.core.decoder import (
    CartDecoder,
    DecoderConfig,
    IdentifierTrie,
    TrainConfig,
    decoder_to_checkpoint,
    train_decoder,
)
from cart_pipeline.core.decoder.targets import dual_tower_targets, target_summary
from cart_pipeline.core.device import stage_device
from cart_pipeline.core.pairs import index_pairs, text_features_of
from cart_pipeline.core.quantize.ids import Vocabulary
from cart_pipeline.core.retrieval.dual_tower import dual_tower_from_checkpoint
from cart_pipeline.core.seeding import seed_everything
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix
from cart_pipeline.pipelines.encoders import load_encoder
from cart_pipeline.pipelines.modalities import for_modality
from cart_pipeline.pipelines.tracking import epoch_logger, log_metrics

logger = logging.getLogger(__name__)


def train_cart_decoder(
    pairs: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    id_statistics: dict,
    dual_tower: dict,
    query_features: pd.DataFrame,
    pseudo_query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
    modality: str,
    seed: int,
    device: str,
) -> tuple[dict, pd.DataFrame]:
    params = for_modality(params, modality)
    device = stage_device(params, device)
    seed_everything(seed)
    item_ids = semantic_ids.item_id.to_numpy()
    identifiers = torch.from_numpy(int_lists_to_matrix(semantic_ids.tokens))  # (N, L)
    vocabulary = Vocabulary.from_dict(id_statistics["vocabulary"])
    pairs, rows = index_pairs(pairs, item_ids)
    train, val = ~pairs.is_validation.to_numpy(), pairs.is_validation.to_numpy()

    encoder = load_encoder(text_encoder_spec)
    config = from_params(
        DecoderConfig,
        params,
        "decoder_training",
        vocab_size=vocabulary.size,
        position_ranges=vocabulary.position_ranges(),
        text_dim=encoder.layer_dim,
        text_layers=encoder.n_layers,
    )
    train_config = from_params(TrainConfig, params, "decoder_training", seed=int(seed))
    soft = None
    if train_config.soft_target_weight > 0:
        train_pairs = pairs[train]
        soft = soft_item_targets(
            params["soft_targets"],
            train_pairs,
            item_ids,
            dual_tower,
            (query_features, pseudo_query_features),
            candidate_features,
        )
        summary = target_summary(*soft, torch.as_tensor(rows[train]))
        logger.info(
            "%s: soft targets (%s, weight %.2f) hold %.3f of their mass on the pair's own item,"
            " entropy %.2f nats",
            modality,
            params["soft_targets"]["source"],
            train_config.soft_target_weight,
            summary["own_item_mass"],
            summary["entropy_nats"],
        )
        log_metrics(summary, prefix=f"{modality}.decoder.soft_target_")
    model = CartDecoder(config).to(
        device
    )  # training follows the model's device; the checkpoint is saved from the CPU
    logger.info(
        "%s: training on %d pairs (%d validation) over %d identifiers of length %d; %.2fM parameters",
        modality,
        train.sum(),
        val.sum(),
        len(item_ids),
        identifiers.shape[1],
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    started = time.perf_counter()
    train_args = (pairs.text[train].tolist(), rows[train], identifiers)
    validation = {"val_texts": pairs.text[val].tolist(), "val_items": rows[val]}
    nproc = int((params.get("distributed") or {}).get("nproc", 1))
    on_epoch = epoch_logger(f"{modality}.decoder.")
    if nproc > 1:
        # imported here: torchrun runs that module as __main__, which must not be imported first
        from .distributed import train_data_parallel

        _, history = train_data_parallel(
            nproc, model, *train_args, text_encoder_spec, train_config, **validation,
            soft_targets=soft,
        )  # fmt: skip
        for epoch in history:  # MLflow lives in this process: log the replicas' epochs here
            on_epoch(epoch["epoch"], epoch)
    else:
        _, history = train_decoder(
            model, *train_args, encoder, train_config, **validation,
            trie=IdentifierTrie.from_tokens(identifiers), on_epoch=on_epoch, soft_targets=soft,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    selected = max(history, key=lambda h: h.get(f"val_{train_config.select_on}", -1.0))
    logger.info(
        "%s: decoder trained in %.0f s; kept epoch %d (validation MRR@10 %.3f, R@1 %.3f, R@10 %.3f)",
        modality,
        seconds,
        selected["epoch"],
        selected.get("val_mrr10", float("nan")),
        selected.get("val_r1", float("nan")),
        selected.get("val_r10", float("nan")),
    )
    log_metrics(
        {
            "train_seconds": seconds,
            "selected_epoch": selected["epoch"],
            "epochs_run": len(history),
            **{f"selected_{k}": v for k, v in selected.items() if k.startswith("val_")},
        },
        prefix=f"{modality}.decoder.",
    )

    checkpoint = decoder_to_checkpoint(
        model,
        extra={
            "modality": modality,
            "variant": id_statistics.get("variant", "cart"),
            "item_ids": item_ids.tolist(),
            "identifiers": identifiers,
            "vocabulary": vocabulary.to_dict(),
            "text_encoder": dict(text_encoder_spec),
            "train_seconds": seconds,
            "selected_epoch": int(selected["epoch"]),
            "validation": {
                k.removeprefix("val_"): float(v)
                for k, v in selected.items()
                if k.startswith("val_")
            },
        },
    )
    return checkpoint, pd.DataFrame(history)


def soft_item_targets(
    spec: dict[str, Any],
    pairs: pd.DataFrame,
    item_ids: np.ndarray,
    dual_tower: dict,
    text_feature_tables: tuple[pd.DataFrame, ...],
    candidate_features: pd.DataFrame,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, K) candidate items and probabilities per training pair (see core/decoder/targets.py)."""
    if spec["source"] == "dual_tower":
        if sorted(dual_tower["extra"]["item_ids"]) != sorted(item_ids.tolist()):
            raise ValueError(
                "the dual tower and the identifiers index different items; rerun the dual_tower stage"
            )
        features = column_to_matrix(
            candidate_features.set_index("item_id").embedding.loc[item_ids]
        )  # identifier order
        text = text_features_of(pairs.query_id, *text_feature_tables)
        return dual_tower_targets(
            dual_tower_from_checkpoint(dual_tower),
            text,
            features,
            int(spec["top_k"]),
            spec["temperature"],
        )
    raise ValueError(f"unknown soft_targets.source {spec['source']!r}; known: dual_tower")
