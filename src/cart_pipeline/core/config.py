"""Config dataclasses built from a parameter group.

The rule: a setting's default lives in the dataclass; the YAML parameter files override it
(and state the project's choice beside the reason). A group may hold keys for several
dataclasses (e.g. the decoder's model and its optimiser), so keys a dataclass does not have
are left to the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_params(cls: type[T], params: Mapping[str, Any], **fixed: Any) -> T:
    """``cls(**fixed, **{the params that are fields of cls})``, each cast to its default's type.

    Casting makes a CLI override like ``--params decoder_training.lr=1e-3`` (which YAML may
    read as a string) behave like the same value written in the parameters file.
    """
    kwargs = dict(fixed)
    for field in dataclasses.fields(cls):
        if field.name in fixed or field.name not in params:
            continue
        value, default = params[field.name], field.default
        if (
            value is not None
            and type(default) in (bool, int, float)
            and not isinstance(value, type(default))
        ):
            if isinstance(default, bool):
                value = (
                    str(value).lower() in ("1", "true", "yes")
                    if isinstance(value, str)
                    else bool(value)
                )
            else:
                value = type(default)(value)
        kwargs[field.name] = value
    return cls(**kwargs)
