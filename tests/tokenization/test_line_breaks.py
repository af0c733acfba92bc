"""``space_after_newline``: a line's first word becomes its usual token, and nothing else changes for the user."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microtransformer.errors import ConfigError
from microtransformer.evaluation.downstream import heldout_bits_per_byte
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.line_breaks import SpaceRemover, add_spaces, remove_spaces

WORDS = "the of and to a in that it was he his with as had for you not be her on at by which".split()
ALPHABET = st.sampled_from(list("ab \n\r\t\x00é東🙂") + ["<|bos|>", "\n ", " \n", "\n\n", "\r\n"])
TEXTS = st.one_of(st.text(), st.lists(ALPHABET, max_size=40).map("".join))


def wrapped_book(seed: int, n_words: int = 6000) -> str:
    """Prose hard-wrapped at 40 columns in paragraphs, as the Gutenberg books are (at ~70)."""
    rng = random.Random(seed)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) for _ in range(n_words // 50)]
    return "\n\n".join(textwrap.fill(p.capitalize() + ".", 40) for p in paragraphs) + "\n"


@pytest.fixture(scope="module", params=["bpe", "sentencepiece"])
def tok(request: pytest.FixtureRequest) -> MicroTransformerTokenizer:
    return MicroTransformerTokenizer.train_from_iterator(
        [wrapped_book(0)], engine=request.param, vocab_size=400, special_tokens="nanochat", space_after_newline=True
    )


@given(text=TEXTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_roundtrip_stream_and_text_bytes_property(tok: MicroTransformerTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b"".join(tok.decode_stream(ids)) == tok.decode_bytes(ids) == text.encode("utf-8")
    assert int(tok.token_text_bytes()[ids].sum()) == len(text.encode("utf-8"))  # bits per byte counts the text


@given(text=TEXTS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_special_tokens_between_lines_roundtrip(tok: MicroTransformerTokenizer, text: str) -> None:
    ids = tok.encode(text, allowed_special="all")
    assert tok.decode(ids) == text
    assert b"".join(tok.decode_stream(ids)) == text.encode("utf-8")


@given(data=st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_streaming_any_ids_joins_to_decode(tok: MicroTransformerTokenizer, data: st.DataObject) -> None:
    """What a model emits need not be what encode gives: streamed pieces still join to decode's bytes."""
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=30))
    assert b"".join(tok.decode_stream(ids)) == tok.decode_bytes(ids)
    assert b"".join(tok.decode_stream(ids, skip_special_tokens=True)) == tok.decode_bytes(ids, skip_special_tokens=True)


def test_a_lines_first_word_is_its_usual_token() -> None:
    book = wrapped_book(1)
    spaced = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=400, space_after_newline=True)
    plain = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=400)
    newline = spaced.token_to_id(b"\n")
    assert spaced.encode("was\nhad") == spaced.encode("was") + [newline] + spaced.encode(" had")
    assert spaced.decode(spaced.encode(" had")) == " had"  # the usual piece, after a space or a line break
    after_space = plain.encode(" had")
    assert plain.encode("was\nhad")[-len(after_space):] != after_space  # without: another piece


def test_the_transform_is_a_bijection_local_to_each_line_break() -> None:
    for text in ["a\nb", "a\n b", "\n\n", "x\n", "\n \n  y\r\n z"]:
        assert remove_spaces(add_spaces(text).encode()) == text.encode()
        cut = len(text) // 2  # a corpus read in pieces: the pieces' transforms join to the whole's
        assert add_spaces(text[:cut]) + add_spaces(text[cut:]) == add_spaces(text)
    r = SpaceRemover()
    assert [r(b) for b in (b"a\n", b" b\n", b" ", b"  c")] == [b"a\n", b"b\n", b"", b"  c"]


def test_bits_per_byte_count_the_text_not_the_added_spaces(tok: MicroTransformerTokenizer) -> None:
    import torch

    text = wrapped_book(3, n_words=400)
    ids = np.array([tok.bos_id, *tok.encode(text)])
    model = torch.nn.Module()
    model.register_parameter("w", torch.nn.Parameter(torch.zeros(1)))
    model.forward = lambda x: (torch.zeros(*x.shape, tok.vocab_size), None)  # uniform: log2(V) bits a token
    scored = tok.text_ids()  # a bare line break has 0 text bytes, and its loss still counts
    bpb, n_tokens, n_bytes = heldout_bits_per_byte(model, ids, tok.token_text_bytes(), block_size=64, scored=scored)
    assert n_bytes == len(text.encode("utf-8")) < int(tok.token_bytes()[ids].sum())
    assert bpb == pytest.approx(n_tokens * np.log2(tok.vocab_size) / n_bytes)


def test_saved_tokenizer_keeps_the_option_and_plain_ones_their_fingerprint(tmp_path: Path) -> None:
    book = wrapped_book(4)
    spaced = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=300, space_after_newline=True)
    plain = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=300)
    spaced.save(tmp_path / "spaced")
    loaded = MicroTransformerTokenizer.from_pretrained(tmp_path / "spaced")
    assert loaded.space_after_newline and loaded.fingerprint == spaced.fingerprint != plain.fingerprint
    assert loaded.encode("one\ntwo") == spaced.encode("one\ntwo")
    plain.save(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "microtransformer.json").read_text())
    assert "space_after_newline" not in config  # earlier releases' fingerprints and files stay as they were
    assert (tmp_path / "plain" / "tokenizer.json").is_file()
    with pytest.raises(ConfigError, match="tiktoken cannot"):
        spaced.tiktoken_encoding


def test_a_saved_tokenizer_with_the_option_keeps_loading(tmp_path: Path) -> None:
    fixture = Path(__file__).parents[1] / "fixtures" / "line_breaks_every"
    expected = json.loads((fixture / "expected.json").read_text())
    tok = MicroTransformerTokenizer.from_pretrained(fixture / "bpe")
    assert tok.space_after_newline and tok.fingerprint == expected["fingerprint"]
    for text, ids in zip(expected["texts"], expected["ids"]):
        assert tok.encode(text) == ids and tok.decode(ids) == text
        assert int(tok.token_text_bytes()[ids].sum()) == len(text.encode("utf-8"))
    tok.save(tmp_path / "again")  # saved again: the same fingerprint
    assert MicroTransformerTokenizer.from_pretrained(tmp_path / "again").fingerprint == expected["fingerprint"]


@pytest.mark.parametrize("engine", ["bpe", "sentencepiece"])
def test_hugging_face_export_adds_and_drops_the_same_spaces(tmp_path: Path, engine: str) -> None:
    from tokenizers import Tokenizer

    tok = MicroTransformerTokenizer.train_from_iterator(
        [wrapped_book(5)], engine=engine, vocab_size=400, special_tokens="nanochat", space_after_newline=True
    )
    tok.save(tmp_path)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in [wrapped_book(6, n_words=300), "Was had\nthe of\n\n  indented\n \n", "x\r\ny\n"]:
        ids = tok.encode(text)
        assert hf.encode(text, add_special_tokens=False).ids == ids
        assert hf.decode(ids) == text
