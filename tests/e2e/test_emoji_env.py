"""The second shipped collection as its own Kedro environment, on a slice of it: every stage
runs under `--env emoji`, writes under its own data folder, and `cart-search --env emoji`
searches it, while the default collection's outputs stay untouched."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import FAST_PARAMS, KEDRO, copy_project, run

pytestmark = pytest.mark.slow  # a real `kedro run --env emoji`

EMOJI = PROJECT_ROOT / "data" / "01_raw" / "emoji"
CART_SEARCH = str(Path(sys.executable).parent / "cart-search")


def emoji_slice(root: Path, n: int = 60) -> Path:
    manifest = pd.read_csv(EMOJI / "manifest.csv", dtype=str, keep_default_na=False)
    rows = manifest.iloc[:: len(manifest) // n][:n]
    for path in rows.media_path:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EMOJI / path, root / path)
    rows.to_csv(root / "manifest.csv", index=False)
    return root


def test_the_emoji_environment_runs_on_its_own_data_and_is_searchable(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copytree(PROJECT_ROOT / "conf" / "emoji", project / "conf" / "emoji")
    dataset = emoji_slice(tmp_path / "emoji_slice")
    globals_yml = project / "conf" / "emoji" / "globals.yml"
    globals_yml.write_text(f"dataset_root: {dataset}\ndata_dir: data/emoji\n")

    result = run([KEDRO, "run", "--env", "emoji", "--params", FAST_PARAMS], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]

    [saved] = sorted((project / "data/emoji/08_reporting/metrics.json").glob("*/metrics.json"))
    metrics = json.loads(saved.read_text())
    assert set(metrics["by_modality"]) == {"image"}
    assert metrics["config"]["collection"] == "emoji_slice"
    assert {"cart", "pair_lookup", "dual_tower"} <= set(metrics["by_modality"]["image"])
    assert not (project / "data" / "08_reporting").exists()  # nothing of it under data/

    found = run(
        [CART_SEARCH, "--env", "emoji", "grinning face", "--top-k", "3", "--json",
         "--project", str(project)],
        cwd=project,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(hits) == 3 and all(h["item_id"].startswith("emoji:") for h in hits)
