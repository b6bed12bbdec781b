"""The static HTML report: metrics, plots and example queries with both systems' results."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from cart_pipeline.core.errors import InputError
from cart_pipeline.core.pairs import item_descriptions
from cart_pipeline.reporting.html import render_report


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pick_examples(
    rankings: dict[str, dict[str, pd.DataFrame]], queries: pd.DataFrame, n: int, top: int = 5
) -> list[dict]:
    """`n` test queries spread evenly over the modalities (and over each modality's queries)."""
    per_modality = max(1, n // max(len(rankings), 1))
    by_id = queries.set_index("query_id")
    examples = []
    for modality, systems in rankings.items():
        asked = systems["cart"].query_id.unique()
        chosen = (
            np.sort(asked)[
                np.linspace(0, len(asked) - 1, min(per_modality, len(asked))).astype(int)
            ]
            if len(asked)
            else []
        )
        for query_id in chosen:
            query = by_id.loc[query_id]
            results = {
                system: table[(table.query_id == query_id) & (table["rank"] <= top)]
                .sort_values("rank")[["item_id", "score"]]
                .to_dict("records")
                for system, table in systems.items()
            }
            examples.append(
                {
                    "query_id": query_id,
                    "text": query.text,
                    "modality": modality,
                    "relevant_item_id": query.item_id,
                    "results": results,
                }
            )
    return examples


class StaleArtifactsError(InputError):
    """Artifacts of two different runs met in one node."""


def check_one_run(rankings: dict, candidates: pd.DataFrame, queries: pd.DataFrame) -> None:
    """Rankings and the ingest tables must come from one run: after a re-ingest, a partial
    `kedro run --from-nodes ...` can pair new tables with old rankings."""
    for modality, by_system in rankings.items():
        for system, table in by_system.items():
            unknown_items = set(table.item_id) - set(candidates.item_id)
            unknown_queries = set(table.query_id) - set(queries.query_id)
            if unknown_items or unknown_queries:
                example = sorted(unknown_items or unknown_queries)[0]
                raise StaleArtifactsError(
                    f"{modality}.{system}_rankings names {len(unknown_items)} items and "
                    f"{len(unknown_queries)} queries the current ingest tables lack (e.g. {example!r}): "
                    "they come from different runs. Run the whole pipeline (`kedro run`), or "
                    "`kedro resume` to finish an interrupted one."
                )


def build_report(
    metrics: dict,
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    dataset_root: str,
    params: dict[str, Any],
    recall_plot: Image.Image,
    **per_modality: Any,
) -> str:
    modalities = list(metrics["by_modality"])
    rankings = {  # the systems each modality has (zero_shot only with a text-aligned encoder)
        m: {s: per_modality[f"{m}_{s}_rankings"] for s in metrics["by_modality"][m]}
        for m in modalities
    }
    check_one_run(rankings, candidates, queries)
    plots = {"Test-query recall by system": _png_bytes(recall_plot)}
    plots.update(
        {
            f"{m}: identifier prefixes (t-SNE of item features)": _png_bytes(
                per_modality[f"{m}_id_prefix_plot"]
            )
            for m in modalities
        }
    )
    metrics = {
        **metrics,
        "identifiers": {
            m: {
                k: v
                for k, v in per_modality[f"{m}_id_statistics"].items()
                if not isinstance(v, dict)
            }
            for m in modalities
        },
    }
    items = candidates.assign(text=candidates.item_id.map(item_descriptions(queries)).fillna(""))[
        ["item_id", "modality", "media_path", "text"]
    ]
    examples = pick_examples(rankings, queries, int(params["report_examples"]))
    return render_report(metrics, examples, items, Path(dataset_root), plots)
