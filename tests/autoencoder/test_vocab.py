"""Choosing the auto-encoder tokenizer's vocabulary: candidates, verification, compression-driven pruning."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import pytest
import torch

from microtransformer.errors import ConfigError
from microtransformer.autoencoder.vocab import (
    build_vocabulary,
    greedy_split,
    select_by_compression,
    string_priorities,
    substring_counts,
    verify_strings,
)


def _tokens(counts: dict[bytes, int], table: set[bytes]) -> int:
    return sum(n * (1 if len(c) == 1 else len(greedy_split(c, table))) for c, n in counts.items())


def test_greedy_split_longest_first_then_bytes() -> None:
    table = {b" walk", b" wa", b"ing", b"in", b"ed"}
    assert greedy_split(b" walking", table) == [b" walk", b"ing"]
    assert greedy_split(b" walked", table) == [b" walk", b"ed"]
    assert greedy_split(b"xyz", table) == [b"x", b"y", b"z"]
    assert greedy_split(b" walk", table) == [b" walk"]
    assert greedy_split(b" walk", table, skip_whole=True) == [b" wa", b"l", b"k"]
    assert b"".join(greedy_split(b"any bytes \xff\x00", table)) == b"any bytes \xff\x00"


def test_substring_counts_once_per_occurrence_and_whole_characters() -> None:
    counts = substring_counts({b" walking": 3, b"king": 2, b"aaa": 4, "été".encode(): 1, b"x": 9}, max_len=16)
    assert counts[b"king"] == 5 and counts[b"in"] == 5 and counts[b" walking"] == 3
    assert counts[b"aa"] == 4  # twice in "aaa", counted once per occurrence
    assert counts["été".encode()] == 1 and counts["ét".encode()] == 1
    assert all(s.decode("utf-8") for s in counts)  # no piece cuts a character in two
    assert b"x" not in counts  # single bytes are the byte tokens' job


def test_string_priorities_rank_by_bytes_saved() -> None:
    prio = string_priorities({b" the": 100, b" then": 10, b"qq": 1}, max_len=16, max_strings=3)
    assert list(prio) == [b" the", b" th", b"the"]  # 3 * 110, then 2 * 110 twice (ties by bytes)
    assert prio[b" the"] == 3 * 110


@dataclass
class _Config:
    max_chunk_len: int = 16


class _FakeModel:
    """Reconstructs from a fixed table: which strings come back and on which code."""

    def __init__(self, table: dict[bytes, tuple[bytes, int]]) -> None:
        self.table, self.config = table, _Config()

    def eval(self) -> _FakeModel:
        return self

    def reconstruct(self, chunks: list[bytes], batch_size: int = 4096) -> tuple[list[bytes], torch.Tensor]:
        out = [self.table.get(c, (b"?", 999)) for c in chunks]
        return [d for d, _ in out], torch.tensor([k for _, k in out])


def test_verify_strings_drops_mismatches_and_later_collisions() -> None:
    model = _FakeModel({b"ab": (b"ab", 1), b"cd": (b"cX", 2), b"ef": (b"ef", 1), b"gh": (b"gh", 3)})
    verified, stats = verify_strings(model, [b"ab", b"cd", b"ef", b"gh"], batch_size=2)  # type: ignore[arg-type]
    assert verified == {b"ab": 1, b"gh": 3}
    assert stats == {"tried": 4, "mismatch": 1, "collision": 1}


def test_select_by_compression_small_cases() -> None:
    counts = {b"abcd": 10, b"xy": 1, b"a": 50}
    cands = {b"abcd", b"ab", b"cd", b"xy"}
    assert select_by_compression(cands, counts, 1) == [b"abcd"]
    assert select_by_compression(cands, counts, 2) == [b"abcd", b"xy"]  # ab/cd are unused once abcd is kept
    assert sorted(select_by_compression(cands, counts, 10)) == sorted(cands)  # nothing to prune
    assert select_by_compression(cands, counts, 0) == []


def test_select_by_compression_near_brute_force() -> None:
    """Pruning is a heuristic (like a unigram trainer's): on a small corpus it stays within 13 % of the best
    subset of each size and finds the best one once the vocabulary can hold the stems and suffixes."""
    counts = {b" walking": 6, b" talking": 5, b" walked": 4, b" talked": 3, b" king": 2, b" wall": 2}
    cands = set(substring_counts(counts, max_len=16))
    for k in (1, 2, 3, 4):
        best = min(_tokens(counts, set(sub)) for sub in itertools.combinations(sorted(cands), k))
        got = _tokens(counts, set(select_by_compression(cands, counts, k)))
        assert best <= got <= 1.13 * best
        if k == 4:
            assert got == best


def test_compression_beats_frequency_on_text() -> None:
    words = ("walk talk look work play stay jump" * 3).split()
    text_counts: Counter[bytes] = Counter()
    for i, w in enumerate(words):
        for suffix in ("", "s", "ed", "ing", "er", "ers"):
            text_counts[(" " + w + suffix).encode()] += 1 + (i * 7 + len(suffix)) % 5
    cands = set(substring_counts(text_counts, max_len=16))
    for k in (4, 8, 16):
        frequent = set(sorted(text_counts, key=lambda c: (-text_counts[c], c))[:k])
        chosen = set(select_by_compression(cands, text_counts, k))
        assert len(chosen) == k
        assert _tokens(text_counts, chosen) < _tokens(text_counts, frequent)


def test_build_vocabulary_rejects_bad_strategy() -> None:
    with pytest.raises(ConfigError, match="unknown vocabulary strategy"):
        build_vocabulary(_FakeModel({}), {b"ab": 1}, 4, strategy="bpe")  # type: ignore[arg-type]
