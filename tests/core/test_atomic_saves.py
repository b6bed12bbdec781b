"""Saves that are all or nothing (cart_pipeline.io.atomic): a crash mid-write leaves no file
under the final name, so neither the next run nor `cart-search` reads a truncated table."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io.core import DatasetError, Version

from cart_pipeline.io import CSVDataset, JSONDataset, ParquetDataset

OLD, NEW = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


class Unwritable:
    """A cell pyarrow cannot convert: the write fails after the file was opened."""


def test_versioned_parquet_round_trip_loads_the_newest(tmp_path):
    path = str(tmp_path / "table.parquet")
    ParquetDataset(filepath=path, version=Version(None, OLD)).save(pd.DataFrame({"a": [1]}))
    ParquetDataset(filepath=path, version=Version(None, NEW)).save(pd.DataFrame({"a": [2]}))

    assert ParquetDataset(filepath=path, version=Version(None, None)).load().a.tolist() == [2]
    assert not list(tmp_path.rglob("*.partial"))


def test_a_parquet_save_that_fails_midway_leaves_no_new_version(tmp_path):
    path = str(tmp_path / "table.parquet")
    ParquetDataset(filepath=path, version=Version(None, OLD)).save(pd.DataFrame({"a": [1]}))

    with pytest.raises(DatasetError):
        ParquetDataset(filepath=path, version=Version(None, NEW)).save(
            pd.DataFrame({"a": [Unwritable()]})
        )

    assert not any((tmp_path / "table.parquet" / NEW).iterdir())
    assert ParquetDataset(filepath=path, version=Version(None, None)).load().a.tolist() == [1]


def test_an_unversioned_table_keeps_its_old_content_when_a_save_fails(tmp_path):
    path = str(tmp_path / "rejects.csv")
    CSVDataset(filepath=path, save_args={"index": False}).save(pd.DataFrame({"row": [1]}))

    class Exploding(pd.DataFrame):
        def to_csv(self, path_or_buf=None, **kwargs):
            path_or_buf.write("row\n")  # half a table...
            raise OSError("disk full")  # ...then the crash

    with pytest.raises(DatasetError, match="disk full"):
        CSVDataset(filepath=path, save_args={"index": False}).save(Exploding({"row": [2]}))

    assert (tmp_path / "rejects.csv").read_text() == "row\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rejects.csv"]


def test_json_round_trip(tmp_path):
    dataset = JSONDataset(filepath=str(tmp_path / "metrics.json"))
    dataset.save({"R@1": 0.5})
    assert dataset.load() == {"R@1": 0.5}


def test_a_versioned_dataset_copies_with_its_atomic_writes(tmp_path):
    # Kedro deep-copies a dataset to load a pinned version (catalog.load(name, version=...))
    import copy

    dataset = ParquetDataset(filepath=str(tmp_path / "t.parquet"), version=Version(None, OLD))
    dataset.save(pd.DataFrame({"a": [1]}))
    twin = copy.deepcopy(dataset)
    assert twin.load().a.tolist() == [1]
    assert isinstance(twin._fs, type(dataset._fs))
