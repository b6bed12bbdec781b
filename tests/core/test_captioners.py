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
