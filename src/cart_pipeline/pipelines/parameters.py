"""Every parameter of a run, checked in one place before any node runs.

``check_parameters`` walks the run's merged parameters (conf/base, the run's environment and
its ``--params``) against the declared groups below: an unknown key is refused with the
closest valid names, a value of the wrong type or out of its range with the rule it breaks.
Each failure is one :class:`ConfigError` line naming the key (`hooks.ParametersHook` raises it
from `after_context_created`, so nothing has run or been written yet).

What each key accepts is declared once, on a dataclass field (``core.config.setting``): the
configs the stages build (``DecoderConfig``, ``TrainConfig``, ``RQVAEConfig``,
``DualTowerConfig``) carry their own; the groups whose nodes read plain values are declared
here, without defaults (the YAML is their one home).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cart_pipeline.core.add_items import DECODER_UPDATES, Finetune
from cart_pipeline.core.config import ConfigError, check_value, setting, settings_of
from cart_pipeline.core.decoder import DecoderConfig, TrainConfig
from cart_pipeline.core.errors import InputError
from cart_pipeline.core.quantize.rqvae import RQVAEConfig
from cart_pipeline.core.retrieval.dual_tower import DualTowerConfig

MODALITIES = ("image", "audio", "video")
ID_VARIANTS = ("cart", "rqvae_only", "hierarchical_kmeans", "atomic")


@dataclass(frozen=True)
class Project:
    """parameters.yml: what every stage shares."""

    seed: int = setting()
    dataset_root: str = setting()
    modalities: list[str] = setting()
    id_variant: str = setting(choices=ID_VARIANTS)
    device: str = setting()
    num_threads: int = setting(ge=1)
    run_label: str = setting()


@dataclass(frozen=True)
class Ingest:
    split_seed: int = setting()
    test_fraction: float = setting(gt=0, lt=1)
    validation_fraction: float = setting(ge=0, lt=1)
    min_validation_queries: int = setting(ge=0)
    max_validation_fraction: float = setting(ge=0, lt=1)
    validation_fold: int = setting(ge=0)
    known_modalities: list[str] = setting()
    max_rejected_share: float = setting(ge=0, le=1)
    check_media_decodes: bool = setting()


@dataclass(frozen=True)
class FeatureExtraction:
    encoders: dict = setting()  # modality -> {name: <ENCODERS key>, **kwargs}
    text_encoder: dict = setting()  # {name: ..., **kwargs}
    batch_size: int = setting(ge=1)
    decode_threads: int = setting(ge=0)
    class_top_k: int = setting(ge=1)


@dataclass(frozen=True)
class Sharding:
    shard_size: int | None = setting(ge=1)
    n_workers: int = setting(ge=1)
    scheduler: str | None = setting()
    folder: str = setting()


@dataclass(frozen=True)
class Captioning:
    captioners: dict = setting()  # modality -> [{name: <CAPTIONERS key>, n: ..., **kwargs}]
    heldout_query_matches: str = setting(choices=("drop", "fail"))
    spare_captions: int = setting(ge=0)
    pseudo_per_described_item: int | None = setting(ge=0)


@dataclass(frozen=True)
class CoarseClustering:
    n_clusters: int | Literal["auto"] = setting(ge=2)
    method: str = setting(choices=("auto", "full", "minibatch", "faiss"))


@dataclass(frozen=True)
class Codebook:
    codebook_size: int | Literal["auto"] = setting(ge=2)


@dataclass(frozen=True)
class IdAssignment:
    plot_clusters_outlined: int = setting(ge=0)
    tsne_perplexity: float = setting(gt=0)


@dataclass(frozen=True)
class SoftTargets:
    source: str = setting(choices=("dual_tower",))
    top_k: int = setting(ge=1)
    temperature: float | None = setting(gt=0)


@dataclass(frozen=True)
class Distributed:
    nproc: int = setting(ge=1)


@dataclass(frozen=True)
class Evaluation:
    top_k: int = setting(ge=1)
    beam_size: int = setting(ge=1)
    batch_size: int = setting(ge=1)
    int8: bool = setting()
    validation_ranks: bool = setting()
    bootstrap_samples: int = setting(ge=0)
    report_examples: int = setting(ge=0)
    register_model: bool = setting()


@dataclass(frozen=True)
class PairLookupParams:
    temperatures: list[float] = setting()


@dataclass(frozen=True)
class AddItems:
    manifest: str = setting()
    decoder: str = setting(choices=DECODER_UPDATES)


@dataclass(frozen=True)
class Group:
    """A parameter group: the configs whose settings are its keys, its nested groups, and
    whether it may hold `by_modality` overrides and a `device` of its own."""

    configs: tuple[type, ...]
    nested: Mapping[str, Group] = field(default_factory=dict)
    by_modality: bool = False
    device: bool = False
    rules: tuple[Callable[[Mapping[str, Any]], str | None], ...] = ()


def _heads_divide_width(values: Mapping[str, Any]) -> str | None:
    d, heads = values.get("d_model"), values.get("n_heads")
    if isinstance(d, int) and isinstance(heads, int) and heads and d % heads:
        return f"d_model ({d}) must be divisible by n_heads ({heads})"
    return None


def _beam_holds_top_k(values: Mapping[str, Any]) -> str | None:
    top_k, beam = values.get("top_k"), values.get("beam_size")
    if isinstance(top_k, int) and isinstance(beam, int) and beam < top_k:
        return f"beam_size ({beam}) must be >= top_k ({top_k}): the beams are the ranked results"
    return None


def _temperatures(values: Mapping[str, Any]) -> str | None:
    temps = values.get("temperatures")
    if isinstance(temps, list) and (not temps or min(temps) <= 0):
        return f"temperatures must be a non-empty list of numbers > 0, got {temps!r}"
    return None


GROUPS: dict[str, Group] = {
    "ingest": Group((Ingest,)),
    "feature_extraction": Group(
        (FeatureExtraction,), nested={"sharding": Group((Sharding,))}, device=True
    ),
    "captioning": Group((Captioning,)),
    "dual_tower": Group((DualTowerConfig,), device=True),
    "coarse_clustering": Group((CoarseClustering,), by_modality=True),
    "rqvae_quantization": Group((RQVAEConfig, Codebook), by_modality=True, device=True),
    "id_assignment": Group((IdAssignment,)),
    "decoder_training": Group(
        (DecoderConfig, TrainConfig),
        nested={"soft_targets": Group((SoftTargets,)), "distributed": Group((Distributed,))},
        by_modality=True,
        device=True,
        rules=(_heads_divide_width,),
    ),
    "evaluation": Group(
        (Evaluation,),
        nested={"pair_lookup": Group((PairLookupParams,), rules=(_temperatures,))},
        device=True,
        rules=(_beam_holds_top_k,),
    ),
    "add_items": Group((AddItems,), nested={"finetune": Group((Finetune,))}),
}


def _unknown(key: str, where: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(sorted(valid))}"
    place = f"{where} has no parameter" if where else "unknown parameter"
    return ConfigError(f"{place} {key!r} ({hint})")


def _check_group(name: str, values: Any, group: Group, partial: bool = False) -> None:
    """``values`` against ``group``; ``partial`` (a `by_modality` entry): keys may be missing."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name} must be a mapping of parameters, got {values!r}")
    declared = {k: v for config in group.configs for k, v in settings_of(config).items()}
    valid = [*declared, *group.nested, *(["by_modality"] * group.by_modality),
             *(["device"] * group.device)]  # fmt: skip
    for key, value in values.items():
        if key not in valid:
            raise _unknown(key, name, valid)
        if key in declared:
            check_value(f"{name}.{key}", value, *declared[key])
        elif key in group.nested:
            _check_group(f"{name}.{key}", value, group.nested[key], partial)
        elif key == "device":
            _check_device(f"{name}.device", value)
        elif key == "by_modality":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name}.by_modality must be a mapping of modalities")
            for modality, overrides in value.items():
                if modality not in MODALITIES:
                    raise _unknown(modality, f"{name}.by_modality", list(MODALITIES))
                _check_group(f"{name}.by_modality.{modality}", overrides or {}, group, True)
    missing = [k for k in [*declared, *group.nested] if k not in values]
    if missing and not partial:
        raise ConfigError(f"{name} is missing {', '.join(map(repr, missing))}")
    for rule in group.rules:
        problem = rule(values)
        if problem:
            raise ConfigError(f"{name}: {problem}")


def _check_device(key: str, value: Any) -> None:
    from cart_pipeline.core.device import resolve_device

    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string (cpu, cuda, cuda:N, mps or auto), got {value!r}")
    try:
        resolve_device(value)
    except InputError as error:  # unknown, or not available on this machine
        raise ConfigError(f"{key}: {error}") from None


def check_parameters(params: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first parameter the run cannot use."""
    declared = settings_of(Project)
    valid = [*declared, *GROUPS, *MODALITIES]
    for key in params:
        if key not in valid:
            raise _unknown(key, "", valid)
    for key, (hint, rules) in declared.items():
        if key not in params:
            raise ConfigError(f"the parameter {key!r} is missing (conf/base/parameters.yml)")
        check_value(key, params[key], hint, rules)
    _check_device("device", params["device"])
    if not params["dataset_root"].strip():
        raise ConfigError("dataset_root is empty: set it to the folder holding manifest.csv")
    modalities = params["modalities"]
    if not modalities:
        raise ConfigError("modalities is empty: list at least one of " + ", ".join(MODALITIES))
    for modality in modalities:
        if modality not in MODALITIES:
            raise _unknown(modality, "modalities", list(MODALITIES))
    if len(set(modalities)) < len(modalities):
        raise ConfigError(f"modalities lists a modality twice: {modalities}")
    for modality in MODALITIES:  # namespaced pipelines read params:<modality>.modality
        if params.get(modality, {"modality": modality}) != {"modality": modality}:
            raise ConfigError(f"{modality} must be {{modality: {modality}}} (set by the project)")
    for name, group in GROUPS.items():
        if name not in params:
            raise ConfigError(f"the parameter group {name!r} is missing (conf/base)")
        _check_group(name, params[name], group)
