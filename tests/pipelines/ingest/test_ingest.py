"""Ingest: validation of each kind of bad input, the split, and a SequentialRunner slice."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from cart_pipeline.core.manifest import (
    ManifestError,
    build_tables,
    check_rejected_share,
    split_of,
    validate_manifest,
)
from cart_pipeline.pipelines.ingest import create_pipeline

KNOWN = ["image", "audio", "video"]


@pytest.fixture
def small_dataset(
    tmp_path: Path, default_manifest: pd.DataFrame, default_dataset: Path
) -> tuple[Path, pd.DataFrame]:
    """A copy of 8 shipped images and 4 shipped sounds with their manifest rows."""
    rows = pd.concat(
        [
            default_manifest[default_manifest.modality == "image"].head(8),
            default_manifest[default_manifest.modality == "audio"].head(4),
        ]
    ).reset_index(drop=True)
    for path in rows.media_path:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(default_dataset / path, tmp_path / path)
    return tmp_path, rows


def validate(rows: pd.DataFrame, root: Path, max_share: float = 0.5):
    valid, rejected = validate_manifest(rows, root, KNOWN)
    check_rejected_share(len(rows), rejected, max_share)
    return valid, rejected


def test_good_manifest_is_ingested_whole(small_dataset):
    root, rows = small_dataset
    valid, rejected = validate(rows, root)
    assert rejected.empty
    assert len(valid) == len(rows)
    candidates, queries = build_tables(valid, seed=1, test_fraction=0.25)
    assert list(candidates.columns[:4]) == ["item_id", "modality", "media_path", "split"]
    assert candidates.item_id.is_unique
    assert set(queries.columns) == {"query_id", "item_id", "text", "split", "source"}
    assert (queries.source == "human").all()
    assert queries.query_id.is_unique
    # a query's split is its item's split
    merged = queries.merge(candidates[["item_id", "split"]], on="item_id", suffixes=("", "_item"))
    assert (merged.split == merged.split_item).all()


def test_missing_column_stops_the_run_naming_it(small_dataset):
    root, rows = small_dataset
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['media_path'\]"):
        validate(rows.drop(columns=["media_path"]), root)


def test_bad_rows_are_rejected_with_reasons_and_the_rest_ingested(small_dataset):
    root, rows = small_dataset
    rows = rows.copy()
    corrupt = root / "images" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    bad_audio = root / "audio" / "corrupt.ogg"
    bad_audio.write_bytes(b"OggS garbage")
    extra = pd.DataFrame(
        [
            {**rows.iloc[0].to_dict()},  # duplicate id
            {**rows.iloc[1].to_dict(), "item_id": "image:missing", "media_path": "images/nope.png"},
            {
                **rows.iloc[2].to_dict(),
                "item_id": "image:corrupt",
                "media_path": "images/corrupt.png",
            },
            {**rows.iloc[3].to_dict(), "item_id": "image:empty-text", "text": "   "},
            {
                **rows.iloc[8].to_dict(),
                "item_id": "audio:corrupt",
                "media_path": "audio/corrupt.ogg",
            },
            {**rows.iloc[4].to_dict(), "item_id": "image:odd", "modality": "smell"},
        ]
    )
    manifest = pd.concat([rows, extra], ignore_index=True)
    valid, rejected = validate(manifest, root)

    reasons = dict(zip(rejected.item_id, rejected.reason, strict=True))
    assert len(valid) == len(rows), "every good row is kept"
    assert reasons[rows.item_id[0]].startswith("duplicate item_id (first at row 1)")
    assert "not found" in reasons["image:missing"]
    assert "does not decode" in reasons["image:corrupt"]
    assert "does not decode" in reasons["audio:corrupt"]
    assert reasons["image:empty-text"] == "empty text"
    assert "unknown modality 'smell'" in reasons["image:odd"]
    # rows are 1-based manifest data rows
    assert rejected.set_index("item_id").row["image:missing"] == len(rows) + 2


def test_media_paths_outside_the_dataset_folder_are_rejected(small_dataset, tmp_path_factory):
    root, rows = small_dataset
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(root / rows.media_path[0], outside / "secret.png")  # a real, decodable image
    (root / "images" / "link.png").symlink_to(outside / "secret.png")
    (root / "images" / "link-inside.png").symlink_to(root / rows.media_path[1])
    escapes = {
        "image:dotdot": f"../{outside.name}/secret.png",
        "image:absolute": str(outside / "secret.png"),
        "image:symlink": "images/link.png",
        "image:windows-drive": "C:/Windows/win.ini",
        "image:etc": "../../../../../../etc/passwd",
    }
    extra = pd.DataFrame(
        [
            {**rows.iloc[0].to_dict(), "item_id": item_id, "media_path": path}
            for item_id, path in escapes.items()
        ]
        + [
            {
                **rows.iloc[1].to_dict(),
                "item_id": "image:symlink-inside",
                "media_path": "images/link-inside.png",
            }
        ]
    )
    valid, rejected = validate(pd.concat([rows, extra], ignore_index=True), root, max_share=0.5)

    reasons = dict(zip(rejected.item_id, rejected.reason, strict=True))
    assert set(reasons) == set(escapes), "only the escaping rows are rejected"
    assert (
        "is absolute" in reasons["image:absolute"]
        and "is absolute" in reasons["image:windows-drive"]
    )
    for item_id in ("image:dotdot", "image:symlink", "image:etc"):
        assert "outside the dataset folder" in reasons[item_id]
    assert "image:symlink-inside" in set(valid.item_id), "a symlink that stays inside is fine"


def test_too_many_rejects_stop_the_run_listing_rows(small_dataset):
    root, rows = small_dataset
    rows = rows.assign(text="")
    with pytest.raises(ManifestError, match=r"12 of 12 manifest rows rejected.*row 1 .*empty text"):
        validate(rows, root, max_share=0.1)


def test_split_is_deterministic_item_level_and_about_the_requested_share():
    keys = pd.Series([f"item-{i}" for i in range(5000)])
    first, again = split_of(keys, 7, 0.2), split_of(keys, 7, 0.2)
    assert first.equals(again)
    assert 0.18 < (first == "test").mean() < 0.22
    assert not first.equals(split_of(keys, 8, 0.2)), "the seed matters"
    # adding items does not move existing ones
    more = pd.concat([keys, pd.Series(["new-1", "new-2"])], ignore_index=True)
    assert split_of(more, 7, 0.2).head(5000).equals(first)


def test_validation_split_is_carved_beside_test_and_grows_to_enough_queries():
    keys = pd.Series([f"item-{i}" for i in range(1000)])
    split = split_of(keys, 7, 0.2, validation_fraction=0.1)
    assert split.equals(split_of(keys, 7, 0.2, validation_fraction=0.1))
    assert (split == "validation").sum() == 100, "exactly the requested share of items"
    assert split[split == "test"].index.equals(
        split_of(keys, 7, 0.2)[lambda s: s == "test"].index
    ), "test does not move"
    # a small corpus: 10 % would be 5 items; raised to 30 queries, never above the cap
    small = keys.head(50)
    assert (
        split_of(small, 7, 0.2, 0.1, min_validation_queries=30, max_validation_fraction=0.9)
        == "validation"
    ).sum() == 30
    assert (
        split_of(small, 7, 0.2, 0.1, min_validation_queries=30, max_validation_fraction=0.25)
        == "validation"
    ).sum() == 12
    # queries per item count: 3 queries an item -> 10 items hold 30 queries
    three = pd.Series(3, index=small.index)
    assert (
        split_of(small, 7, 0.2, 0.1, three, min_validation_queries=30, max_validation_fraction=0.9)
        == "validation"
    ).sum() == 10


def test_validation_folds_are_disjoint_blocks_over_the_same_test_split():
    keys = pd.Series([f"item-{i}" for i in range(1000)])
    folds = [split_of(keys, 7, 0.2, 0.1, validation_fold=k) for k in range(8)]
    assert folds[0].equals(split_of(keys, 7, 0.2, 0.1)), "fold 0 is the default split"
    for fold in folds[1:]:
        assert fold[fold == "test"].index.equals(folds[0][folds[0] == "test"].index)
        assert (fold == "validation").sum() == 100
    validation = [set(f.index[f == "validation"]) for f in folds]
    assert sum(len(v) for v in validation) == len(set().union(*validation)), "disjoint"
    # 8 blocks of 100 fit in the ~800 non-test items, a 9th does not
    with pytest.raises(
        ManifestError, match=r"validation_fold 8 does not exist: .*\(folds 0 to 7\)"
    ):
        split_of(keys, 7, 0.2, 0.1, validation_fold=8)


def test_splits_are_carved_per_modality_and_a_group_is_test_everywhere():
    valid = pd.DataFrame(
        {
            "item_id": [f"{m}:s{i}" for i in range(300) for m in ("image", "audio")][:400],
            "modality": (["image", "audio"] * 300)[:400],
            "media_path": "x",
            "text": "t",
            "group": [f"s{i}" for i in range(300) for _ in range(2)][:400],
        }
    )
    candidates, queries = build_tables(
        valid, seed=3, test_fraction=0.2, validation_fraction=0.1, min_validation_queries=30
    )
    counts = candidates.groupby(["modality", "split"]).size().unstack()
    assert (
        counts.loc["image", "validation"] == 30 and counts.loc["audio", "validation"] == 30
    )  # 10 % = 20 < 30
    group = candidates.item_id.str.split(":").str[1]
    test_groups = candidates[candidates.split == "test"].groupby(group).modality.nunique()
    paired = candidates.groupby(group).size() == 2
    assert (test_groups[paired.reindex(test_groups.index)] == 2).all()
    assert set(queries.split) == {"train", "validation", "test"}


def test_group_keeps_picture_and_sound_of_one_stamp_together():
    valid = pd.DataFrame(
        {
            "item_id": [f"{m}:s{i}" for i in range(200) for m in ("image", "audio")],
            "modality": ["image", "audio"] * 200,
            "media_path": "x",
            "text": "t",
            "group": [f"s{i}" for i in range(200) for _ in range(2)],
        }
    )
    candidates, _ = build_tables(valid, seed=3, test_fraction=0.3)
    by_group = (
        candidates.assign(group=candidates.item_id.str.split(":").str[1])
        .groupby("group")
        .split.nunique()
    )
    assert (by_group == 1).all()


def test_extra_text_columns_become_extra_human_queries(small_dataset):
    root, rows = small_dataset
    rows = rows.assign(text_2="another description", text_3="")
    valid, _ = validate(rows, root)
    _, queries = build_tables(valid, seed=1, test_fraction=0.2)
    assert len(queries) == 2 * len(rows)


def ingest_catalog(
    manifest: pd.DataFrame,
    root: Path,
    rejects: Path,
    modalities: tuple = ("image", "audio"),
    **ingest: Any,
) -> DataCatalog:
    from kedro_datasets.pandas import CSVDataset

    return DataCatalog(
        {
            "manifest": MemoryDataset(manifest),
            "rejected_items": CSVDataset(filepath=str(rejects), save_args={"index": False}),
            "params:ingest": MemoryDataset(
                {
                    "split_seed": 5,
                    "test_fraction": 0.2,
                    "validation_fraction": 0.1,
                    "min_validation_queries": 0,
                    "max_validation_fraction": 0.25,
                    "known_modalities": KNOWN,
                    "max_rejected_share": 0.1,
                    "check_media_decodes": True,
                    **ingest,
                }
            ),
            "params:dataset_root": MemoryDataset(str(root)),
            "params:modalities": MemoryDataset(list(modalities)),
        }
    )


def test_ingest_pipeline_slice_with_sequential_runner(small_dataset, tmp_path):
    root, rows = small_dataset
    catalog = ingest_catalog(rows, root, tmp_path / "rejected_items.csv")
    SequentialRunner().run(create_pipeline(), catalog)
    candidates = catalog["candidates"].load()
    queries = catalog["queries"].load()
    assert len(candidates) == 12 and len(queries) == 12
    assert catalog["rejected_items"].load().empty


def test_ingest_carves_the_validation_fold_it_is_given_and_keeps_the_test_split(
    small_dataset, tmp_path
):
    root, rows = small_dataset
    splits = []
    for fold in (0, 1):
        catalog = ingest_catalog(rows, root, tmp_path / "rejects.csv", validation_fold=fold)
        SequentialRunner().run(create_pipeline(), catalog)
        splits.append(catalog["candidates"].load().set_index("item_id").split)
    default, other = splits
    assert other[other == "test"].index.equals(default[default == "test"].index)
    assert (other == "validation").sum() == (default == "validation").sum() > 0
    assert not set(other.index[other == "validation"]) & set(default.index[default == "validation"])

    catalog = ingest_catalog(rows, root, tmp_path / "rejects.csv", validation_fold=9)
    with pytest.raises(ManifestError, match="image: validation_fold 9 does not exist"):
        SequentialRunner().run(create_pipeline(), catalog)


def test_a_fold_only_the_indexed_modality_has_leaves_the_others_on_the_default_split():
    keys = [f"s{i}" for i in range(100)]
    valid = pd.DataFrame(
        {
            "item_id": [f"image:{k}" for k in keys] + [f"audio:{k}" for k in keys[:4]],
            "modality": ["image"] * 100 + ["audio"] * 4,
            "media_path": "x",
            "text": "t",
        }
    )
    args = dict(seed=1, test_fraction=0.2, validation_fraction=0.1)
    default, _ = build_tables(valid, **args)
    with pytest.raises(ManifestError, match="audio: validation_fold 5 does not exist"):
        build_tables(valid, **args, validation_fold=5)

    fold5, _ = build_tables(valid, **args, validation_fold=5, indexed=["image"])
    image, audio = (fold5.modality == m for m in ("image", "audio"))
    assert fold5.split[audio].equals(default.split[audio])
    assert not fold5.split[image].equals(default.split[image])
    assert (fold5.split[image] == "validation").sum() == 10


def test_a_stopped_ingest_still_writes_this_runs_rejects(small_dataset, tmp_path):
    root, rows = small_dataset
    rejects = tmp_path / "rejected_items.csv"
    rejects.write_text("row,item_id,reason\n")  # a previous run's file: "no rejects"
    catalog = ingest_catalog(rows.assign(text=""), root, rejects)

    with pytest.raises(ManifestError, match="12 of 12 manifest rows rejected"):
        SequentialRunner().run(create_pipeline(), catalog)
    written = pd.read_csv(rejects)
    assert len(written) == 12 and (written.reason == "empty text").all()


def test_a_header_only_manifest_says_so(small_dataset, tmp_path):
    root, rows = small_dataset
    with pytest.raises(ManifestError, match="no data rows"):
        SequentialRunner().run(
            create_pipeline(), ingest_catalog(rows.head(0), root, tmp_path / "rejects.csv")
        )


def test_a_listed_modality_without_rows_stops_the_run_saying_how_to_fix_it(small_dataset, tmp_path):
    root, rows = small_dataset  # images and sounds, no video
    catalog = ingest_catalog(rows, root, tmp_path / "rejects.csv", ("image", "audio", "video"))

    # a list of two cannot go through --params (Kedro splits it at the comma): the file it is
    with pytest.raises(
        ManifestError, match=r"lists video.*set `modalities: \[image, audio\]` in conf/local"
    ):
        SequentialRunner().run(create_pipeline(), catalog)
    only_images = rows[rows.modality == "image"].reset_index(drop=True)
    catalog = ingest_catalog(only_images, root, tmp_path / "rejects2.csv", ("image", "video"))
    with pytest.raises(ManifestError, match=r'run with --params "modalities=\[image\]", or set'):
        SequentialRunner().run(create_pipeline(), catalog)
