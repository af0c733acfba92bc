"""Chunking: word-like pieces, capped length, lossless for any Unicode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microtransformer.errors import ConfigError, CorpusError
from microtransformer.autoencoder.chunking import chunk_text, count_chunks, iter_chunks, split_piece


def test_word_like_pieces() -> None:
    assert chunk_text("Hello world, 12345!") == [b"Hello", b" world", b",", b" ", b"123", b"45", b"!"]
    assert chunk_text("it's\n\nok") == [b"it", b"'s", b"\n\n", b"ok"]


def test_long_pieces_are_split_not_dropped() -> None:
    text = " " + "a" * 40
    chunks = chunk_text(text)
    assert [len(c) for c in chunks] == [16, 16, 9]
    assert b"".join(chunks) == text.encode()
    assert chunk_text(" internationalization", max_chunk_len=8) == [b" interna", b"tionaliz", b"ation"]


def test_multibyte_split_on_character_boundaries() -> None:
    text = "ü" * 20  # 2 bytes each
    chunks = chunk_text(text, max_chunk_len=5)
    assert all(len(c) <= 5 for c in chunks)
    for c in chunks:
        c.decode("utf-8")  # every part is valid UTF-8
    assert b"".join(chunks) == text.encode()


def test_character_wider_than_chunk_is_cut_bytewise() -> None:
    assert split_piece("😀", 3) == [b"\xf0\x9f\x98", b"\x80"]


def test_counts() -> None:
    counts = count_chunks(["the cat the dog", " the"])
    assert counts[b" the"] == 2 and counts[b"the"] == 1


def test_errors() -> None:
    with pytest.raises(ConfigError):
        chunk_text("x", max_chunk_len=0)
    with pytest.raises(CorpusError):
        chunk_text("a\ud800b")


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=20))
def test_lossless_and_capped_for_any_unicode(text: str, max_len: int) -> None:
    chunks = list(iter_chunks(text, max_chunk_len=max_len))
    assert b"".join(chunks) == text.encode("utf-8")
    assert all(1 <= len(c) <= max_len for c in chunks)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_custom_pattern_gaps_are_kept(text: str) -> None:
    chunks = chunk_text(text, pattern=r"\p{L}+")  # matches letters only; everything else is a gap
    assert b"".join(chunks) == text.encode("utf-8")
