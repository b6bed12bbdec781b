"""The add_items nodes for a modality the new rows do not have (the README's plain `kedro run
--pipeline add_items` on images runs the audio and video namespaces too): every node passes
nothing along and the index comes back as it was; and an indexed id is a rejected row."""

from __future__ import annotations

import pandas as pd
import pytest

from cart_pipeline.core.manifest import ManifestError
from cart_pipeline.pipelines.add_items.nodes import (
    add_to_index,
    caption_new_items,
    encode_new_pairs,
    extract_new_features,
    select_new_items,
)
from cart_pipeline.pipelines.captioning.nodes import build_training_pairs
from tests.core.test_add_items import halves  # noqa: F401 (the fixture)

INGEST = {"split_seed": 2025, "test_fraction": 0.2, "max_rejected_share": 0.5}
CAPTIONING = {"pseudo_per_described_item": 0}


def manifest(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(item, modality, f"{item}.png", f"a picture of {item}") for item, modality in rows],
        columns=["item_id", "modality", "media_path", "text"],
    )


def test_a_modality_without_new_rows_leaves_its_index_as_it_was(halves):  # noqa: F811
    bundle, _, _ = halves
    rows = manifest([("new-sound", "audio")])
    candidates, queries, rejects = select_new_items(rows, rows, bundle, INGEST, "image")
    assert candidates.empty and queries.empty and rejects.empty
    no_rejects = pd.DataFrame(columns=["row", "item_id", "reason"])
    features, _ = extract_new_features(
        candidates, rows, no_rejects, rejects, INGEST, {}, "image", ".", "cpu"
    )
    pseudo, report = caption_new_items(bundle, candidates, queries, features, {}, {}, "image",
                                       ".", 0)  # fmt: skip
    assert pseudo.empty and report["items"] == 0
    pairs = build_training_pairs(queries, pseudo, CAPTIONING)
    grown, report = add_to_index(
        bundle, candidates, queries, features, pairs, encode_new_pairs(pairs, {}, "cpu"),
        {"decoder": "finetune"}, {}, {}, "image", 0, "cpu",
    )  # fmt: skip
    assert grown is bundle and report["items"] == 0


def test_an_id_the_index_holds_is_a_rejected_row_naming_its_manifest_row(halves):  # noqa: F811
    bundle, new_ids, _ = halves
    old_id = bundle["items"]["item_id"][3]
    rows = manifest([(new_ids[0], "image"), (old_id, "image")])
    candidates, _, rejects = select_new_items(rows, rows, bundle, INGEST, "image")
    assert candidates.item_id.tolist() == [new_ids[0]]
    assert rejects.to_dict("records") == [
        {"row": 2, "item_id": old_id,
         "reason": "item_id is already in the image index (add_items never overwrites)"}
    ]  # fmt: skip
    no_rejects = pd.DataFrame(columns=["row", "item_id", "reason"])
    with pytest.raises(ManifestError, match="1 of 2 manifest rows rejected"):  # above 10 %
        extract_new_features(candidates, rows, no_rejects, rejects,
                             {**INGEST, "max_rejected_share": 0.1}, {}, "image", ".", "cpu")  # fmt: skip
