"""The checkpoint dataset: versioned round trip, safe loading, and saves that are all or nothing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from kedro.io.core import DatasetError, Version

from cart_pipeline.core.checkpoint import to_checkpoint
from cart_pipeline.core.decoder import CartDecoder, DecoderConfig
from cart_pipeline.core.decoder.checkpoint import decoder_from_checkpoint, decoder_to_checkpoint
from cart_pipeline.core.quantize.rqvae import (
    RQVAE,
    RQVAEConfig,
    rqvae_from_checkpoint,
    rqvae_to_checkpoint,
)
from cart_pipeline.core.retrieval.dual_tower import (
    DualTower,
    DualTowerConfig,
    dual_tower_from_checkpoint,
    dual_tower_to_checkpoint,
)
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


def test_every_model_uses_one_convention_and_refuses_another_models_checkpoint(tmp_path):
    """RQ-VAE, dual tower and decoder checkpoints are format-tagged plain dicts: each loads
    under weights_only=True and each loader names the format it found in a foreign one."""
    writers_and_readers = {
        "cart-rqvae/1": (
            rqvae_to_checkpoint(
                RQVAE(RQVAEConfig(codebook_size=8, input_dim=8, latent_dim=4, hidden_dims=(8,)))
            ),
            rqvae_from_checkpoint,
        ),
        "cart-dual-tower/1": (
            dual_tower_to_checkpoint(
                DualTower(DualTowerConfig(text_dim=4, item_dim=6, embed_dim=4, hidden_dim=8)),
                {"item_ids": ["a", "b"], "history": [{"epoch": 1, "val_mrr10": 0.5}]},
            ),
            dual_tower_from_checkpoint,
        ),
        "cart-decoder/1": (
            decoder_to_checkpoint(
                CartDecoder(
                    DecoderConfig(
                        vocab_size=6,
                        position_ranges=[(0, 3), (3, 6)],
                        text_dim=4,
                        text_layers=1,
                        n_layers=1,
                        d_model=8,
                        n_heads=2,
                    )
                )
            ),
            decoder_from_checkpoint,
        ),
    }
    for i, (tag, (checkpoint, _)) in enumerate(writers_and_readers.items()):
        assert checkpoint["format"] == tag and set(checkpoint) == {
            "format",
            "config",
            "state_dict",
            "extra",
        }
        saved = dataset(tmp_path, f"2026-01-0{i + 1}T00.00.00.000Z")
        saved.save(checkpoint)
        loaded = dataset(tmp_path).load()  # the newest: weights_only, no allow-list
        for other_tag, (_, reader) in writers_and_readers.items():
            if other_tag == tag:
                reader(loaded)
            else:
                with pytest.raises(
                    ValueError, match=f"expected a {other_tag} checkpoint, found format '{tag}'"
                ):
                    reader(loaded)
    with pytest.raises(TypeError, match="extra.item_ids: ndarray"):
        to_checkpoint("x/1", {}, torch.nn.Linear(1, 1), {"item_ids": np.array(["a"])})
