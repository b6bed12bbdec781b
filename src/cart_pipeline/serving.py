"""Each modality's trained index as a registered MLflow model, served with MLflow's own server.

    mlflow models serve -m models:/cart-image/latest --env-manager local -p 5001
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"query": "a brown hen"}], "params": {"k": 5}}'

The evaluation stage logs one pyfunc model per modality into its MLflow run and registers it
as ``cart-<modality>``: its one artifact is the modality's search index (``search.py``:
the evaluated decoder checkpoint, the item table and the text-encoder spec in a weights_only
torch file); the model version carries the run's CART metrics as tags. Prediction is
:class:`Retriever.search`, the CLI's own code path, so serving needs this package installed
(``--env-manager local`` in the project's virtualenv; the encoders' weights ship inside their
packages).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["query", "rank", "item_id", "score", "description", "media_path"]


class CartModel(mlflow.pyfunc.PythonModel):
    """Query texts in (column ``query``), ranked items out, one row per (query, rank)."""

    def load_context(self, context) -> None:
        import torch

        from cart_pipeline.search import Retriever

        search_index = torch.load(context.artifacts["search_index"], weights_only=True)
        self.retriever = Retriever.from_search_indexes([search_index])
        self.beam_size = int(search_index["beam_size"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = params or {}
        results = self.retriever.search(
            model_input["query"].astype(str).tolist(),
            k=int(params.get("k", 10)),
            beam_size=int(params.get("beam_size") or self.beam_size),
        )
        rows = [
            {column: getattr(r, column) for column in OUTPUT_COLUMNS}
            for per_query in results
            for r in per_query
        ]
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


def signature(beam_size: int = 20):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "query")]),
        outputs=Schema(
            [
                ColSpec("string", "query"),
                ColSpec("long", "rank"),
                ColSpec("string", "item_id"),
                ColSpec("double", "score"),
                ColSpec("string", "description"),
                ColSpec("string", "media_path"),
            ]
        ),
        params=ParamSchema(
            [ParamSpec("k", "long", 10), ParamSpec("beam_size", "long", int(beam_size))]
        ),
    )


def log_cart_model(search_index: dict, example_query: str) -> dict:
    """Log a search index into the active MLflow run, register it as ``cart-<modality>`` and
    tag the new version with its metrics. -> {name, version, model_uri, run_id}."""
    import torch

    name = f"cart-{search_index['modality']}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "search_index.pt"
        torch.save({k: v for k, v in search_index.items() if k != "saved_version"}, path)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=CartModel(),
            artifacts={"search_index": str(path)},
            signature=signature(search_index["beam_size"]),
            input_example=(pd.DataFrame({"query": [example_query]}), {"k": 5}),
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
    logger.info("%s: registered as version %s (%s)", name, version, info.model_uri)
    return {"name": name, "version": version, "model_uri": info.model_uri, "run_id": info.run_id}
