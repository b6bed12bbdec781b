"""Decoder checkpoints as plain dicts of tensors and primitives.

Only tensors, str/int/float/bool/None, lists and dicts go in, so ``torch.load(path,
weights_only=True)`` reads them with no allow-list of globals.
"""

from __future__ import annotations

from typing import Any

import torch

from .model import CartDecoder, DecoderConfig

FORMAT = "cart-decoder/1"


def _check_plain(obj: Any, where: str = "extra") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be str or int")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor))):
        raise TypeError(
            f"{where}: {type(obj).__name__} would need an allow-list under weights_only=True"
        )


def decoder_to_checkpoint(model: CartDecoder, extra: dict | None = None) -> dict:
    """Model + metadata (vocabulary dict, item ids, ...) -> dict safe for weights_only loading."""
    extra = dict(extra or {})
    _check_plain(extra)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": state, "extra": extra}


def decoder_from_checkpoint(
    checkpoint: dict, map_location: str | torch.device = "cpu"
) -> tuple[CartDecoder, dict]:
    """Inverse of ``decoder_to_checkpoint``: (model in eval mode, extra)."""
    if checkpoint.get("format") != FORMAT:
        raise ValueError(f"not a CART decoder checkpoint (format {checkpoint.get('format')!r})")
    model = CartDecoder(DecoderConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval(), checkpoint.get("extra", {})
