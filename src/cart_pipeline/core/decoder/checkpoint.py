"""Decoder checkpoints, in the one convention of ``core/checkpoint.py``."""

from __future__ import annotations

import torch

from cart_pipeline.core.checkpoint import read_checkpoint, to_checkpoint

from .model import CartDecoder, DecoderConfig

FORMAT = "cart-decoder/1"


def decoder_to_checkpoint(model: CartDecoder, extra: dict | None = None) -> dict:
    """Model + metadata (vocabulary dict, item ids, ...) -> dict safe for weights_only loading."""
    return to_checkpoint(FORMAT, model.cfg.to_dict(), model, extra)


def decoder_from_checkpoint(
    checkpoint: dict, map_location: str | torch.device = "cpu"
) -> tuple[CartDecoder, dict]:
    """Inverse of ``decoder_to_checkpoint``: (model in eval mode, extra)."""
    config, state_dict, extra = read_checkpoint(checkpoint, FORMAT)
    model = CartDecoder(DecoderConfig(**config))
    model.load_state_dict(state_dict)
    return model.to(map_location).eval(), extra
