"""Perplexity and bits per byte on a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch

from microtransformer.evaluation.metrics import (
    bits_per_byte,
    bits_per_byte_from_loss,
    nats_and_bytes,
    perplexity,
    token_nats,
)


def test_bits_per_byte_hand_computed():
    # vocab of 4 tokens with byte lengths 1, 2, 3 and 0 (a special token)
    token_bytes = torch.tensor([1, 2, 3, 0])
    # uniform logits: every token costs ln 4 nats = 2 bits
    logits = torch.zeros(1, 3, 4)
    targets = torch.tensor([[0, 1, 2]])  # 1 + 2 + 3 = 6 bytes, 3 tokens
    losses = token_nats(logits, targets)
    nats, nbytes = nats_and_bytes(losses, targets, token_bytes)
    assert nbytes.item() == 6
    assert nats.item() == pytest.approx(3 * math.log(4))
    bpb = bits_per_byte(nats.item(), int(nbytes))
    assert bpb == pytest.approx(3 * 2 / 6)  # 6 bits over 6 bytes = 1.0
    mean_loss = losses.mean().item()
    assert bpb == pytest.approx(mean_loss / math.log(2) * 3 / 6)  # loss/ln2 x tokens/bytes
    assert bits_per_byte_from_loss(mean_loss, n_tokens=3, n_bytes=6) == pytest.approx(bpb)


def test_special_targets_are_excluded_from_bits_per_byte():
    token_bytes = torch.tensor([1, 2, 3, 0])
    logits = torch.zeros(1, 2, 4)
    targets = torch.tensor([[3, 1]])  # the special token contributes neither nats nor bytes
    nats, nbytes = nats_and_bytes(token_nats(logits, targets), targets, token_bytes)
    assert nbytes.item() == 2 and nats.item() == pytest.approx(math.log(4))


def test_perplexity():
    assert perplexity(math.log(7.5)) == pytest.approx(7.5)
    assert perplexity(1e6) == math.inf
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)
