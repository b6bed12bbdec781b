"""The search index: everything a search of one modality needs, in one weights-only file.

The serving stage writes it after the evaluation measured the decoder (catalog entry
``{modality}.search_index``); `cart-search` reads it straight from disk without Kedro or pandas,
and the served MLflow model's one artifact is this file. Plain values only, so
``torch.load(weights_only=True)`` loads it.

Beside CART it carries the baselines the evaluation measured (``baseline_bundle``), so that
every system of metrics.json can answer from the one file: the dual tower (its checkpoint
and the items' features), the pair lookup (its training texts' vectors and the temperature
it chose on validation) and, with a text-aligned media encoder, the zero-shot search (the
encoder's spec and the items' embeddings; the encoder loads from its local weights).

It also carries what growing the index needs (`kedro run --pipeline add_items`,
``core/add_items.py``): each item's split, the training pairs' texts (validation queries
flagged; no test query is ever one) and the frozen quantisers (the K-Means centroids and the
RQ-VAE) that coded the identifiers. A grown index lists its ``additions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a search reads the index without pandas; only building one needs it
    import pandas as pd

SEARCH_INDEX_FORMAT = "cart-search-index/2"


def make_search_index(
    modality: str,
    cart_decoder: dict,
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    text_encoder_spec: dict,
    beam_size: int,
    device: str,
    metrics: dict[str, float] | None = None,
    baselines: dict | None = None,
    training_pairs: pd.DataFrame | None = None,
    quantisers: dict | None = None,
) -> dict:
    """The decoder checkpoint and its save version, the item table (id, media path, split, the
    first human description), the query encoder's spec, the evaluated beam size, the project's
    ``device``, the CART metrics measured on this decoder, the baselines (``baseline_bundle``),
    and, for `add_items`, the training pairs and the quantisers (``quantiser_bundle``)."""
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
            "split": candidates.split.astype(str).tolist(),
        },
        "text_encoder": dict(text_encoder_spec),
        "beam_size": int(beam_size),
        "device": str(device),
        "metrics": {name: float(value) for name, value in (metrics or {}).items()},
        "baselines": baselines or {},
        "training_pairs": None if training_pairs is None else pairs_to_lists(training_pairs),
        "quantisers": quantisers,
        "additions": [],
    }


PAIR_FIELDS = ("query_id", "text", "item_id", "source", "is_validation")


def pairs_to_lists(pairs: pd.DataFrame) -> dict[str, list]:
    """A training-pairs table as plain lists (what a weights-only file may hold)."""
    return {
        name: pairs[name].astype(bool if name == "is_validation" else str).tolist()
        for name in PAIR_FIELDS
    }


def quantiser_bundle(kmeans_centroids: pd.DataFrame, rqvae_model: dict) -> dict:
    """The fitted K-Means centroids (K, D) and the RQ-VAE checkpoint that coded an index's
    identifiers, as `add_items` codes new items with them (``core.quantize.ids.frozen_codes``)."""
    import torch

    from cart_pipeline.core.tables import column_to_matrix

    centroids = column_to_matrix(kmeans_centroids.sort_values("cluster").embedding)
    return {
        "variant": rqvae_model["variant"],
        "centroids": torch.from_numpy(centroids),
        "rqvae": rqvae_model["rqvae"],
    }


def baseline_bundle(
    dual_tower: dict,
    candidate_features: pd.DataFrame,
    training_pairs: pd.DataFrame,
    query_features: pd.DataFrame,
    pseudo_query_features: pd.DataFrame,
    lookup_temperature: float | None,
    media_encoder: dict,
) -> dict:
    """What the baselines of one modality need to search, as plain values and tensors."""
    import torch

    from cart_pipeline.core.encoders import TEXT_ALIGNED
    from cart_pipeline.core.retrieval.pair_lookup import lookup_from_training_pairs
    from cart_pipeline.core.tables import column_to_matrix

    item_ids = candidate_features.item_id.astype(str).tolist()
    features = torch.from_numpy(column_to_matrix(candidate_features.embedding))  # (N, D)
    bundle = {
        "dual_tower": {
            "checkpoint": {k: v for k, v in dual_tower.items() if k != "saved_version"},
            "version": dual_tower.get("saved_version"),
            "item_ids": item_ids,
            "item_features": features,
        }
    }
    if lookup_temperature is not None:
        lookup, _ = lookup_from_training_pairs(
            training_pairs, candidate_features.item_id.to_numpy(), query_features,
            pseudo_query_features,
        )  # fmt: skip
        bundle["pair_lookup"] = {
            "text_embeddings": torch.from_numpy(lookup.text_embeddings),
            "pair_items": torch.from_numpy(lookup.pair_items),
            "item_ids": item_ids,
            "temperature": float(lookup_temperature),
        }
    if media_encoder["name"] in TEXT_ALIGNED:  # its own search: the item embeddings as they are
        bundle["zero_shot"] = {"encoder": dict(media_encoder), "item_ids": item_ids,
                               "item_embeddings": features}  # fmt: skip
    return bundle
