"""Shared fixtures: paths into the project and the shipped default dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

import cart_pipeline  # noqa: F401 - first: it readies torchvision's import (core/compat.py)

# Nothing may reach a model hub, in tests least of all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = PROJECT_ROOT / "data" / "01_raw" / "tuxpaint"


def project_parameters(env: str = "base") -> dict:
    """The shipped parameters (conf/base, then ``env``), merged as a run merges them."""
    from kedro.config import OmegaConfigLoader

    from cart_pipeline.settings import CONFIG_LOADER_ARGS

    args = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **args)["parameters"]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def default_dataset() -> Path:
    return DEFAULT_DATASET


@pytest.fixture(scope="session")
def default_manifest() -> pd.DataFrame:
    return pd.read_csv(DEFAULT_DATASET / "manifest.csv", dtype=str, keep_default_na=False)
