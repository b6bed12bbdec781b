"""CLIP and CLAP end to end, from local files, with the README's own configuration lines.

Tiny randomly initialised models (tests/tiny_models.py) stand in for the user's weights, in
the same layouts under `models/`. A real `kedro run` on a slice then builds identifiers and a
decoder over their features and evaluates `zero_shot` beside CART; a second run lets the
decoder read the query through CLIP's text tower. Random weights: plumbing, never quality.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import FAST_PARAMS, KEDRO, copy_project, run

pytestmark = pytest.mark.slow  # real `kedro run`s

CART_SEARCH = str(Path(sys.executable).parent / "cart-search")


def readme_encoders() -> dict:
    """The configuration block of the README's "Your own encoders" section, parsed."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- encoders-config.*?```yaml\n(.*?)```\s*<!-- /encoders-config -->", readme, re.S
    )
    return yaml.safe_load(block.group(1))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from tests.tiny_models import tiny_clap, tiny_clip

    project = copy_project(tmp_path_factory.mktemp("aligned") / "project", n_videos=0)
    models = project / "models"  # where the README puts the user's weights
    tiny_clip(models)
    tiny_clap(models)
    return project


def metrics_of(project: Path) -> dict:
    [saved] = sorted((project / "data/08_reporting/metrics.json").glob("*/metrics.json"))[-1:]
    return json.loads(saved.read_text())


def test_clip_images_and_clap_audio_evaluate_zero_shot_beside_cart(project):
    config = readme_encoders()
    encoders = config["feature_extraction"]["encoders"]  # the media encoders alone, MiniLM queries
    (project / "conf/local/parameters.yml").write_text(
        yaml.safe_dump(
            {"modalities": ["image", "audio"], "feature_extraction": {"encoders": encoders}}
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(project / "empty-hub-cache")}  # fmt: skip
    result = run([KEDRO, "run", "--params", FAST_PARAMS], cwd=project, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    import pyarrow.parquet as pq

    for modality, dim in (("image", 32), ("audio", 8)):  # the tiny models' joint dimensions
        [features] = sorted(
            (project / f"data/04_feature/{modality}/candidate_features.parquet").glob("*/*")
        )
        table = pq.read_table(features)
        assert set(table.column("dim").to_pylist()) == {dim}
        assert table.num_rows > 0
        assert list((project / f"data/06_models/{modality}/cart_decoder.pt").glob("*/*"))
    metrics = metrics_of(project)
    for modality in ("image", "audio"):
        systems = metrics["by_modality"][modality]
        assert {"cart", "zero_shot", "dual_tower", "pair_lookup"} <= set(systems)
        assert 0 <= systems["zero_shot"]["R@1"] <= systems["zero_shot"]["R@10"] <= 1
        assert "cart_vs_zero_shot" in metrics["comparisons"][modality]
    assert "zero_shot" in metrics["overall"]
    assert "zero_shot" in (project / "data/08_reporting/report.html").read_text()
    assert not list((project / "empty-hub-cache").rglob("*"))  # nothing reached a hub


def test_the_decoder_reads_the_query_through_clips_text_tower(project):
    config = readme_encoders()["feature_extraction"]
    (project / "conf/local/parameters.yml").write_text(
        yaml.safe_dump({"modalities": ["image"], "feature_extraction": config})
    )
    result = run([KEDRO, "run", "--params", FAST_PARAMS], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]

    import torch

    [decoder] = sorted((project / "data/06_models/image/cart_decoder.pt").glob("*/*"))[-1:]
    checkpoint = torch.load(decoder, weights_only=True)
    assert checkpoint["config"]["text_layers"] == 3 and checkpoint["config"]["text_dim"] == 64
    assert checkpoint["extra"]["text_encoder"]["name"] == "open-clip-text"
    assert "zero_shot" in metrics_of(project)["by_modality"]["image"]

    found = run(
        [CART_SEARCH, "a brown hen", "--modality", "image", "--top-k", "3", "--json"], cwd=project
    )
    assert found.returncode == 0, found.stderr[-2000:]
    assert len(found.stdout.splitlines()) == 3
