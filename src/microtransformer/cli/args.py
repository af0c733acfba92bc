"""Argument types for ``mtx``: sizes and counts must be positive, text must be valid UTF-8.

argparse reports a bad value as a one-line error with exit code 2, before any
work starts, e.g. ``--max_piece_chars 0`` (which would otherwise never finish).

>>> positive_int("3")
3
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], requirement: str, name: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, then refuse values that are not ``ok``."""

    def parse(text: str) -> Any:
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    parse.__name__ = name
    return parse


#: A size or count: 1 or more.
positive_int = _checked(_int, lambda v: v >= 1, "at least 1", "positive_int")
#: A count where 0 means none (warmup steps, seeds, ``--top_k 0`` = no top-k).
nonneg_int = _checked(_int, lambda v: v >= 0, "0 or more", "nonneg_int")
positive_float = _checked(_float, lambda v: v > 0, "greater than 0", "positive_float")
nonneg_float = _checked(_float, lambda v: v >= 0, "0 or more", "nonneg_float")
#: A share in [0, 1).
fraction = _checked(_float, lambda v: 0.0 <= v < 1.0, "in [0, 1)", "fraction")
#: A probability mass in (0, 1] (``--top_p``).
probability = _checked(_float, lambda v: 0.0 < v <= 1.0, "in (0, 1]", "probability")


def utf8_text(text: str) -> str:
    """Text from the command line; bytes that are not UTF-8 (``$'\\xff'``) are refused, not passed on.

    Python hands such bytes over as lone surrogates (``'\\udcff'``), which no
    tokenizer can encode.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        try:
            bad = repr(text[exc.start : exc.end].encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            bad = ascii(text[exc.start : exc.end])
        raise argparse.ArgumentTypeError(f"is not valid UTF-8 ({bad} at character {exc.start}); pass UTF-8 text") from None
    return text


def add_config_flags(parser: Any, config_cls: type, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """One flag per field of a config dataclass; returns the field names.

    ``--name`` and ``--name-with-dashes``, the type from the annotation
    (a tuple field takes several values, ``X | None`` takes an X, a bool ``--name``/``--no-name``),
    the help from the field's ``metadata["help"]``. Every default is
    ``None``, meaning "not given": the config decides (see :func:`config_overrides`).
    """
    hints = typing.get_type_hints(config_cls)
    names = []
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        typ = hints[f.name]
        if typing.get_origin(typ) in (typing.Union, types.UnionType) and type(None) in typing.get_args(typ):
            typ = next(a for a in typing.get_args(typ) if a is not type(None))  # `X | None`: the flag takes an X
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_ = f.metadata.get("help", "") + (f" (default {shown})" if len(str(shown)) <= 40 else "")
        kwargs: dict[str, Any] = {"default": None, "help": help_, "dest": f.name}
        if typ is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(typ) is tuple:
            item = (typing.get_args(typ) or (int,))[0]
            kwargs["nargs"] = f.metadata.get("nargs", "+")  # metadata "nargs": "*" lets a tuple be empty
            kwargs["type"] = {int: _int, float: _float}.get(item, str)
            if item is int:
                kwargs["metavar"] = "N"
        else:
            kwargs["type"] = {int: _int, float: _float}.get(typ, str)
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        parser.add_argument(*flags, **kwargs)
        names.append(f.name)
    return names


def config_overrides(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The fields among ``names`` that were given on the command line."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}
