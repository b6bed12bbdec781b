"""Settings: dataclass fields a parameter group sets, with their types and ranges.

One home per default: a field that a parameters file sets (``setting(...)``) either has no
default, so the YAML must give it, or a default equal to the shipped YAML
(tests/pipelines/test_parameters.py holds the two together). What a field accepts is declared
beside it (``ge``, ``gt``, ``lt``, ``le``, ``choices``) and checked by :func:`check_value`, once
for the whole configuration before any node runs (pipelines/parameters.py) and again whenever a
config is built from a parameter group (:func:`from_params`), so a bad value is one line naming
the key and the rule, never a traceback from deep inside training.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from cart_pipeline.core.errors import InputError

T = TypeVar("T")
_BOUNDS = {"ge": (">=", operator.ge), "gt": (">", operator.gt),
           "le": ("<=", operator.le), "lt": ("<", operator.lt)}  # fmt: skip


class ConfigError(InputError):
    """A parameter the run cannot use: unknown, of the wrong type or out of range."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
) -> Any:
    """A dataclass field that a parameter group sets under its own name, and what it accepts."""
    rules = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    metadata = {"setting": {k: v for k, v in rules.items() if v is not None}}
    return dataclasses.field(default=default, metadata=metadata)


def settings_of(cls: type) -> dict[str, tuple[Any, dict]]:
    """The fields of ``cls`` that parameters set: name -> (type hint, rules)."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: (hints[f.name], f.metadata["setting"])
        for f in dataclasses.fields(cls)
        if "setting" in f.metadata
    }


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (list, tuple):
        plural = {int: "whole numbers", float: "numbers", str: "strings", bool: "true/false"}
        return f"a list of {plural.get(args[0], _type_name(args[0]))}" if args else "a list"
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, "a mapping" if origin is dict or hint is dict else str(hint))


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_fits(value, arm) for arm in args)
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, Mapping)
    return isinstance(value, hint)


def check_value(key: str, value: Any, hint: Any, rules: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``value`` is of type ``hint`` and keeps
    ``rules`` (bounds apply to numbers only: ``'auto'`` or ``null`` pass them)."""
    if not _fits(value, hint):
        raise ConfigError(f"{key} must be {_type_name(hint)}, got {value!r}")
    if "choices" in rules and value not in rules["choices"]:
        allowed = ", ".join(map(repr, rules["choices"]))
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for name, (sign, holds) in _BOUNDS.items():
        if name in rules and not holds(value, rules[name]):
            raise ConfigError(f"{key} must be {sign} {rules[name]}, got {value!r}")


def check_settings(config: Any, group: str = "") -> None:
    """Check every setting of a config dataclass instance (call it from ``__post_init__``)."""
    for name, (hint, rules) in settings_of(type(config)).items():
        check_value(f"{group}.{name}" if group else name, getattr(config, name), hint, rules)


def from_params(cls: type[T], params: Mapping[str, Any], group: str = "", **fixed: Any) -> T:
    """``cls(**fixed, **{the settings of cls that params holds})``, each checked first. A group
    may hold keys for several configs (the decoder's model and its optimiser), so keys that are
    not settings of ``cls`` are left to the others. Integers stand for floats."""
    kwargs = dict(fixed)
    for name, (hint, rules) in settings_of(cls).items():
        if name in fixed or name not in params:
            continue
        value = params[name]
        check_value(f"{group}.{name}" if group else name, value, hint, rules)
        if hint is float and isinstance(value, int):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)
