"""Cut text into word-like byte chunks for the auto-encoder tokenizer.

Why chunks: the auto-encoder maps one chunk to one code (one token), so a
chunk must be short enough for a fixed-width decoder (``max_chunk_len``
bytes, 16 by default) and word-like enough that frequent chunks repeat. The
GPT-4 split pattern gives the word-like pieces (``" hello"``, ``","``,
``"123"``); any piece longer than ``max_chunk_len`` UTF-8 bytes is cut into
consecutive parts, preferring character boundaries so every part stays valid
UTF-8. Nothing is ever dropped::

    b"".join(chunk_text(s)) == s.encode("utf-8")    # for every str s

>>> chunk_text("Hello world, 12345!")
[b'Hello', b' world', b',', b' ', b'123', b'45', b'!']
>>> chunk_text(" internationalization", max_chunk_len=8)
[b' interna', b'tionaliz', b'ation']

Importing this module does not import torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import regex

from microtransformer.errors import ConfigError, CorpusError
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

__all__ = [
    "DEFAULT_MAX_CHUNK_LEN",
    "chunk_text",
    "count_chunks",
    "iter_chunks",
    "split_piece",
]

DEFAULT_MAX_CHUNK_LEN = 16

_COMPILED: dict[str, regex.Pattern[str]] = {}


def _compiled(pattern: str) -> regex.Pattern[str]:
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = regex.compile(pattern)
    return compiled


def _check_max_len(max_chunk_len: int) -> None:
    if not isinstance(max_chunk_len, int) or max_chunk_len < 1:
        raise ConfigError(f"max_chunk_len must be a positive int (16 is the default), got {max_chunk_len!r}")


def _encode(piece: str) -> bytes:
    try:
        return piece.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CorpusError(
            f"text contains a character that is not valid UTF-8 ({exc.reason}: {piece[exc.start:exc.end]!r}); "
            "lone surrogates cannot be tokenized, clean the text or read files with errors='replace'"
        ) from None


def split_piece(piece: str, max_chunk_len: int = DEFAULT_MAX_CHUNK_LEN) -> list[bytes]:
    """UTF-8 bytes of ``piece`` cut into parts of at most ``max_chunk_len`` bytes.

    Parts end on character boundaries; only a single character wider than
    ``max_chunk_len`` (possible when ``max_chunk_len < 4``) is cut mid-character.
    """
    data = _encode(piece)
    if len(data) <= max_chunk_len:
        return [data] if data else []
    if data.isascii():  # fast path: one byte per character
        return [data[i : i + max_chunk_len] for i in range(0, len(data), max_chunk_len)]
    parts: list[bytes] = []
    current = bytearray()
    for ch in piece:
        b = ch.encode("utf-8")
        if len(current) + len(b) > max_chunk_len and current:
            parts.append(bytes(current))
            current.clear()
        if len(b) > max_chunk_len:  # one character wider than a chunk
            for i in range(0, len(b), max_chunk_len):
                parts.append(b[i : i + max_chunk_len])
            continue
        current += b
    if current:
        parts.append(bytes(current))
    return parts


def iter_chunks(
    text: str, *, max_chunk_len: int = DEFAULT_MAX_CHUNK_LEN, pattern: str = GPT4_SPLIT_PATTERN
) -> Iterator[bytes]:
    """Yield the chunks of ``text`` in order; their concatenation is ``text.encode()``.

    Text the pattern does not match (the GPT-4 pattern matches everything, a
    custom one may not) is emitted as chunks too, so nothing is lost.
    """
    _check_max_len(max_chunk_len)
    compiled = _compiled(pattern)
    pos = 0
    for m in compiled.finditer(text):
        start, end = m.span()
        if start > pos:
            yield from split_piece(text[pos:start], max_chunk_len)
        if end > start:
            yield from split_piece(m.group(), max_chunk_len)
        pos = end
    if pos < len(text):
        yield from split_piece(text[pos:], max_chunk_len)


def chunk_text(
    text: str, *, max_chunk_len: int = DEFAULT_MAX_CHUNK_LEN, pattern: str = GPT4_SPLIT_PATTERN
) -> list[bytes]:
    """List form of :func:`iter_chunks`."""
    return list(iter_chunks(text, max_chunk_len=max_chunk_len, pattern=pattern))


def count_chunks(
    documents: Iterable[str], *, max_chunk_len: int = DEFAULT_MAX_CHUNK_LEN, pattern: str = GPT4_SPLIT_PATTERN
) -> Counter[bytes]:
    """Occurrence count of every chunk over ``documents``."""
    counts: Counter[bytes] = Counter()
    for doc in documents:
        counts.update(iter_chunks(doc, max_chunk_len=max_chunk_len, pattern=pattern))
    return counts
