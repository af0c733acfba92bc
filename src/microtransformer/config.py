"""Config dataclasses as JSON: one strict ``to_dict`` / ``from_dict`` pair for every config.

Configs travel inside checkpoints and config files as JSON. Loading one with a
field this version does not know is an error that lists the known fields: a
typo in a config file must not be silently ignored.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(JSONConfig):
...     size: int = 2
>>> Demo.from_dict({"size": 3}).to_dict()
{'size': 3}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from microtransformer.errors import ConfigError

C = TypeVar("C", bound="JSONConfig")


class JSONConfig:
    """Mixin for frozen dataclass configs (it adds no fields)."""

    def to_dict(self) -> dict[str, Any]:
        """Field values, JSON-ready (tuples become lists)."""
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields {unknown}; known fields are {sorted(known)}")
        return cls(**dict(data))
