"""Encoder registry: configuration names -> builders.

Builders import their module when called, so importing this registry stays cheap (no
transformers, no model weights) and optional libraries are only needed by those who use them.

    encoder = build_encoder("efficientnet-lite0")
    video = build_encoder("frame-mean-efficientnet-lite0", image_encoder=encoder, n_frames=8)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _text(**kwargs: Any):
    from cart_pipeline.core.encoders.text import MiniLMTextEncoder

    return MiniLMTextEncoder(**kwargs)


def _image(**kwargs: Any):
    from cart_pipeline.core.encoders.image import EfficientNetLiteImageEncoder

    return EfficientNetLiteImageEncoder(**kwargs)


def _audio(**kwargs: Any):
    from cart_pipeline.core.encoders.audio import AiSfxAudioEncoder

    return AiSfxAudioEncoder(**kwargs)


def _video(image_encoder: Any = None, n_frames: int = 8, **image_kwargs: Any):
    """Reuses ``image_encoder`` when given (one set of weights in memory for both modalities)."""
    from cart_pipeline.core.encoders.video import FrameMeanVideoEncoder

    return FrameMeanVideoEncoder(image_encoder or _image(**image_kwargs), n_frames=n_frames)


def _open_clip(**kwargs: Any):
    from cart_pipeline.core.encoders.optional import OpenClipEncoder

    return OpenClipEncoder(**kwargs)


def _open_clip_text(**kwargs: Any):
    from cart_pipeline.core.encoders.optional import OpenClipTextEncoder

    return OpenClipTextEncoder(**kwargs)


def _clap(**kwargs: Any):
    from cart_pipeline.core.encoders.optional import ClapEncoder

    return ClapEncoder(**kwargs)


ENCODERS: dict[str, Callable[..., Any]] = {
    "all-MiniLM-L6-v2": _text,
    "efficientnet-lite0": _image,
    "aisfx": _audio,
    "frame-mean-efficientnet-lite0": _video,
    "open-clip": _open_clip,  # weights_path=... (a file with model_name=..., or a folder)
    "open-clip-text": _open_clip_text,  # CLIP's text tower as the query encoder: as open-clip
    "clap": _clap,  # model_path=...
}
# Media encoders that also embed text into their own space (`encode_text`): the evaluation
# adds their `zero_shot` search (the aligned encoder's own retrieval) beside CART.
TEXT_ALIGNED = frozenset({"open-clip", "clap"})


def build_encoder(name: str, **kwargs: Any) -> Any:
    """Build the encoder registered under ``name`` with its keyword arguments."""
    try:
        builder = ENCODERS[name]
    except KeyError:
        known = ", ".join(sorted(ENCODERS))
        raise ValueError(f"unknown encoder {name!r}; known encoders: {known}") from None
    return builder(**kwargs)


__all__ = ["ENCODERS", "TEXT_ALIGNED", "build_encoder"]
