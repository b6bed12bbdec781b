"""Embedding matrices <-> parquet-ready pandas columns.

Features travel between stages as one row per entity with an ``embedding`` column of
fixed-size float32 lists (docs/architecture.md, "Data contracts"). Going through Arrow keeps the
conversion vectorised: no per-row Python lists, even for a million rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

EMBEDDING = "embedding"


def matrix_to_column(matrix: np.ndarray, index: pd.Index | None = None) -> pd.Series:
    """(N, D) float matrix -> Series of Arrow ``fixed_size_list<float32>[D]``."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {matrix.shape}")
    n, dim = matrix.shape
    values = pa.array(matrix.reshape(-1), type=pa.float32())
    arrow = pa.FixedSizeListArray.from_arrays(values, dim)
    return pd.Series(pd.arrays.ArrowExtensionArray(arrow), index=index, name=EMBEDDING)


def column_to_matrix(column: pd.Series) -> np.ndarray:
    """Inverse of :func:`matrix_to_column`; also accepts object columns of arrays/lists."""
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if isinstance(column.dtype, pd.ArrowDtype):
        arrow = pa.chunked_array(column.array._pa_array).combine_chunks()
        dim = arrow.type.list_size if pa.types.is_fixed_size_list(arrow.type) else None
        flat = arrow.flatten().to_numpy(zero_copy_only=False)
        dim = dim or len(arrow[0])
        return flat.astype(np.float32, copy=False).reshape(len(column), dim)
    return np.stack([np.asarray(v, dtype=np.float32) for v in column.to_numpy()])


def features_frame(
    ids: list[str] | pd.Series, matrix: np.ndarray, encoder: str, id_column: str = "item_id"
) -> pd.DataFrame:
    """The features contract: id column, ``embedding``, and the encoder that made it."""
    frame = pd.DataFrame({id_column: list(ids)})
    frame[EMBEDDING] = matrix_to_column(matrix, index=frame.index)
    frame["encoder"] = encoder
    frame["dim"] = np.int32(matrix.shape[1])
    return frame


def int_lists_column(rows: np.ndarray | list, index: pd.Index | None = None) -> pd.Series:
    """(N, M) int matrix or ragged list of int lists -> Series of Arrow ``list<int32>``."""
    if isinstance(rows, np.ndarray) and rows.ndim == 2:  # a matrix: offsets, no per-row lists
        n, m = rows.shape
        offsets = pa.array(
            np.arange(0, n * m + 1, m, dtype=np.int32) if m else np.zeros(n + 1, np.int32)
        )
        arrow = pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1).astype(np.int32)))
    else:
        arrow = pa.array([list(map(int, r)) for r in rows], type=pa.list_(pa.int32()))
    return pd.Series(pd.arrays.ArrowExtensionArray(arrow), index=index)


def int_lists_to_matrix(column: pd.Series) -> np.ndarray:
    """Series of equal-length int lists -> (N, M) int64 matrix (M may be 0)."""
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.int64)
    if isinstance(column.dtype, pd.ArrowDtype):  # vectorised: one flatten, no per-row arrays
        arrow = pa.chunked_array(column.array._pa_array).combine_chunks()
        lengths = arrow.value_lengths().to_numpy(zero_copy_only=False)
        if lengths.min() != lengths.max():
            raise ValueError(
                f"lists of different lengths ({lengths.min()}..{lengths.max()}) are not a matrix"
            )
        flat = arrow.flatten().to_numpy(zero_copy_only=False)
        return flat.astype(np.int64).reshape(len(column), int(lengths[0]))
    return np.array(
        [np.asarray(v, dtype=np.int64) for v in column.to_numpy()], dtype=np.int64
    ).reshape(len(column), -1)


def read_parquet(path) -> pd.DataFrame:
    """Read a table written by this project (Arrow list columns come back as numpy arrays).

    pandas cannot rebuild its own metadata for Arrow nested dtypes, so the catalog and this
    helper both read with ``ignore_metadata``.
    """
    return pd.read_parquet(path, to_pandas_kwargs={"ignore_metadata": True})
