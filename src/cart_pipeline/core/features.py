"""Batched feature extraction over media files: the function the feature node calls.

Any media encoder works that has ``name``, ``dim``, ``load(path) -> item`` (decode +
preprocess one file, raising :class:`MediaDecodeError`) and ``embed_items(items) -> (B, D)``;
encoders with an ImageNet head also have ``embed_items_with_logits``.

Decoding runs in a small thread pool one batch ahead of the forward pass: PIL, libsndfile,
ffmpeg and torch's FFT release the GIL, so the next batch decodes while the current one
runs through the network. A file that cannot be decoded, or whose embedding is not finite,
becomes a reject with its reason; the run goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cart_pipeline.core.media import MediaDecodeError

log = logging.getLogger(__name__)

Rejects = list[tuple[int, str]]


def _load_or_reason(load: Callable[[Path], Any], path: Path) -> tuple[Any, str | None]:
    try:
        return load(path), None
    except MediaDecodeError as err:
        return None, str(err)
    except FileNotFoundError as err:
        return None, f"missing file: {err.filename or path}"


def _decoded_batches(
    load: Callable[[Path], Any], paths: Sequence[Path], batch_size: int, num_threads: int
) -> Iterator[tuple[int, list[tuple[Any, str | None]]]]:
    """Yield (start row, [(item, reject reason)]) per batch, decoding one batch ahead."""
    starts = range(0, len(paths), batch_size)
    if num_threads <= 0:  # inline decoding: simplest to debug and profile
        for s in starts:
            yield s, [_load_or_reason(load, p) for p in paths[s : s + batch_size]]
        return
    with ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="decode") as pool:

        def submit(s: int) -> list[Future]:
            return [pool.submit(_load_or_reason, load, p) for p in paths[s : s + batch_size]]

        # bounded prefetch (one batch ahead), so memory does not grow with the corpus
        pending = submit(starts[0]) if starts else []
        for i, s in enumerate(starts):
            current = pending
            if i + 1 < len(starts):
                pending = submit(starts[i + 1])
            yield s, [f.result() for f in current]


def _encode(
    encoder: Any,
    paths: Sequence[str | Path],
    batch_size: int,
    num_threads: int | None,
    progress: bool,
    with_logits: bool,
) -> tuple[np.ndarray, np.ndarray, Rejects, np.ndarray | None]:
    from tqdm.auto import tqdm

    if with_logits and not hasattr(encoder, "embed_items_with_logits"):
        raise TypeError(f"encoder {encoder.name!r} has no classifier head (no logits)")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    paths = [Path(p) for p in paths]
    if num_threads is None:
        num_threads = min(4, os.cpu_count() or 1)
    ok_mask = np.zeros(len(paths), dtype=bool)
    rejects: Rejects = []
    feature_chunks: list[np.ndarray] = []
    logit_chunks: list[np.ndarray] = []

    bar = tqdm(total=len(paths), desc=f"encode {encoder.name}", unit="item", disable=not progress)
    with bar, torch.inference_mode():
        for start, decoded in _decoded_batches(encoder.load, paths, batch_size, num_threads):
            rows = np.array(
                [start + k for k, (_, reason) in enumerate(decoded) if reason is None],
                dtype=np.int64,
            )
            rejects += [(start + k, reason) for k, (_, reason) in enumerate(decoded) if reason]
            items = [item for item, reason in decoded if reason is None]
            if items:
                if with_logits:
                    feats, logits = encoder.embed_items_with_logits(items)  # (b, D), (b, C)
                else:
                    feats, logits = encoder.embed_items(items), None
                finite = np.isfinite(feats).all(axis=1)  # (b,)
                if logits is not None:
                    finite &= np.isfinite(logits).all(axis=1)
                rejects += [(int(r), "non-finite embedding") for r in rows[~finite]]
                ok_mask[rows[finite]] = True
                feature_chunks.append(np.asarray(feats, dtype=np.float32)[finite])
                if logits is not None:
                    logit_chunks.append(np.asarray(logits, dtype=np.float32)[finite])
            bar.update(len(decoded))

    rejects.sort()
    if rejects:
        log.warning(
            "%s: %d of %d files rejected (first: row %d, %s)",
            encoder.name,
            len(rejects),
            len(paths),
            *rejects[0],
        )
    dim = int(encoder.dim)
    features = np.concatenate(feature_chunks) if feature_chunks else np.zeros((0, dim), np.float32)
    logits_all = None
    if with_logits:
        n_classes = (
            logit_chunks[0].shape[1] if logit_chunks else int(getattr(encoder, "n_classes", 0))
        )
        logits_all = (
            np.concatenate(logit_chunks) if logit_chunks else np.zeros((0, n_classes), np.float32)
        )
    return features, ok_mask, rejects, logits_all


def encode_media(
    encoder: Any,
    paths: Sequence[str | Path],
    batch_size: int = 32,
    num_threads: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, Rejects]:
    """Embed media files in batches.

    Returns ``features`` (n_ok, dim) float32 in row order of the accepted files, ``ok_mask``
    (N,) bool marking them, and ``rejects`` [(row, reason)] for the others (decode failure
    or non-finite embedding). ``num_threads`` decoding threads (0 = decode inline; None =
    min(4, cpu count)).
    """
    features, ok_mask, rejects, _ = _encode(
        encoder, paths, batch_size, num_threads, progress, False
    )
    return features, ok_mask, rejects


def encode_images_with_logits(
    encoder: Any,
    paths: Sequence[str | Path],
    batch_size: int = 32,
    num_threads: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, Rejects, np.ndarray]:
    """:func:`encode_media` plus the classifier logits (n_ok, n_classes) of the same forward pass.

    For encoders with an ImageNet head (the image encoder; the frame-mean video encoder
    gives frame-averaged logits), so the captioner need not run the network again.
    """
    features, ok_mask, rejects, logits = _encode(
        encoder, paths, batch_size, num_threads, progress, True
    )
    return features, ok_mask, rejects, logits
