"""A throw-away copy of the project on a small slice of the default dataset, run for real.

The copy shares the installed package but has its own conf/local (pointing `dataset_root`
at the slice), data/ and mlflow.db, so the tests never touch the developer's runs. One
`kedro run` trains the slice per session (`trained_template`); each test module then works on
its own copy of that trained project (`trained_project`), so no module sees what another did
to it and the modules pass in any order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import DEFAULT_DATASET, PROJECT_ROOT

KEDRO = str(Path(sys.executable).parent / "kedro")
# Small and fast, same code paths as the default run.
FAST_PARAMS = ",".join(
    [
        "decoder_training.epochs=3",
        "decoder_training.d_model=64",
        "decoder_training.n_layers=2",
        "decoder_training.n_heads=2",
        "rqvae_quantization.epochs=5",
        "dual_tower.epochs=3",
        "evaluation.report_examples=4",
    ]
)


TIMING_KEYS = {
    "qps_search",
    "qps_with_encoding",
    "search_seconds",
    "encoding_seconds",
    "rerank_seconds",
}


def run(
    args: list[str], cwd: Path, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**(env or os.environ), "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


ENV = {**os.environ, "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
JOURNAL = Path("data/09_tracking/runs")  # each run's journal (hooks.RunJournalHook)


def start(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [KEDRO, *args],
        cwd=project,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_at_node(project: Path, process: subprocess.Popen, node: str) -> dict:
    """SIGKILL the run while `node` runs (read from its journal); return the journal entry."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        entries = [json.loads(p.read_text()) for p in sorted((project / JOURNAL).glob("*.json"))]
        if entries and entries[-1]["pid"] == process.pid and entries[-1]["running"] == node:
            process.kill()
            process.wait(timeout=60)
            return json.loads((project / JOURNAL / f"{entries[-1]['session_id']}.json").read_text())
        assert process.poll() is None, (
            f"the run ended before {node}: {process.stderr.read()[-2000:]}"
        )
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"{node} never started")


def make_slice(root: Path, n_images: int = 36, n_audio: int = 18, n_videos: int = 16) -> Path:
    manifest = pd.read_csv(DEFAULT_DATASET / "manifest.csv", dtype=str, keep_default_na=False)
    counts = {"image": n_images, "audio": n_audio, "video": n_videos}
    rows = pd.concat(
        [
            rows.iloc[:: max(1, len(rows) // counts[modality])][: counts[modality]]
            for modality, rows in manifest.groupby("modality", sort=False)
            if counts[modality]
        ]
    )
    for path in rows.media_path:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEFAULT_DATASET / path, root / path)
    rows.to_csv(root / "manifest.csv", index=False)
    return root


def copy_project(
    root: Path,
    dataset: Path | None = None,
    n_images: int = 36,
    n_audio: int = 18,
    n_videos: int = 16,
) -> Path:
    """The project's conf/base and src in `root`, with conf/local pointing at `dataset` (a slice
    of the default dataset made there when not given)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", root / "conf" / "base")
    # kedro wants the source folder inside the project (the same code as the installed package)
    shutil.copytree(
        PROJECT_ROOT / "src",
        root / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    dataset = dataset or make_slice(
        root / "dataset", n_images=n_images, n_audio=n_audio, n_videos=n_videos
    )
    (root / "conf" / "local").mkdir(parents=True)
    (root / "conf" / "local" / "globals.yml").write_text(f"dataset_root: {dataset}\n")
    return root


def quality(metrics: dict) -> dict:
    """Every metrics.json entry but throughput and timings, which vary run to run."""
    groups = {**metrics["by_modality"], "overall": metrics["overall"]}
    return {
        (group, system, key): value
        for group, systems in groups.items()
        for system, values in systems.items()
        for key, value in values.items()
        if key not in TIMING_KEYS
    }


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`kedro run` (every stage) on the slice, once per session; modules get copies of it."""
    project = copy_project(tmp_path_factory.mktemp("template"))
    return project, run([KEDRO, "run", "--params", FAST_PARAMS], cwd=project)


@pytest.fixture(scope="module")
def trained_project(trained_template, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """This module's own copy of the trained project (and the `kedro run` that trained it)."""
    template, result = trained_template
    project = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(template, project, symlinks=True)
    return project, result
