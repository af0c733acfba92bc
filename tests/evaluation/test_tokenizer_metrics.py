"""Tokenizer figures on text: round-trip checks that can fail, compression figures against hand counts."""

from __future__ import annotations

import pytest

from microtransformer import MicroTransformerTokenizer
from microtransformer.evaluation.tokenizer_metrics import (
    ADVERSARIAL_CASES,
    adversarial_checks,
    encode_speeds,
    paragraphs,
    round_trip_check,
    text_stats,
)

DOCS = ["The cat sat on the mat.\n\nThe dog sat on the log.\n", "déjà vu, 東京 and 🙂 again\n"] * 20


@pytest.fixture(scope="module")
def tok() -> MicroTransformerTokenizer:
    return MicroTransformerTokenizer.train_from_iterator(DOCS, vocab_size=300)


@pytest.mark.parametrize("engine", ["bpe", "hf-bytelevel", "sentencepiece", "reference"])
def test_every_engine_passes_the_adversarial_set(engine: str) -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(DOCS, engine=engine, vocab_size=300)
    checks = adversarial_checks(tok)
    assert [c.name for c in checks][: len(ADVERSARIAL_CASES)] == list(ADVERSARIAL_CASES)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    surrogates = next(c for c in checks if c.name == "lone surrogates")
    assert "4 lone surrogate(s) came back as U+FFFD" in surrogates.detail  # the pair joins, 4 stay alone


def test_round_trip_check_fails_when_it_should(tok) -> None:
    wrong = round_trip_check(tok, "x", "the cat", ids=tok.encode("the cab"))
    assert not wrong.passed and "differs at character 6" in wrong.detail
    injected = round_trip_check(tok, "x", "<|bos|>", ids=[tok.bos_id])  # decodes to the text, but is a special id
    assert not injected.passed and "special-token ids" in injected.detail
    assert round_trip_check(tok, "x", "a\ud800b").passed  # expected back as U+FFFD


def test_text_stats_against_hand_counts(tok) -> None:
    docs = ["ab ab\n", "é"]
    ids = tok.encode_batch(docs)
    s = text_stats(tok, docs, ids)
    n_tokens = sum(len(i) for i in ids)
    assert s.bytes == 8 and s.words == 3 and s.tokens == n_tokens
    assert s.bytes_per_token == 8 / n_tokens and s.tokens_per_word == n_tokens / 3
    lengths = [len(tok.id_to_bytes(i)) for row in ids for i in row]
    assert s.length_histogram[str(max(lengths))] >= 1 and sum(s.length_histogram.values()) == n_tokens
    assert s.single_byte_share == lengths.count(1) / n_tokens
    assert s.distinct_ids == len({i for row in ids for i in row}) and s.vocab_share_used == s.distinct_ids / tok.n_ordinary


def test_paragraphs_join_back_and_speeds_are_positive(tok) -> None:
    paras = paragraphs(DOCS)
    assert "".join(paras) == "".join(DOCS) and len(paras) == 3 * 20
    speeds = encode_speeds({"a": tok, "b": tok}, paras, threads=1, repeats=2)
    assert set(speeds) == {"a", "b"} and all(s["single_mb_s"] > 0 and s["batch_mb_s"] > 0 for s in speeds.values())
