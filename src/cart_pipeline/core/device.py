"""Which torch device a stage runs on: `cpu`, `cuda`, `cuda:N`, `mps` or `auto`."""

from __future__ import annotations

import torch

from cart_pipeline.core.errors import InputError


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(requested: str | None) -> torch.device:
    """The torch device for a `device` setting; an unavailable or unknown one is an InputError
    (never a silent fall-back: results on another device are not the same numbers)."""
    name = str(requested or "cpu").strip().lower()
    if name == "auto":
        return torch.device(
            "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
        )
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device={name}: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                "use device=cpu, or device=auto to take a GPU only when there is one"
            )
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise InputError(
                f"device={name}: torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise InputError(
                "device=mps: the Apple MPS backend is not available here; use device=cpu"
            )
        return torch.device("mps")
    raise InputError(f"device={requested!r} is not one of auto, cpu, cuda, cuda:N, mps")


def stage_device(group: dict, shared: str | None) -> torch.device:
    """A stage group's own `device` if it sets one, else the shared `device` parameter."""
    return resolve_device(group.get("device") or shared)
