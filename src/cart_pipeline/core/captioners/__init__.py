"""Captioners: pseudo-queries for every candidate (caption enhancement, docs/architecture.md).

A captioner maps a :class:`CaptionContext` to a table of (item_id, text, source) and a list
of (item_id, reason) for items it could not caption. Register new ones in ``CAPTIONERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from .context import CaptionContext
from .dual_tower_retrieval import dual_tower_retrieval
from .imagenet_labels import imagenet_labels
from .knn_transfer import knn_transfer

Captioner = Callable[..., tuple[pd.DataFrame, list[tuple[str, str]]]]


def _blip(context: CaptionContext, n: int, **kwargs: Any):
    from .blip import blip_captions

    return blip_captions(context, n, **kwargs)


CAPTIONERS: dict[str, Captioner] = {
    "imagenet_labels": imagenet_labels,
    "knn_transfer": knn_transfer,
    "dual_tower_retrieval": dual_tower_retrieval,
    "blip": _blip,  # model_path=... (a local transformers BLIP checkpoint)
}


def get_captioner(name: str) -> Captioner:
    try:
        return CAPTIONERS[name]
    except KeyError:
        raise ValueError(
            f"unknown captioner {name!r}; known captioners: {', '.join(sorted(CAPTIONERS))}"
        ) from None


__all__ = [
    "CAPTIONERS",
    "CaptionContext",
    "dual_tower_retrieval",
    "get_captioner",
    "imagenet_labels",
    "knn_transfer",
]
