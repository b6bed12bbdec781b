"""The checkpoint dataset: versioned round trip, safe loading, and saves that are all or nothing."""

from __future__ import annotations

import pickle

import pytest
import torch
from kedro.io.core import DatasetError, Version

from cart_pipeline.io import TorchCheckpointDataset


def dataset(tmp_path, save_version: str | None = None) -> TorchCheckpointDataset:
    return TorchCheckpointDataset(
        filepath=str(tmp_path / "decoder.pt"), version=Version(None, save_version)
    )


def test_versioned_round_trip_loads_the_newest(tmp_path):
    dataset(tmp_path, "2026-01-01T00.00.00.000Z").save({"format": "x", "weights": torch.ones(3)})
    dataset(tmp_path, "2026-01-02T00.00.00.000Z").save({"format": "x", "weights": torch.zeros(3)})

    assert torch.equal(dataset(tmp_path).load()["weights"], torch.zeros(3))


def test_a_save_that_fails_midway_leaves_no_new_version(tmp_path):
    dataset(tmp_path, "2026-01-01T00.00.00.000Z").save({"weights": torch.ones(3)})

    with pytest.raises(
        Exception, match="pickle|lambda"
    ):  # not picklable, after the tensor was written
        dataset(tmp_path, "2026-01-02T00.00.00.000Z").save(
            {"weights": torch.zeros(1000), "hook": lambda: 0}
        )

    newer = tmp_path / "decoder.pt" / "2026-01-02T00.00.00.000Z"
    assert not any(newer.glob("*")), "neither a truncated file nor its partial copy stays"
    assert torch.equal(dataset(tmp_path).load()["weights"], torch.ones(3))


def test_a_truncated_or_unsafe_checkpoint_names_its_file(tmp_path):
    good = dataset(tmp_path, "2026-01-01T00.00.00.000Z")
    good.save({"weights": torch.ones(3)})
    newest = tmp_path / "decoder.pt" / "2026-01-02T00.00.00.000Z" / "decoder.pt"
    newest.parent.mkdir()
    newest.write_bytes(b"")  # what a crash in a non-atomic writer leaves
    with pytest.raises(
        DatasetError, match=r"checkpoint .*2026-01-02T00.00.00.000Z/decoder.pt cannot be loaded"
    ):
        dataset(tmp_path).load()

    class Planted:
        def __reduce__(self):
            return (print, ("code ran",))

    newest.write_bytes(pickle.dumps({"weights": Planted()}, protocol=2))
    with pytest.raises(DatasetError, match="cannot be loaded"):
        dataset(tmp_path).load()


def test_only_dicts_are_saved(tmp_path):
    with pytest.raises(DatasetError, match="expected a checkpoint dict"):
        dataset(tmp_path, "2026-01-01T00.00.00.000Z").save(torch.ones(3))
