"""The fast path equals the oracle: ``reference`` == ``bpe`` merges and ids (principle 2)."""

from __future__ import annotations

from microtransformer.tokenization import MicroTransformerTokenizer


def test_reference_equals_bpe_on_tinyshakespeare(shakespeare_200k: str, shared_data_dir) -> None:
    kwargs = dict(vocab_size=1024, special_tokens=[])
    ref = MicroTransformerTokenizer.train_from_iterator([shakespeare_200k], engine="reference", **kwargs)
    bpe = MicroTransformerTokenizer.train_from_iterator([shakespeare_200k], engine="bpe", **kwargs)
    assert ref.vocab_size == bpe.vocab_size == 1024
    assert ref.merges == bpe.merges
    assert ref.encode(shakespeare_200k) == bpe.encode(shakespeare_200k)
    other = (shared_data_dir / "moby_dick.txt").read_bytes()[:50_000].decode("utf-8", errors="ignore")
    assert ref.encode(other) == bpe.encode(other)


def test_first_tie_break_diverges(shakespeare_200k: str) -> None:
    """minbpe's rule is a different tokenizer: the test above could fail."""
    text = shakespeare_200k[:50_000]
    first = MicroTransformerTokenizer.train_from_iterator(
        [text], engine="reference", vocab_size=400, special_tokens=[], tie_break="first"
    )
    bpe = MicroTransformerTokenizer.train_from_iterator([text], engine="bpe", vocab_size=400, special_tokens=[])
    assert first.merges != bpe.merges
