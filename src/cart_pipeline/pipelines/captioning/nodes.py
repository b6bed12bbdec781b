"""Thin Kedro adapters over :mod:`cart_pipeline.core.captioners`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cart_pipeline.core.captioners import CaptionContext, get_captioner
from cart_pipeline.core.pairs import LeakageError, assert_no_test_leak, normalise_text
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix

logger = logging.getLogger(__name__)


def generate_pseudo_queries(
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    modality: str,
    dataset_root: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run this modality's captioners; guard against test-query leakage; report coverage."""
    # items whose features were rejected are not in the index, so they get no captions either
    corpus = candidates.merge(candidate_features[["item_id"]], on="item_id").reset_index(drop=True)
    features = candidate_features.set_index("item_id").loc[corpus.item_id]
    context = CaptionContext(
        candidates=corpus,
        features=column_to_matrix(features.embedding),
        train_queries=queries[queries.split == "train"][["item_id", "text", "split"]],
        class_top=int_lists_to_matrix(features.class_top) if "class_top" in features else None,
        class_prob=np.stack(features.class_prob.to_numpy()) if "class_prob" in features else None,
        dataset_root=Path(dataset_root),
    )

    frames, problems, wanted = [], [], {}
    for spec in params["captioners"][modality]:
        spec = dict(spec)
        name = spec.pop("name")
        wanted[f"pseudo:{name}"] = n = int(spec.pop("n", 3))
        # Captioners never see test queries, so the guard below may have to drop a caption
        # that happens to equal one; asking for spares keeps every item covered.
        frame, failed = get_captioner(name)(context, n=n + int(params.get("spare_captions", 3)), **spec)
        logger.info("%s: %d pseudo-queries for %d items, %d items not captioned", name, len(frame), frame.item_id.nunique(), len(failed))
        frames.append(frame)
        problems += [(item, f"{name}: {reason}") for item, reason in failed]
    pseudo = pd.concat(frames, ignore_index=True)
    pseudo = pseudo[pseudo.text.str.strip() != ""]
    pseudo = pseudo.assign(norm=normalise_text(pseudo.text)).drop_duplicates(["item_id", "norm"])

    # the leakage guard: no pseudo-query of an item may be that item's human test query
    test = queries[queries.split == "test"]
    test_keys = pd.MultiIndex.from_arrays([test.item_id, normalise_text(test.text)])
    matches = pd.MultiIndex.from_arrays([pseudo.item_id, pseudo.norm]).isin(test_keys)
    if matches.any() and params.get("test_query_matches", "drop") != "drop":
        raise LeakageError(f"{matches.sum()} pseudo-queries equal their item's test query, e.g. {pseudo[matches].head(3)[['item_id', 'text']].values.tolist()}")
    pseudo = pseudo[~matches].drop(columns="norm")
    # the first n that survived, per item and captioner (captioners list best first)
    pseudo = pseudo[pseudo.groupby(["item_id", "source"]).cumcount() < pseudo.source.map(wanted)]
    assert_no_test_leak(pseudo, queries)

    pseudo = pseudo.merge(corpus[["item_id", "split"]], on="item_id").sort_values(["item_id", "source", "text"], kind="stable")
    pseudo["query_id"] = "pq:" + pseudo.item_id + ":" + pseudo.source.str.removeprefix("pseudo:") + ":" + pseudo.groupby(["item_id", "source"]).cumcount().astype(str)
    pseudo = pseudo[["query_id", "item_id", "text", "split", "source"]].reset_index(drop=True)

    uncovered = sorted(set(corpus.item_id) - set(pseudo.item_id))
    if uncovered:
        reasons = {item: [r for i, r in problems if i == item] or ["every caption was dropped by the leakage guard"] for item in uncovered}
        for item in uncovered:
            logger.warning("%s has no pseudo-query: %s", item, "; ".join(reasons[item]))
    report = {
        "modality": modality,
        "items": int(len(corpus)),
        "items_with_pseudo_queries": int(pseudo.item_id.nunique()),
        "coverage": float(pseudo.item_id.nunique() / max(len(corpus), 1)),
        "pseudo_queries": int(len(pseudo)),
        "per_source": {k: int(v) for k, v in pseudo.source.value_counts().sort_index().items()},
        "leakage_guard": {
            "test_queries_checked": int(len(test)),
            "pseudo_queries_equal_to_their_items_test_query_dropped": int(matches.sum()),
            "policy": params.get("test_query_matches", "drop"),
        },
        "not_captioned": [{"item_id": i, "reason": "; ".join(r)} for i, r in ((i, reasons[i]) for i in uncovered)] if uncovered else [],
    }
    logger.info("captioning %s: %d pseudo-queries, coverage %.1f%%, %d dropped by the leakage guard", modality, len(pseudo), 100 * report["coverage"], matches.sum())
    return pseudo, report
