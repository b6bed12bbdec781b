"""One checkpoint convention for every model (RQ-VAE, dual tower, CART decoder).

A checkpoint is a plain dict ``{"format", "config", "state_dict", "extra"}`` holding only
tensors, str/int/float/bool/None, lists and dicts, so ``torch.load(path, weights_only=True)``
reads it with no allow-list of globals, and a file of another kind is refused by its format
tag instead of failing somewhere inside ``load_state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def check_plain(obj: Any, where: str) -> None:
    """Raise TypeError naming the first value ``weights_only`` loading would refuse."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be str or int")
            check_plain(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor))):
        raise TypeError(
            f"{where}: {type(obj).__name__} would need an allow-list under weights_only=True"
        )


def to_checkpoint(
    format_tag: str, config: dict, model: nn.Module, extra: dict | None = None
) -> dict:
    """Model + its config + metadata (item ids, history, ...) -> a checkpoint dict."""
    checkpoint = {
        "format": format_tag,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    check_plain(checkpoint["config"], "config")
    check_plain(checkpoint["extra"], "extra")
    return checkpoint


def read_checkpoint(checkpoint: dict, format_tag: str) -> tuple[dict, dict, dict]:
    """(config, state_dict, extra) of a checkpoint written by ``to_checkpoint(format_tag, ...)``."""
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if found != format_tag:
        raise ValueError(
            f"expected a {format_tag} checkpoint, found format {found!r} "
            "(written by another model or an older version: rerun the stage that trains it)"
        )
    return checkpoint["config"], checkpoint["state_dict"], checkpoint.get("extra", {})
