"""The served model's code: each modality's index as a registered MLflow pyfunc model.

    mlflow models serve -m models:/cart-image/latest --env-manager local -p 5001
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"query": "a brown hen"}], "params": {"k": 5}}'

The serving stage (pipelines/serving) logs this file as the model's code ("models from code":
MLflow runs it to build the model; nothing is pickled) with one artifact, the modality's search
index, registers it as ``cart-<modality>`` and tags the version with the CART metrics measured
on it. Prediction is :meth:`Retriever.search`, the CLI's own code path, so serving needs this
package installed (``--env-manager local`` in the project's virtualenv; the encoders' weights
ship inside their packages). ``params.system`` picks any system the evaluation measured —
CART (the default), its reranked variants, the dual tower, the pair lookup, the zero-shot
search — all answered from the one search index.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

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
        from mlflow.exceptions import MlflowException

        from cart_pipeline.search import SearchError

        params = params or {}
        queries = list(model_input["query"]) if "query" in model_input else []
        for row, query in enumerate(queries, start=1):
            if not isinstance(query, str) or not query.strip():
                raise MlflowException.invalid_parameter_value(
                    f"query {row} must be a non-empty string, got {query!r}"
                )
        for name, low, high in (("k", 1, 1000), ("beam_size", 1, 1000)):
            value = params.get(name)
            if value is not None and not low <= int(value) <= high:
                raise MlflowException.invalid_parameter_value(
                    f"params.{name} must be in {low}..{high}, got {value!r}"
                )
        system = params.get("system") or "cart"
        systems = self.retriever.systems(next(iter(self.retriever.indexes)))
        if system not in systems:
            raise MlflowException.invalid_parameter_value(
                f"params.system must be one of {', '.join(systems)}, got {system!r}"
            )
        try:
            results = self.retriever.search(
                queries,
                k=int(params.get("k") or 10),
                beam_size=int(params.get("beam_size") or self.beam_size),
                system=system,
            )
        except SearchError as error:  # the user's to fix: a 400 that says why
            raise MlflowException.invalid_parameter_value(str(error)) from None
        rows = [
            {column: getattr(r, column) for column in OUTPUT_COLUMNS}
            for per_query in results
            for r in per_query
        ]
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


set_model(CartModel())
