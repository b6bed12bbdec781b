"""Train the CART decoder on human train queries + pseudo-queries of every item."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch

from cart_pipeline.core.decoder import (
    CartDecoder,
    DecoderConfig,
    IdentifierTrie,
    TrainConfig,
    decoder_to_checkpoint,
    train_decoder,
)
from cart_pipeline.core.pairs import index_pairs, training_pairs
from cart_pipeline.core.quantize.ids import Vocabulary
from cart_pipeline.core.seeding import seed_everything
from cart_pipeline.core.tables import int_lists_to_matrix
from cart_pipeline.pipelines.encoders import load_encoder
from cart_pipeline.pipelines.modalities import for_modality
from cart_pipeline.pipelines.tracking import epoch_logger, log_metrics

logger = logging.getLogger(__name__)


def build_training_pairs(queries: pd.DataFrame, pseudo_queries: pd.DataFrame, params: dict[str, Any], seed: int) -> pd.DataFrame:
    """The pairs CART and the dual tower both train on (leak-checked), with the validation slice."""
    return training_pairs(queries, pseudo_queries, float(params["validation_fraction"]), seed)


def train_cart_decoder(
    pairs: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    id_statistics: dict,
    params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
    modality: str,
    seed: int,
) -> tuple[dict, pd.DataFrame]:
    params = for_modality(params, modality)
    seed_everything(seed)
    item_ids = semantic_ids.item_id.to_numpy()
    identifiers = torch.from_numpy(int_lists_to_matrix(semantic_ids.tokens))  # (N, L)
    vocabulary = Vocabulary.from_dict(id_statistics["vocabulary"])
    pairs, rows = index_pairs(pairs, item_ids)
    train, val = ~pairs.is_validation.to_numpy(), pairs.is_validation.to_numpy()

    encoder = load_encoder(text_encoder_spec)
    tune_text_layers = int(params.get("tune_text_layers", 0))
    if tune_text_layers and not hasattr(encoder, "top_layers"):
        raise ValueError(f"tune_text_layers needs a BERT-style text encoder; {encoder.name} has no top_layers()")
    config = DecoderConfig(
        vocab_size=vocabulary.size,
        position_ranges=vocabulary.position_ranges(),
        text_dim=encoder.dim,
        text_layers=encoder.n_layers,
        n_layers=int(params["n_layers"]),
        d_model=int(params["d_model"]),
        n_heads=int(params["n_heads"]),
        dropout=float(params["dropout"]),
        fusion=bool(params["fusion"]),
        tune_text_layers=tune_text_layers,
        text_layer_config=encoder.layer_config() if tune_text_layers else None,
    )
    train_config = TrainConfig(
        epochs=int(params["epochs"]),
        batch_size=int(params["batch_size"]),
        lr=float(params["lr"]),
        weight_decay=float(params["weight_decay"]),
        warmup_ratio=float(params["warmup_ratio"]),
        grad_clip=float(params["grad_clip"]),
        consistency_weight=float(params["consistency_weight"]),
        label_smoothing=float(params["label_smoothing"]),
        patience=int(params["patience"]),
        min_epochs=int(params.get("min_epochs", 5)),
        seed=int(seed),
        val_beam_size=int(params["val_beam_size"]),
        text_lr_scale=float(params.get("text_lr_scale", 0.1)),
    )
    model = CartDecoder(config)
    if tune_text_layers:
        model.load_text_layers(encoder.top_layers(tune_text_layers))
    logger.info(
        "%s: training on %d pairs (%d validation) over %d identifiers of length %d; %.2fM parameters",
        modality, train.sum(), val.sum(), len(item_ids), identifiers.shape[1], sum(p.numel() for p in model.parameters()) / 1e6,
    )
    started = time.perf_counter()
    _, history = train_decoder(
        model,
        pairs.text[train].tolist(),
        rows[train],
        identifiers,
        encoder,
        train_config,
        val_texts=pairs.text[val].tolist(),
        val_items=rows[val],
        trie=IdentifierTrie.from_tokens(identifiers),
        on_epoch=epoch_logger(f"{modality}.decoder."),
    )
    seconds = time.perf_counter() - started
    best = max((h.get("val_r1", -1.0) for h in history), default=-1.0)
    logger.info("%s: decoder trained in %.0f s, best validation R@1 %.3f", modality, seconds, best)
    log_metrics({"train_seconds": seconds, "best_val_r1": best, "epochs_run": len(history)}, prefix=f"{modality}.decoder.")

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
        },
    )
    return checkpoint, pd.DataFrame(history)
