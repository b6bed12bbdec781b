"""Sharded feature extraction on a real Dask LocalCluster (2 worker processes): the same table
as the one-process path, and a resumed run re-encodes only the shards a crash left undone."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader

from cart_pipeline.core.tables import column_to_matrix
from cart_pipeline.pipelines.feature_extraction.nodes import extract_candidate_features
from cart_pipeline.settings import CONFIG_LOADER_ARGS
from tests.conftest import DEFAULT_DATASET, PROJECT_ROOT

pytestmark = pytest.mark.slow  # a Dask cluster of worker processes


@pytest.fixture(scope="module")
def corpus(default_manifest, tmp_path_factory):
    """10 shipped images (one of them corrupted) in a dataset folder of their own."""
    root = tmp_path_factory.mktemp("dataset")
    images = default_manifest[default_manifest.modality == "image"].iloc[::40].head(10)
    for media_path in images.media_path:
        (root / media_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEFAULT_DATASET / media_path, root / media_path)
    (root / images.media_path.iloc[6]).write_bytes(b"not an image")
    candidates = pd.DataFrame(
        {"item_id": images.item_id, "media_path": images.media_path, "modality": "image"}
    ).reset_index(drop=True)
    return candidates, root


def _params(folder, shard_size):
    params = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    sharding = {"shard_size": shard_size, "n_workers": 2, "scheduler": None, "folder": str(folder)}
    return {**params["feature_extraction"], "sharding": sharding, "decode_threads": 0}


def test_shards_give_the_one_process_table_and_a_crash_resumes_only_unfinished_shards(
    corpus, tmp_path
):
    candidates, root = corpus
    one_table, one_rejects = extract_candidate_features(
        candidates, _params(tmp_path, None), "image", str(root), "cpu"
    )
    params = _params(tmp_path / "shards", 4)  # 10 items: shards of 4, 4 and 2
    table, rejects = extract_candidate_features(candidates, params, "image", str(root), "cpu")

    assert table.columns.tolist() == one_table.columns.tolist()
    assert table.item_id.tolist() == one_table.item_id.tolist()  # corpus order, reject dropped
    np.testing.assert_allclose(
        column_to_matrix(table.embedding), column_to_matrix(one_table.embedding), atol=1e-5
    )
    assert table.class_top.map(list).tolist() == one_table.class_top.map(list).tolist()
    assert rejects.item_id.tolist() == one_rejects.item_id.tolist() == [candidates.item_id[6]]

    parts = sorted((tmp_path / "shards" / "image").glob("*.features.parquet"))
    assert len(parts) == 3
    # What a crash in the middle leaves: whole parts only (atomic saves), the second one missing
    written = {part: part.stat().st_mtime_ns for part in parts}
    parts[1].unlink()
    resumed, resumed_rejects = extract_candidate_features(
        candidates, params, "image", str(root), "cpu"
    )
    assert parts[1].exists()
    assert [parts[0].stat().st_mtime_ns, parts[2].stat().st_mtime_ns] == [
        written[parts[0]],
        written[parts[2]],
    ]  # finished shards were not encoded again
    pd.testing.assert_frame_equal(resumed, table)
    pd.testing.assert_frame_equal(resumed_rejects, rejects)

    # a changed media file names a new part: nothing computed from the old file is reused
    (root / candidates.media_path[0]).write_bytes((root / candidates.media_path[1]).read_bytes())
    changed, _ = extract_candidate_features(candidates, params, "image", str(root), "cpu")
    assert len(list((tmp_path / "shards" / "image").glob("*.features.parquet"))) == 4
    np.testing.assert_allclose(
        column_to_matrix(changed.embedding)[0], column_to_matrix(changed.embedding)[1], atol=1e-5
    )
