"""Golden values: a fixed tiny corpus gives fixed merges and ids, run after run."""

from __future__ import annotations

import pytest

from microtransformer.tokenization import MicroTransformerTokenizer

CORPUS = ["hello hello world", "low lower lowest"]


@pytest.mark.parametrize("engine", ["bpe", "reference"])
def test_golden_merges_and_ids(engine: str) -> None:
    # GPT-4 split gives chunks: "hello", " hello", " world", "low", " lower", " lowest" (count 1 each).
    # Pair counts: (l,o)=5 is the max -> 256 'lo'; then (lo,w)=3 -> 257 'low'. Now four pairs tie at 2:
    # (' ',low)=(32,257), (e,l)=(101,108), (h,e)=(104,101), (low,e)=(257,101); the lowest tuple wins ->
    # 258 ' low'; then (101,108) -> 259 'el'; then (h,el)=(104,259) -> 260 'hel'; then (' low',e) -> 261 ' lowe'.
    tok = MicroTransformerTokenizer.train_from_iterator(CORPUS, engine=engine, vocab_size=262, special_tokens=[])
    assert [tok.id_to_bytes(i) for i in range(256, 262)] == [b"lo", b"low", b" low", b"el", b"hel", b" lowe"]
    # "hello" -> h,e,l,lo -> h,el,lo -> hel,lo ; " lowest" -> ' lowe',s,t ; " world" has no merge.
    assert tok.encode("hello lowest world") == [260, 256, 261, 115, 116, 32, 119, 111, 114, 108, 100]


@pytest.mark.parametrize("engine", ["bpe", "hf-bytelevel", "sentencepiece", "reference"])
def test_training_is_deterministic(engine: str) -> None:
    text = ["the cat sat on the mat; the dog sat on the log. " * 20, "a b c d e f g " * 10]
    a = MicroTransformerTokenizer.train_from_iterator(text, engine=engine, vocab_size=320)
    b = MicroTransformerTokenizer.train_from_iterator(text, engine=engine, vocab_size=320)
    assert a.fingerprint == b.fingerprint
    assert a.encode("the cat sat") == b.encode("the cat sat")
