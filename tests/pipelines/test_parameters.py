"""Parameters: one home per default, and every mistake refused in one line naming the key."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from cart_pipeline.core.config import ConfigError, settings_of
from cart_pipeline.pipelines.parameters import GROUPS, Group, Project, check_parameters
from tests.conftest import project_parameters

PARAMS = project_parameters()


def _groups(name: str, group: Group):
    yield name, group
    for nested, inner in group.nested.items():
        yield from _groups(f"{name}.{nested}", inner)


def _yaml(name: str) -> dict:
    values = PARAMS
    for part in name.split("."):
        values = values[part]
    return values


@pytest.mark.parametrize(
    "name, group",
    [("", Group((Project,))), *(g for n, grp in GROUPS.items() for g in _groups(n, grp))],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_setting_has_no_default_or_the_shipped_yamls_value(name, group):
    values = _yaml(name) if name else PARAMS
    for config in group.configs:
        fields = {f.name: f for f in dataclasses.fields(config)}
        for key in settings_of(config):
            assert key in values, f"{name}.{key} is a setting that the shipped YAML lacks"
            default = fields[key].default
            if default is dataclasses.MISSING:
                continue  # the YAML is its one home
            shipped = values[key]
            as_list = (lambda v: list(v)) if isinstance(default, tuple) else (lambda v: v)
            assert as_list(default) == shipped, (
                f"{config.__name__}.{key} defaults to {default!r}, the YAML to {shipped!r}"
            )


def test_the_shipped_parameters_pass():
    check_parameters(PARAMS)


def broken(path: str, value) -> dict:
    params = copy.deepcopy(PARAMS)
    *parents, leaf = path.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[leaf] = value
    return params


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("decoder_training.epoch", 2,
         r"decoder_training has no parameter 'epoch' \(did you mean 'epochs'\?\)"),
        ("sed", 3, r"unknown parameter 'sed' \(did you mean 'seed'\?\)"),
        ("decoder_training.soft_targets.topk", 3,
         r"decoder_training.soft_targets has no parameter 'topk' \(did you mean 'top_k'\?\)"),
        ("decoder_training.epochs", "abc", r"decoder_training.epochs must be a whole number, got 'abc'"),
        ("decoder_training.epochs", 0, r"decoder_training.epochs must be >= 1, got 0"),
        ("decoder_training.batch_size", 0, r"decoder_training.batch_size must be >= 1, got 0"),
        ("decoder_training.lr", -1, r"decoder_training.lr must be > 0, got -1"),
        ("decoder_training.dropout", 1.5, r"decoder_training.dropout must be < 1, got 1.5"),
        ("decoder_training.n_heads", 3,
         r"decoder_training: d_model \(256\) must be divisible by n_heads \(3\)"),
        ("decoder_training.by_modality.audio.epochs", -2,
         r"decoder_training.by_modality.audio.epochs must be >= 1, got -2"),
        ("decoder_training.by_modality.smell", {}, r"no parameter 'smell'"),
        ("modalities", ["image", "smell"], r"modalities has no parameter 'smell'"),
        ("modalities", "image", r"modalities must be a list of strings, got 'image'"),
        ("modalities", [], r"modalities is empty"),
        ("dataset_root", "", r"dataset_root is empty"),
        ("dataset_root", None, r"dataset_root must be a string, got None"),
        ("coarse_clustering.n_clusters", "many", r"coarse_clustering.n_clusters must be a whole number or 'auto'"),
        ("coarse_clustering.n_clusters", 1, r"coarse_clustering.n_clusters must be >= 2"),
        ("evaluation.beam_size", 5, r"beam_size \(5\) must be >= top_k \(20\)"),
        ("evaluation.pair_lookup.temperatures", [], r"temperatures must be a non-empty list"),
        ("captioning.heldout_query_matches", "keep", r"must be one of 'drop', 'fail'"),
        ("id_variant", "semantic", r"id_variant must be one of 'cart'"),
        ("device", "tpu", r"^device: device='tpu' is not one of auto, cpu"),
        ("decoder_training.device", "cuda:7", r"^decoder_training.device: device=cuda:7"),
        ("ingest", "all", r"ingest must be a mapping of parameters"),
    ],
)  # fmt: skip
def test_a_bad_parameter_is_one_line_naming_the_key_and_the_rule(path, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        check_parameters(broken(path, value))
    assert "\n" not in str(error.value)


def test_a_missing_group_or_key_is_named():
    params = copy.deepcopy(PARAMS)
    del params["decoder_training"]["lr"]
    with pytest.raises(ConfigError, match="decoder_training is missing 'lr'"):
        check_parameters(params)
    params = copy.deepcopy(PARAMS)
    del params["evaluation"]
    with pytest.raises(ConfigError, match="group 'evaluation' is missing"):
        check_parameters(params)
