"""Argument types for ``mtx``: sizes and counts must be positive, text must be valid UTF-8.

argparse reports a bad value as a one-line error with exit code 2, before any
work starts, e.g. ``--max_piece_chars 0`` (which would otherwise never finish).

>>> positive_int("3")
3
"""

from __future__ import annotations

import argparse
import math


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


def positive_int(text: str) -> int:
    """A size or count: 1 or more."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """A count where 0 means none (warmup steps, seeds, ``--top_k 0`` = no top-k)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def nonneg_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def fraction(text: str) -> float:
    """A share in [0, 1)."""
    value = _float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def probability(text: str) -> float:
    """A probability mass in (0, 1] (``--top_p``)."""
    value = _float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


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
