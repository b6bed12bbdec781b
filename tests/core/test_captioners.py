"""Captioners with nothing to learn from say so for every item instead of failing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cart_pipeline.core.captioners import CAPTIONERS
from cart_pipeline.core.captioners.context import CAPTION_COLUMNS, CaptionContext


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("knn_transfer", "no human queries of train items"),
        ("dual_tower_retrieval", "no human queries of train items"),
        ("imagenet_labels", "no ImageNet predictions"),
    ],
)
def test_a_captioner_with_no_source_skips_every_item_with_its_reason(name, why):
    candidates = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "modality": "image",
            "media_path": ["a.png", "b.png", "c.png"],
            "split": ["train", "train", "test"],
        }
    )
    context = CaptionContext(
        candidates,
        np.eye(3, dtype=np.float32),
        pd.DataFrame(columns=["item_id", "text"]),  # no human train queries, no class head
        text_encoder=object(),  # never called: there is nothing to encode
    )

    captions, skipped = CAPTIONERS[name](context, n=2)

    assert captions.empty and list(captions.columns) == CAPTION_COLUMNS
    assert [item for item, _ in skipped] == ["a", "b", "c"]
    assert all(why in reason for _, reason in skipped)


def test_the_blip_captioner_runs_on_a_local_checkpoint(tmp_path, default_dataset, default_manifest):
    """A random tiny BLIP saved as a user's checkpoint folder: captions come back for each
    readable image, an unreadable one is reported (random weights: plumbing, not quality)."""
    from cart_pipeline.core.captioners.blip import blip_captions
    from cart_pipeline.core.captioners.context import CaptionContext
    from tests.tiny_models import tiny_blip

    folder = tiny_blip(tmp_path / "models")
    images = default_manifest[default_manifest.modality == "image"].head(3)
    candidates = images[["item_id", "media_path"]].assign(split="train").reset_index(drop=True)
    candidates.loc[2, "media_path"] = "not/there.jpg"
    context = CaptionContext(
        candidates.assign(modality="image"),
        features=np.zeros((3, 4), np.float32),
        train_queries=pd.DataFrame(columns=["item_id", "text"]),
        dataset_root=default_dataset,
    )
    captions, problems = blip_captions(context, n=2, model_path=str(folder), max_new_tokens=6)
    assert set(captions.item_id) <= set(candidates.item_id[:2]) and len(captions) >= 2
    assert (captions.source == "pseudo:blip").all() and captions.text.str.len().gt(0).all()
    assert [item for item, _ in problems] == [candidates.item_id[2]]
