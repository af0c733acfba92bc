"""Edges every engine handles the same way: bytes lookups, lone surrogates, tiktoken's strict mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiktoken

from microtransformer.errors import ConfigError
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.base import replace_surrogates

ENGINES = ["bpe", "hf-bytelevel", "sentencepiece", "reference"]
DOCS = ["the cat sat on the mat \ud83d and the dog", "naïve café 東京 🙂 " * 5, "hello world " * 20]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "tokenizers_v1"


@pytest.fixture(scope="module", params=ENGINES)
def tok(request: pytest.FixtureRequest) -> MicroTransformerTokenizer:
    # the first document holds a lone surrogate: training must not fail on it
    return MicroTransformerTokenizer.train_from_iterator(DOCS, engine=request.param, vocab_size=310)


def test_lone_surrogates_become_replacement_character(tok: MicroTransformerTokenizer) -> None:
    for text, clean in [("\ud83d", "\ufffd"), ("a\udc00b\ud800", "a\ufffdb\ufffd"), ("\ud83d\ude42", "🙂")]:
        assert tok.encode(text) == tok.encode(clean)
        assert tok.decode(tok.encode(text)) == clean
        assert tok.encode_batch([text, "x"]) == [tok.encode(clean), tok.encode("x")]
        assert tok(text)["input_ids"] == tok.encode(clean)


def test_surrogates_as_tiktoken_does() -> None:
    ranks = {bytes([b]): b for b in range(256)}
    enc = tiktoken.Encoding("bytes", pat_str=r"[\s\S]", mergeable_ranks=ranks, special_tokens={})
    for text in ["\ud83d", "x\udfff", "\ud83d\ude42", "plain"]:
        assert enc.decode(enc.encode(text)) == replace_surrogates(text)


def test_autoencoder_encodes_surrogates_too() -> None:
    tok = MicroTransformerTokenizer.from_pretrained(FIXTURES / "autoencoder")
    assert tok.encode("hello \ud83d") == tok.encode("hello \ufffd")


def test_token_to_id_takes_bytes(tok: MicroTransformerTokenizer) -> None:
    assert tok.token_to_id(b"<|bos|>") == tok.token_to_id("<|bos|>") == tok.bos_id
    assert tok.token_to_id(b"<|user_start|>") == tok.special_tokens["<|user_start|>"]
    assert tok.id_to_bytes(tok.token_to_id(b"h")) == b"h"
    assert tok.token_to_id(b"\xff\xfe\xfd\xfc") is None


def test_disallowed_special_raises_like_tiktoken(tok: MicroTransformerTokenizer) -> None:
    text = "a <|bos|> b"
    assert not set(tok.encode(text)) & tok.special_ids  # the safe default: ordinary text
    with pytest.raises(ConfigError, match="disallowed special token '<\\|bos\\|>'.*allowed_special"):
        tok.encode(text, disallowed_special="all")
    with pytest.raises(ConfigError, match="disallowed special token"):
        tok.encode_batch(["x", text], disallowed_special="all")
    with pytest.raises(ConfigError, match="disallowed special token"):
        tok([text], disallowed_special="all")
    assert tok.encode(text, allowed_special={"<|bos|>"}, disallowed_special="all").count(tok.bos_id) == 1
    assert tok.encode("no specials", disallowed_special="all") == tok.encode("no specials")


def test_nanochat_calls_on_every_engine(tok: MicroTransformerTokenizer) -> None:
    assert tok.get_bos_token_id() == tok.bos_id and tok.get_vocab_size() == tok.vocab_size
    assert tok.encode(["a", "b"], prepend="<|bos|>", append=tok.eos_id) == [
        [tok.bos_id, *tok.encode("a"), tok.eos_id], [tok.bos_id, *tok.encode("b"), tok.eos_id]
    ]
    with pytest.raises(ConfigError, match="not a special token"):
        tok.encode_special("<|nope|>")
    with pytest.raises(ConfigError, match="prepend/append"):
        tok.encode("a", prepend=1.5)


def test_tiktoken_encoding_carries_specials() -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(DOCS, engine="bpe", vocab_size=310)
    enc = tok.tiktoken_encoding
    assert enc.n_vocab == tok.vocab_size and enc.special_tokens_set == set(tok.special_tokens)
    assert enc.encode("<|bos|>", allowed_special="all") == [tok.bos_id]
    assert enc.encode_ordinary("<|bos|> hi") == tok.encode("<|bos|> hi")
    with pytest.raises(ValueError, match="disallowed special token"):
        enc.encode("<|bos|>")  # tiktoken's own rule
