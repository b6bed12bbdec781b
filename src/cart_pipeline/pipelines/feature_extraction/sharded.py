"""Candidate features in shards on a Dask cluster: bounded memory, parallel, resumable.

With ``feature_extraction.sharding.shard_size: S`` the ``extract_candidate_features`` node cuts
the corpus into shards of S items; each shard is one task on a ``dask.distributed`` cluster
(a ``LocalCluster`` of ``n_workers`` processes, or the scheduler at ``sharding.scheduler``),
which encodes it with the same :func:`encode_candidates` as the one-process path and saves
its features and rejects as parquet/CSV parts (kedro-datasets, written atomically) under
``sharding.folder``. A worker holds one shard at a time. The node then concatenates the parts
in corpus order: the same table as the one-process path.

A part's file name carries a digest of everything its content depends on: the encoder spec,
the device, the batch size, ``class_top_k``, the shard's item ids, media paths, file sizes
and modification times. A finished part is never recomputed, so a run killed mid-extraction
resumes with the unfinished shards only; a changed file, encoder or shard boundary names a
different part, so nothing from another configuration is ever reused.

Why Dask: it ships on PyPI as two pure-Python packages, its ``LocalCluster`` runs in the tests
on this 2-core machine, a ``distributed.Client(address)`` reaches a real cluster with no code
change, and its futures map one-to-one onto "one shard, one task" (Ray would add a large
binary dependency for the same pattern). Workers of a remote cluster need this package
installed and the dataset and shard folder at the same paths (a shared filesystem).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from cart_pipeline.io import CSVDataset, ParquetDataset

from .encode import encode_candidates

logger = logging.getLogger(__name__)

# Parts are read and written as the catalog's `_parquet` and `_csv` entries are (catalog.yml)
_PARQUET = {"load_args": {"to_pandas_kwargs": {"ignore_metadata": True}}}
_CSV = {"save_args": {"index": False}}


def shard_digest(
    shard: pd.DataFrame, params: dict, modality: str, dataset_root: str, device: str
) -> str:
    """What a shard's features depend on, hashed (see the module docstring)."""
    files = []
    for media_path in shard.media_path:
        path = Path(dataset_root) / media_path
        stat = path.stat() if path.is_file() else None  # a missing file is a reject, not an error
        files.append([media_path, stat and stat.st_size, stat and stat.st_mtime_ns])
    content = {
        "encoder": params["encoders"][modality],
        "device": str(device),  # another device's float results are not these
        "batch_size": params["batch_size"],
        "class_top_k": params.get("class_top_k"),
        "items": shard.item_id.tolist(),
        "files": files,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _part_paths(folder: Path, index: int, digest: str) -> tuple[Path, Path]:
    stem = folder / f"part-{index:05d}-{digest}"
    return stem.with_suffix(".features.parquet"), stem.with_suffix(".rejects.csv")


def encode_shard(
    shard: pd.DataFrame,
    params: dict,
    modality: str,
    dataset_root: str,
    device: str,
    features_path: str,
    rejects_path: str,
) -> int:
    """One task: encode a shard, save its rejects, then its features (the part exists only
    once both are on disk). -> items encoded."""
    import torch

    torch.set_num_threads(1)  # one core per worker process
    table, rejects = encode_candidates(
        shard.reset_index(drop=True), params, modality, dataset_root, device, progress=False
    )
    CSVDataset(filepath=rejects_path, **_CSV).save(rejects)
    ParquetDataset(filepath=features_path, **_PARQUET).save(table)
    return len(shard)


@contextmanager
def dask_client(sharding: dict) -> Iterator:
    """A client of the scheduler at ``sharding.scheduler``, or of a LocalCluster of
    ``n_workers`` single-threaded processes for the duration of the block."""
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines would flood a run
    if sharding.get("scheduler"):
        with Client(sharding["scheduler"]) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=int(sharding.get("n_workers") or 2),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def extract_in_shards(
    candidates: pd.DataFrame, params: dict[str, Any], modality: str, dataset_root: str, device: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sharded ``extract_candidate_features`` (module docstring): (features, rejects)."""
    sharding = params["sharding"]
    size = int(sharding["shard_size"])
    folder = Path(sharding["folder"]) / modality
    folder.mkdir(parents=True, exist_ok=True)
    shards = [candidates.iloc[start : start + size] for start in range(0, len(candidates), size)]
    parts = [
        _part_paths(folder, i, shard_digest(shard, params, modality, dataset_root, device))
        for i, shard in enumerate(shards)
    ]
    todo = [i for i, (features, _) in enumerate(parts) if not features.exists()]
    logger.info(
        "%s: %d items in %d shards of %d, %d already done, %d to encode on Dask",
        modality, len(candidates), len(shards), size, len(shards) - len(todo), len(todo),
    )  # fmt: skip
    if todo:
        from distributed import as_completed

        started, items, finished = time.perf_counter(), 0, 0
        with dask_client(sharding) as client:
            futures = [
                client.submit(
                    encode_shard,
                    shards[i],
                    params,
                    modality,
                    dataset_root,
                    device,
                    str(parts[i][0]),
                    str(parts[i][1]),
                    key=f"{modality}-{parts[i][0].name}",
                )
                for i in todo
            ]
            for future in as_completed(futures):
                items += future.result()  # a failed shard raises here; finished parts stay
                finished += 1
                logger.info(
                    "%s: %d/%d shards encoded (%.1f items/s)",
                    modality, finished, len(futures), items / (time.perf_counter() - started),
                )  # fmt: skip
    features = [ParquetDataset(filepath=str(f), **_PARQUET).load() for f, _ in parts]
    rejects = [CSVDataset(filepath=str(r), **_CSV).load() for _, r in parts]
    return pd.concat(features, ignore_index=True), pd.concat(rejects, ignore_index=True)
