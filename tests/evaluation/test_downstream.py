"""Held-out bits per byte: every token scored once, equal to a slow per-window reference and to a golden value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from microtransformer import MicroTransformerTokenizer
from microtransformer.evaluation.downstream import heldout_bits_per_byte, heldout_ids
from microtransformer.models import GPT, GPTConfig

DOCS = ["first document, with some words\n", "the second one is a little longer than the first one\n"]


@pytest.fixture(scope="module")
def tok() -> MicroTransformerTokenizer:
    return MicroTransformerTokenizer.train_from_iterator(DOCS * 10, vocab_size=300)


def test_heldout_ids_put_bos_before_every_document(tok) -> None:
    ids = heldout_ids(tok, DOCS)
    assert ids.tolist() == [tok.bos_id, *tok.encode(DOCS[0]), tok.bos_id, *tok.encode(DOCS[1])]


def test_uniform_model_gives_log2_vocab_bits_per_token(tok) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8))
    torch.nn.init.zeros_(model.lm_head.weight)  # every logit 0: uniform over the (unpadded) vocabulary
    ids = heldout_ids(tok, DOCS)
    bpb, n_tokens, n_bytes = heldout_bits_per_byte(model, ids, tok.token_bytes(), block_size=8, batch_size=3)
    text_bytes = sum(len(d.encode()) for d in DOCS)
    text_tokens = len(ids) - len(DOCS)  # the targets that are text (BOS targets carry no bytes)
    assert n_tokens == len(ids) - 1 and n_bytes == text_bytes
    assert bpb == pytest.approx(text_tokens * math.log2(tok.vocab_size) / text_bytes, rel=1e-6)


def test_batched_windows_equal_a_slow_reference(tok) -> None:
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8)).eval()
    ids = heldout_ids(tok, DOCS)
    bpb, _, n_bytes = heldout_bits_per_byte(model, ids, tok.token_bytes(), block_size=8, batch_size=4)
    nats = 0.0
    tb = tok.token_bytes()
    with torch.no_grad():
        for t in range(1, len(ids)):  # each target once, with the context its window gives it
            start = (t - 1) // 8 * 8
            logits, _ = model(torch.from_numpy(ids[None, start:t]))
            if tb[ids[t]] > 0:
                nats -= torch.log_softmax(logits[0, -1].double(), -1)[int(ids[t])].item()
    assert bpb == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    assert np.isfinite(bpb)
    # int32 ids (token shards, the speedrun's arrays) score the same
    assert heldout_bits_per_byte(model, ids.astype(np.int32), tb, block_size=8, batch_size=4)[0] == bpb
