"""The search index: everything a search of one modality needs, in one weights-only file.

The serving stage writes it after the evaluation measured the decoder (catalog entry
``{modality}.search_index``); `cart-search` reads it straight from disk without Kedro or pandas,
and the served MLflow model's one artifact is this file. Plain values only, so
``torch.load(weights_only=True)`` loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a search reads the index without pandas; only building one needs it
    import pandas as pd

SEARCH_INDEX_FORMAT = "cart-search-index/1"


def make_search_index(
    modality: str,
    cart_decoder: dict,
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    text_encoder_spec: dict,
    beam_size: int,
    device: str,
    metrics: dict[str, float] | None = None,
) -> dict:
    """The decoder checkpoint and its save version, the item table (id, media path, the first
    human description), the query encoder's spec, the evaluated beam size, the project's
    ``device`` and the CART metrics measured on this decoder."""
    from cart_pipeline.core.pairs import item_descriptions

    descriptions = candidates.item_id.map(item_descriptions(queries)).fillna("")
    return {
        "format": SEARCH_INDEX_FORMAT,
        "modality": modality,
        "decoder": {k: v for k, v in cart_decoder.items() if k != "saved_version"},
        "decoder_version": cart_decoder.get("saved_version"),
        "items": {
            "item_id": candidates.item_id.astype(str).tolist(),
            "media_path": candidates.media_path.astype(str).tolist(),
            "description": descriptions.astype(str).tolist(),
        },
        "text_encoder": dict(text_encoder_spec),
        "beam_size": int(beam_size),
        "device": str(device),
        "metrics": {name: float(value) for name, value in (metrics or {}).items()},
    }
