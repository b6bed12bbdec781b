"""Thin Kedro adapters over :mod:`cart_pipeline.core.features`."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from cart_pipeline.core.device import stage_device
from cart_pipeline.core.tables import features_frame
from cart_pipeline.pipelines.encoders import load_encoder

from .encode import encode_candidates
from .sharded import extract_in_shards

logger = logging.getLogger(__name__)


def select_modality(
    candidates: pd.DataFrame, queries: pd.DataFrame, modality: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """This modality's corpus and its human queries."""
    mine = candidates[candidates.modality == modality].reset_index(drop=True)
    if mine.empty:
        raise ValueError(
            f"no {modality!r} candidates were ingested; remove {modality!r} from `modalities` "
            "in conf/base/parameters.yml (or conf/local/parameters.yml)"
        )
    return mine, queries[queries.item_id.isin(mine.item_id)].reset_index(drop=True)


def extract_candidate_features(
    candidates: pd.DataFrame, params: dict[str, Any], modality: str, dataset_root: str, device: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Embed every candidate's media; undecodable files and non-finite embeddings are rejects.
    With ``sharding.shard_size`` set, in shards on a Dask cluster (``sharded.py``)."""
    if (params.get("sharding") or {}).get("shard_size"):
        return extract_in_shards(candidates, params, modality, dataset_root, device)
    return encode_candidates(candidates, params, modality, dataset_root, device)


def extract_query_features(
    queries: pd.DataFrame, params: dict[str, Any], device: str
) -> pd.DataFrame:
    encoder = load_encoder(params["text_encoder"], stage_device(params, device))
    cut = queries.query_id[encoder.over_length(queries.text.tolist())]
    if len(cut):
        logger.warning(
            "%d of %d query texts are longer than %d tokens and are cut there (text_encoder.max_length), e.g. %s",
            len(cut),
            len(queries),
            encoder.max_length,
            ", ".join(map(str, cut.head(5))),
        )
    started = time.perf_counter()
    embeddings = encoder.encode(queries.text.tolist(), progress=True)
    seconds = time.perf_counter() - started
    logger.info(
        "%s: %d queries in %.1f s (%.0f queries/s)",
        encoder.name,
        len(queries),
        seconds,
        len(queries) / max(seconds, 1e-9),
    )
    return features_frame(queries.query_id, embeddings, encoder=encoder.name, id_column="query_id")
