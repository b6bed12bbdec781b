"""Thin Kedro adapters over :mod:`cart_pipeline.core.manifest`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from cart_pipeline.core.manifest import (
    ManifestError,
    build_tables,
    check_rejected_share,
    validate_manifest,
)

logger = logging.getLogger(__name__)


def validate(
    manifest: pd.DataFrame, params: dict[str, Any], dataset_root: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    valid, rejected = validate_manifest(
        manifest,
        dataset_root=Path(dataset_root),
        known_modalities=list(params["known_modalities"]),
        check_media=bool(params["check_media_decodes"]),
    )
    logger.info("manifest: %d rows valid, %d rejected", len(valid), len(rejected))
    return valid, rejected


def build_candidates_and_queries(
    valid_manifest: pd.DataFrame,
    rejected_items: pd.DataFrame,
    params: dict[str, Any],
    modalities: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    # checked here, not in `validate`: the rejects of this run are saved before the run stops
    check_rejected_share(
        len(valid_manifest) + len(rejected_items),
        rejected_items,
        float(params["max_rejected_share"]),
    )
    # an index per listed modality: one without items would fail stages later, less clearly
    present = set(valid_manifest.modality)
    if missing := [m for m in modalities if m not in present]:
        indexable = [m for m in modalities if m in present] or sorted(present)
        # a list of two or more cannot go through `--params` (Kedro splits it at the comma)
        how = (
            f'run with --params "modalities=[{indexable[0]}]", or set '
            if len(indexable) == 1
            else "set "
        )
        raise ManifestError(
            f"`modalities` lists {', '.join(missing)}, but the manifest has no valid rows of "
            f"it: {how}`modalities: [{', '.join(indexable)}]` in conf/local/parameters.yml"
        )
    candidates, queries = build_tables(
        valid_manifest,
        seed=int(params["split_seed"]),
        test_fraction=float(params["test_fraction"]),
        validation_fraction=float(params["validation_fraction"]),
        min_validation_queries=int(params["min_validation_queries"]),
        max_validation_fraction=float(params["max_validation_fraction"]),
        validation_fold=int(params.get("validation_fold", 0)),
        indexed=modalities,
    )
    counts = candidates.groupby(["modality", "split"]).size().unstack(fill_value=0)
    logger.info("candidates per modality and split:\n%s", counts.to_string())
    return candidates, queries
