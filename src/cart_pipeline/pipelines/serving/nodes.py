"""Publish an evaluated index: its search index file and its registered MLflow model.

Kept apart from the evaluation so that a run can measure without publishing (the experiment
runners' runs): what `cart-search` and `models:/cart-<modality>` serve is always an index some
`kedro run` both measured and meant to serve.
"""

from __future__ import annotations

import logging
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd

from cart_pipeline.core.search_index import baseline_bundle, make_search_index, quantiser_bundle

logger = logging.getLogger(__name__)

# The served model's code, logged as a file ("models from code"): the model is that script
# plus the search index, never a pickled object.
MODEL_CODE = files("cart_pipeline") / "serving.py"


def package_search_index(
    cart_decoder: dict,
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    evaluation_metrics: dict,
    dual_tower: dict,
    candidate_features: pd.DataFrame,
    training_pairs: pd.DataFrame,
    query_features: pd.DataFrame,
    pseudo_query_features: pd.DataFrame,
    kmeans_centroids: pd.DataFrame,
    rqvae_model: dict,
    feature_params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
    params: dict[str, Any],
    device: str,
    modality: str,
) -> dict:
    """The evaluated index as one file, every measured system in it: what `cart-search`,
    the search page and the served model load, and what `add_items` grows."""
    systems = evaluation_metrics["systems"]
    cart = systems["cart"]["metrics"]
    lookup = systems.get("pair_lookup", {}).get("metrics", {})
    baselines = baseline_bundle(
        dual_tower,
        candidate_features,
        training_pairs,
        query_features,
        pseudo_query_features,
        lookup.get("temperature"),
        feature_params["encoders"][modality],
    )
    return make_search_index(
        modality,
        cart_decoder,
        candidates,
        queries,
        text_encoder_spec,
        params["beam_size"],
        device,
        {metric: cart[metric] for metric in ("R@1", "R@5", "R@10", "MRR@10")},
        baselines,
        training_pairs,
        quantiser_bundle(kmeans_centroids, rqvae_model),
    )


def signature(beam_size: int):
    """Query texts in; one row per (query, rank) out; `k`, `beam_size` and `system` (one of
    the evaluated systems in the search index) as parameters."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    outputs = [("query", "string"), ("rank", "long"), ("item_id", "string"),
               ("score", "double"), ("description", "string"), ("media_path", "string")]  # fmt: skip
    return ModelSignature(
        inputs=Schema([ColSpec("string", "query")]),
        outputs=Schema([ColSpec(kind, name) for name, kind in outputs]),
        params=ParamSchema(
            [
                ParamSpec("k", "long", 10),
                ParamSpec("beam_size", "long", int(beam_size)),
                ParamSpec("system", "string", "cart"),
            ]
        ),
    )


def register_served_model(
    search_index: dict, queries: pd.DataFrame, params: dict[str, Any]
) -> dict:
    """Log the search index into the run as an MLflow pyfunc model, register it as
    ``cart-<modality>`` and tag the new version with its metrics (serving.py serves it)."""
    import mlflow
    import torch

    modality = search_index["modality"]
    if not params["register_model"] or mlflow.active_run() is None:
        reason = "register_model is off" if not params["register_model"] else "no MLflow run"
        logger.info("%s: served model not registered (%s)", modality, reason)
        return {"registered": False, "reason": reason}
    train_texts = queries[(queries.split == "train") & (queries.source == "human")].text
    example = train_texts.iloc[0] if len(train_texts) else "a picture"
    name = f"cart-{modality}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "search_index.pt"
        torch.save(search_index, path)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE),
            artifacts={"search_index": str(path)},
            signature=signature(search_index["beam_size"]),
            input_example=(pd.DataFrame({"query": [example]}), {"k": 5}),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in search_index["metrics"].items():  # named as the run's metrics ("R_at_1")
        client.set_model_version_tag(
            name, version, f"test.{key.replace('@', '_at_')}", f"{value:.4f}"
        )
    client.set_model_version_tag(
        name, version, "decoder_version", str(search_index["decoder_version"])
    )
    added = sum(a["items"] for a in search_index.get("additions", []))
    client.set_model_version_tag(name, version, "items_added", str(added))  # by add_items
    logger.info("%s: registered as version %s (%s)", name, version, info.model_uri)
    return {"registered": True, "name": name, "version": version, "model_uri": info.model_uri,
            "run_id": info.run_id}  # fmt: skip
