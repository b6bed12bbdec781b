"""Parameter overrides merge key by key (issue #14, finding 1)."""

from __future__ import annotations

import shutil

from kedro.config import OmegaConfigLoader

from cart_pipeline.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT


def test_local_files_and_runtime_params_override_one_key_and_keep_the_group(tmp_path):
    shutil.copytree(PROJECT_ROOT / "conf" / "base", tmp_path / "base")
    (tmp_path / "local").mkdir()
    # what the README tells users to write, plus one decoder key
    (tmp_path / "local" / "parameters.yml").write_text(
        "modalities: [image]\ndecoder_training:\n  epochs: 3\n"
    )
    base = OmegaConfigLoader(str(tmp_path), base_env="base", default_run_env="base")["parameters"]
    params = OmegaConfigLoader(
        str(tmp_path),
        **CONFIG_LOADER_ARGS,
        runtime_params={"ingest": {"max_rejected_share": 0.5}, "decoder_training": {"lr": 0.01}},
    )["parameters"]
    assert params["modalities"] == ["image"]
    assert params["ingest"] == {**base["ingest"], "max_rejected_share": 0.5}
    assert params["decoder_training"] == {**base["decoder_training"], "epochs": 3, "lr": 0.01}
