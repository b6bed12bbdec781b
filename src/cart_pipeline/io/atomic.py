"""Saves that are all or nothing: the file appears under its final name only once complete.

Kedro finds a versioned dataset's newest version by globbing its final file name, and an
unversioned one is simply overwritten; a process killed mid-write would otherwise leave a
truncated file that the next run or `cart-search` loads as if it were whole. Every write here
goes to a temporary file beside the final name, ``<name>.<pid>-<random>.partial`` (unique, so
two writers never share one), and is renamed into place on a clean close (a rename within one
folder is atomic on POSIX filesystems).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kedro.io.core import get_filepath_str
from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.text import TextDataset as _TextDataset

PARTIAL_SUFFIX = ".partial"


def partial_name(path: str) -> str:
    """A temporary name beside ``path`` that no other writer uses."""
    return f"{path}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write a whole local file or none of it (for outputs written outside the catalog)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(partial_name(str(path)))
    try:
        if isinstance(data, str):
            partial.write_text(data, encoding="utf-8")
        else:
            partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class AtomicWrites:
    """An fsspec filesystem whose write-mode ``open`` writes beside the target, then renames."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def __getattr__(self, name: str) -> Any:
        if name == "fs":  # not set yet: an object being copied (Kedro deep-copies datasets)
            raise AttributeError(name)
        return getattr(self.fs, name)

    @contextmanager
    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Iterator[Any]:
        if not any(flag in mode for flag in "wax"):
            with self.fs.open(path, mode, **kwargs) as stream:
                yield stream
            return
        partial = partial_name(path)
        try:
            with self.fs.open(partial, mode, **kwargs) as stream:
                yield stream
            self.fs.mv(partial, path)
        finally:
            if self.fs.exists(partial):
                self.fs.rm(partial)


class AtomicSaves:
    """Mixin for an fsspec-based Kedro dataset: its ``_fs`` writes through :class:`AtomicWrites`.

    A property, not an ``__init__`` override, so the dataset's own constructor (and Kedro's
    record of its arguments) stay exactly those of the kedro-datasets class.
    """

    @property
    def _fs(self) -> AtomicWrites:
        return self._atomic_fs

    @_fs.setter
    def _fs(self, fs: Any) -> None:
        self._atomic_fs = fs if isinstance(fs, AtomicWrites) else AtomicWrites(fs)


class ParquetDataset(AtomicSaves, _ParquetDataset):
    """kedro-datasets' ``pandas.ParquetDataset``, saved atomically."""


class CSVDataset(AtomicSaves, _CSVDataset):
    """kedro-datasets' ``pandas.CSVDataset``, saved atomically."""


class JSONDataset(AtomicSaves, _JSONDataset):
    """kedro-datasets' ``json.JSONDataset``, saved atomically."""


class TextDataset(AtomicSaves, _TextDataset):
    """kedro-datasets' ``text.TextDataset``, saved atomically (the HTML report)."""


class MatplotlibDataset(AtomicSaves, _MatplotlibDataset):
    """kedro-datasets' ``matplotlib.MatplotlibDataset``, saved atomically (the plots)."""


class ManifestDataset(CSVDataset):
    """The collection's manifest: kedro-datasets' CSV, read as UTF-8 or refused with the line
    and data row of the first byte that is not (pandas would name a position in its buffer)."""

    def load(self):
        import io

        import pandas as pd

        from cart_pipeline.core.textfile import decode_utf8

        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, mode="rb") as stream:
            text = decode_utf8(stream.read(), Path(path).name, header_lines=1)
        return pd.read_csv(io.StringIO(text), **self._load_args)
