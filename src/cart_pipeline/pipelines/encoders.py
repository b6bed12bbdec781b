"""Encoders shared by the nodes of one Kedro session.

Several stages need the same frozen text encoder (queries, pseudo-queries, decoder training,
evaluation); loading it once per process instead of once per node saves seconds per stage.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import torch

from cart_pipeline.core.encoders import build_encoder


@cache
def _cached(name: str, kwargs_json: str) -> Any:
    return build_encoder(name, **json.loads(kwargs_json))


def load_encoder(spec: dict[str, Any], device: torch.device | None = None) -> Any:
    """`{name: ..., **kwargs}` from the parameters -> a (cached) encoder instance, on `device`
    unless the spec names its own (on the CPU the spec is left as is: one shared instance)."""
    spec = dict(spec)
    if device is not None and device.type != "cpu":
        spec.setdefault("device", str(device))
    name = spec.pop("name")
    return _cached(name, json.dumps(spec, sort_keys=True))
