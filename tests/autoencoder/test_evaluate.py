"""Reconstruction tester: Levenshtein, sentence metrics, after-fallback figures."""

from __future__ import annotations

import json

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from microtransformer.autoencoder.evaluate import (
    STANDARD_SENTENCES,
    evaluate_model,
    evaluate_sentences,
    evaluate_tokenizer,
    levenshtein,
)
from microtransformer.autoencoder.model import AutoEncoderConfig, ChunkAutoEncoder
from microtransformer.autoencoder.results import ReconstructionResult
from microtransformer.tokenization import MicroTransformerTokenizer

from autoencoder_testkit import EVAL_DOCS as DOCS, EVAL_SENTENCES as SENTENCES


def test_levenshtein_known_values() -> None:
    assert levenshtein(b"kitten", b"sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0
    assert levenshtein("flaw", "lawn") == 2


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=12), st.text(max_size=12))
def test_levenshtein_is_a_metric(a: str, b: str) -> None:
    d = levenshtein(a, b)
    assert d == levenshtein(b, a)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert (d == 0) == (a == b)


def test_standard_sentences() -> None:
    assert 10 <= len(STANDARD_SENTENCES) <= 20
    assert "hello world" in STANDARD_SENTENCES and "123 test" in STANDARD_SENTENCES
    assert any(not s.isascii() for s in STANDARD_SENTENCES)
    assert any(s.startswith("The quick brown fox") for s in STANDARD_SENTENCES)


def test_trained_beats_untrained(tiny_model, tiny_counts) -> None:
    torch.manual_seed(1)
    untrained = ChunkAutoEncoder(AutoEncoderConfig.preset("tiny")).eval()
    chunks = list(tiny_counts)
    counts = [tiny_counts[c] for c in chunks]
    before = evaluate_model(untrained, val_chunks=chunks, val_counts=counts, sentences=SENTENCES, phase="before")
    after = evaluate_model(tiny_model, val_chunks=chunks, val_counts=counts, sentences=SENTENCES, phase="after")
    assert before.sentences_perfect == 0
    assert after.sentences_perfect == len(SENTENCES)
    assert after.val is not None and before.val is not None
    assert after.val.char_accuracy > 0.95 > before.val.char_accuracy
    assert after.mean_levenshtein == 0 < before.mean_levenshtein
    assert ReconstructionResult.from_json(json.loads(json.dumps(after.to_json()))) == after  # JSON round trip


def test_sentence_metrics_are_consistent(tiny_model) -> None:
    s0, s1 = evaluate_sentences(tiny_model, ["hello world", "zzzz qqqq"])
    assert s0.perfect and s0.levenshtein == 0 and s0.char_accuracy == 1.0
    assert not s1.perfect and s1.levenshtein > 0
    r = evaluate_model(tiny_model, sentences=["hello world", "zzzz qqqq"])
    assert r.sentences_perfect == 1 and r.sentences_total == 2 and r.val is None
    n0, n1 = len(b"hello world"), len(b"zzzz qqqq")
    assert abs(r.char_accuracy - (s0.char_accuracy * n0 + s1.char_accuracy * n1) / (n0 + n1)) < 1e-12


def test_tokenizer_after_fallback_is_lossless(tiny_model, tiny_counts) -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(DOCS, engine="autoencoder", vocab_size=290, model=tiny_model)
    chunks = list(tiny_counts)
    r = evaluate_tokenizer(tok, val_chunks=chunks, val_counts=[tiny_counts[c] for c in chunks],
                           texts={"doc": DOCS[0]}, phase="final")
    after = r.after_fallback
    assert after is not None and after.val is not None
    assert after.sentences_perfect == after.sentences_total == len(STANDARD_SENTENCES)
    assert after.val.fallback_rate == 0.0  # every multi-byte training chunk is in the vocabulary
    assert after.texts["doc"].bytes_per_token == after.val.bytes_per_token > 1.5
    assert r.tokenizer is not None and r.tokenizer.n_codes == len(tok.codes)
    assert all(s.perfect_after_fallback for s in r.sentences)
    assert ReconstructionResult.from_json(json.loads(json.dumps(r.to_json()))) == r
