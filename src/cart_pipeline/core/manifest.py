"""Manifest validation and the item-level train/test split (the `ingest` stage's core).

A manifest is one row per candidate: item_id, modality, media_path (relative to the dataset
root), text (its human description), optionally `group` (rows of one group share a split,
e.g. the picture and the sound of one Tux Paint stamp), extra human queries in `text_2`,
`text_3`, ... and any free metadata columns.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cart_pipeline.core import media
from cart_pipeline.core.errors import InputError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("item_id", "modality", "media_path", "text")
REJECT_COLUMNS = ["row", "item_id", "reason"]


class ManifestError(InputError):
    """The manifest cannot be ingested as a whole (missing columns, too many bad rows)."""


def check_columns(manifest: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise ManifestError(
            f"manifest is missing required column(s) {missing}; "
            f"required: {list(REQUIRED_COLUMNS)}, found: {list(manifest.columns)}"
        )


def media_problem(path: Path, modality: str) -> str | None:
    """Why the media file at `path` cannot be used, or None if it decodes."""
    if not path.is_file():
        return f"media file not found: {path}"
    try:
        if modality == "image":
            media.load_image_rgb(path)
        elif modality == "audio":
            media.load_audio_mono(path, sample_rate=16000)
        elif modality == "video":
            media.sample_video_frames(path, n_frames=1)
    except media.MediaDecodeError as error:
        return f"media file does not decode: {error}"
    return None


def validate_manifest(
    manifest: pd.DataFrame,
    dataset_root: Path,
    known_modalities: list[str],
    check_media: bool = True,
    media_check: Callable[[Path, str], str | None] = media_problem,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the manifest into (valid rows, rejected rows with a reason each).

    `row` in the rejects is the 1-based data row of the manifest file (header excluded).
    Raises ManifestError for a missing column; whether the rejects are too many to go on is
    :func:`check_rejected_share`'s call, made after the rejects are saved.
    """
    check_columns(manifest)
    manifest = manifest.reset_index(drop=True).copy()
    for column in REQUIRED_COLUMNS:
        manifest[column] = manifest[column].fillna("").astype(str).str.strip()

    reasons: dict[int, str] = {}

    def reject(mask: pd.Series | np.ndarray, reason: str | Callable[[int], str]) -> None:
        for i in np.flatnonzero(np.asarray(mask)):
            if i not in reasons:
                reasons[i] = reason(i) if callable(reason) else reason

    reject(manifest.item_id == "", "empty item_id")
    first_row = manifest.groupby("item_id", sort=False).cumcount() == 0
    first_index = manifest.reset_index().groupby("item_id")["index"].transform("first")
    reject(~first_row, lambda i: f"duplicate item_id (first at row {first_index[i] + 1})")
    reject(manifest.text == "", "empty text")
    unknown = ~manifest.modality.isin(known_modalities)
    reject(
        unknown, lambda i: f"unknown modality {manifest.modality[i]!r} (known: {known_modalities})"
    )
    reject(manifest.media_path == "", "empty media_path")
    outside = {
        i: why
        for i, path in enumerate(manifest.media_path)
        if path and (why := media.outside_dataset(dataset_root, path))
    }
    reject(manifest.index.isin(list(outside)), outside.__getitem__)
    if check_media:
        for i, row in manifest.iterrows():
            if i in reasons:
                continue
            problem = media_check(dataset_root / row.media_path, row.modality)
            if problem:
                reasons[i] = problem

    rejected = pd.DataFrame(
        [(i + 1, manifest.item_id[i], reason) for i, reason in sorted(reasons.items())],
        columns=REJECT_COLUMNS,
    )
    for _, r in rejected.iterrows():
        logger.warning("manifest row %d (item_id %r) rejected: %s", r.row, r.item_id, r.reason)
    valid = manifest.drop(index=list(reasons)).reset_index(drop=True)
    return valid, rejected


def check_rejected_share(n_rows: int, rejected: pd.DataFrame, max_rejected_share: float) -> None:
    """Raise ManifestError (listing the first rejects) for an empty manifest, or when more than
    ``max_rejected_share`` of its ``n_rows`` rows were rejected."""
    if n_rows == 0:
        raise ManifestError("the manifest has no data rows (a header only): nothing to ingest")
    share = len(rejected) / n_rows
    if share > max_rejected_share:
        listing = "; ".join(
            f"row {r.row} ({r.item_id!r}): {r.reason}" for r in rejected.head(20).itertuples()
        )
        raise ManifestError(
            f"{len(rejected)} of {n_rows} manifest rows rejected "
            f"({share:.0%} > max_rejected_share {max_rejected_share:.0%}; all of them are in rejected_items.csv): {listing}"
            + (" ..." if len(rejected) > 20 else "")
        )


SPLITS = ("train", "validation", "test")


def unit_draws(keys: pd.Series, seed: int) -> pd.Series:
    """A deterministic draw in [0, 1) per key: a hash of (seed, key), not a shuffled permutation,
    so a key's draw does not change when other keys are added to or removed from the manifest."""

    def unit_interval(key: str) -> float:
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return keys.map(unit_interval)


def split_of(
    keys: pd.Series,
    seed: int,
    test_fraction: float,
    validation_fraction: float = 0.0,
    query_counts: pd.Series | None = None,
    min_validation_queries: int = 0,
    max_validation_fraction: float = 0.5,
    validation_fold: int = 0,
) -> pd.Series:
    """'test', 'validation' or 'train' per row; rows with the same key share a split.

    test: keys drawn below ``test_fraction``; stable when rows are added or removed.
    validation: the keys drawn just above the test band, in draw order, until they hold
    ``validation_fraction`` of the rows *and* ``min_validation_queries`` queries
    (``query_counts`` per row, 1 by default), but never more than ``max_validation_fraction``
    of the rows. A small corpus thus still gets a validation set big enough to select on.
    ``validation_fold`` k > 0 takes the k-th next block of as many keys instead (fold 0 is the
    first): disjoint validation sets over the same test split, for cross-validating a setting
    on more validation queries than one split holds.
    """
    draws = unit_draws(keys, seed)
    split = pd.Series(
        np.where(draws < test_fraction, "test", "train"), index=keys.index, dtype=object
    )
    if validation_fraction <= 0 and min_validation_queries <= 0:
        return split
    counts = query_counts if query_counts is not None else pd.Series(1, index=keys.index)
    rest = pd.DataFrame({"key": keys, "draw": draws, "queries": counts})[draws >= test_fraction]
    per_key = (
        rest.groupby("key", sort=False)
        .agg(draw=("draw", "first"), rows=("draw", "size"), queries=("queries", "sum"))
        .sort_values(["draw"], kind="stable")
    )
    rows, queries = per_key["rows"].cumsum().to_numpy(), per_key["queries"].cumsum().to_numpy()
    enough = (rows >= math.ceil(validation_fraction * len(keys))) & (
        queries >= min_validation_queries
    )
    n_keys = int(np.argmax(enough)) + 1 if enough.any() else len(per_key)
    n_keys = min(
        n_keys, int(np.searchsorted(rows, max_validation_fraction * len(keys), side="right"))
    )
    n_folds = len(per_key) // max(n_keys, 1)
    if not 0 <= validation_fold < n_folds:
        raise ManifestError(
            f"validation_fold {validation_fold} does not exist: the non-test items hold "
            f"{n_folds} validation folds of {n_keys} items (folds 0 to {n_folds - 1})"
        )
    block = per_key.index[validation_fold * n_keys : (validation_fold + 1) * n_keys]
    split[keys.isin(block)] = "validation"
    return split


def build_tables(
    valid: pd.DataFrame,
    seed: int,
    test_fraction: float,
    validation_fraction: float = 0.0,
    min_validation_queries: int = 0,
    max_validation_fraction: float = 0.5,
    validation_fold: int = 0,
    indexed: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid manifest rows -> (candidates, human queries) per the docs/architecture.md contracts.

    The split is carved per modality (each modality is its own index), from the same draw of
    each row's group (or item_id): a group is in the test split in every modality.
    ``validation_fold`` applies to the ``indexed`` modalities (default: all); the others, which
    this run does not index, keep fold 0, so a fold that only images have can be chosen.
    """
    text_columns = ["text"] + sorted(
        (c for c in valid.columns if c.startswith("text_") and c[5:].isdigit()),
        key=lambda c: int(c[5:]),
    )
    split_key = (
        valid["group"].where(valid["group"].astype(str).str.len() > 0, valid.item_id)
        if "group" in valid
        else valid.item_id
    )
    n_texts = (valid[text_columns].fillna("").astype(str).apply(lambda c: c.str.strip()) != "").sum(
        axis=1
    )
    split = pd.Series("train", index=valid.index, dtype=object)
    for modality, rows in valid.groupby("modality", sort=False).groups.items():
        fold = validation_fold if indexed is None or modality in indexed else 0
        try:
            split[rows] = split_of(
                split_key[rows].astype(str),
                seed,
                test_fraction,
                validation_fraction,
                n_texts[rows],
                min_validation_queries,
                max_validation_fraction,
                fold,
            )
        except ManifestError as error:
            raise ManifestError(f"{modality}: {error}") from None
    valid = valid.assign(split=split)

    metadata = [
        c
        for c in valid.columns
        if c not in {"item_id", "modality", "media_path", "split", *text_columns}
    ]
    candidates = valid[["item_id", "modality", "media_path", "split", *metadata]].sort_values(
        "item_id"
    )

    queries = valid.melt(
        id_vars=["item_id", "split"],
        value_vars=text_columns,
        var_name="text_column",
        value_name="query_text",
    ).rename(columns={"query_text": "text"})
    queries["text"] = queries["text"].fillna("").astype(str).str.strip()
    queries = queries[queries.text != ""]
    queries["query_id"] = "q:" + queries.item_id + ":" + queries.text_column
    queries["source"] = "human"
    queries = queries[["query_id", "item_id", "text", "split", "source"]].sort_values("query_id")
    return candidates.reset_index(drop=True), queries.reset_index(drop=True)
