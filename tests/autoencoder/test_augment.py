"""Synthetic chunk variants for auto-encoder pre-training."""

from __future__ import annotations

import string

import torch

from microtransformer.autoencoder.augment import augment_chunk

CHUNKS = [b" walking", b"The", b" the", b"and", b" Pierre", b" caf\xc3\xa9", b"\xff\xfe"]


def _draw(seed: int, n: int = 400, max_len: int = 16) -> list[tuple[bytes, bytes]]:
    g = torch.Generator().manual_seed(seed)
    return [(c, augment_chunk(c, g, max_len)) for _ in range(n // len(CHUNKS)) for c in CHUNKS]


def test_deterministic_for_a_seed_and_bounded() -> None:
    assert _draw(3) == _draw(3) and _draw(3) != _draw(4)
    assert all(1 <= len(v) <= 16 for _, v in _draw(5))
    assert all(len(v) <= 4 or v == c for c, v in _draw(6, max_len=4))  # too long: the chunk itself


def test_every_kind_of_variant_appears() -> None:
    out = _draw(0, n=2000)
    texts = [v.decode("utf-8", "replace") for _, v in out]
    assert b" Walking" in {v for _, v in out} and b"THE" in {v for _, v in out}  # case
    assert b"walking" in {v for _, v in out} and any(t[0] in "([{<" and t[1:] == "walking" for t in texts)  # lead
    assert any(t.strip().isdigit() for t in texts)  # digit groups
    assert any(t.strip() and all(ch in string.punctuation for ch in t.strip()) for t in texts)  # punctuation runs
    assert any(any(ch in "áàâäãéèêëíìîïóòôöõúùûüñç" for ch in t) for t in texts)  # accents
    # bytes that are not UTF-8 get only the synthetic kinds, never a broken edit of themselves
    assert {v for c, v in out if c == b"\xff\xfe"} - {b"\xff\xfe"} <= {
        v for v in (x for _, x in out) if v.strip().isdigit() or all(chr(b) in string.punctuation + " \n" for b in v)
    }
