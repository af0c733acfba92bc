"""``space_after_newline``: a line's first word becomes its usual token, and nothing else changes for the user.

Both rules: ``"last"`` (a space after the last line break of each run, what ``True`` trains) and ``"every"`` (after
every line break, what tokenizers saved before ``"last"`` existed do; a fixture of one is loaded below).
"""

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

LEGACY = Path(__file__).parents[1] / "fixtures" / "line_breaks_every"

WORDS = "the of and to a in that it was he his with as had for you not be her on at by which".split()
ALPHABET = st.sampled_from(list("ab \n\r\t\x00é東🙂") + ["<|bos|>", "\n ", " \n", "\n\n", "\r\n"])
TEXTS = st.one_of(st.text(), st.lists(ALPHABET, max_size=40).map("".join))


def wrapped_book(seed: int, n_words: int = 6000) -> str:
    """Prose hard-wrapped at 40 columns in paragraphs, as the Gutenberg books are (at ~70)."""
    rng = random.Random(seed)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) for _ in range(n_words // 50)]
    return "\n\n".join(textwrap.fill(p.capitalize() + ".", 40) for p in paragraphs) + "\n"


def text_bytes(tok: MicroTransformerTokenizer, ids: list[int]) -> int:
    """What bits per byte divide by: the ids' text bytes, less the added spaces that start a token after a line end."""
    arr = np.array(ids, dtype=np.int64)
    starts, ends = tok.added_space_pairs()
    return int(tok.token_text_bytes()[arr].sum()) - int((starts[arr[1:]] & ends[arr[:-1]]).sum())


@pytest.fixture(scope="module", params=[("bpe", True), ("sentencepiece", True), ("bpe", "every")])
def tok(request: pytest.FixtureRequest) -> MicroTransformerTokenizer:
    engine, rule = request.param
    return MicroTransformerTokenizer.train_from_iterator(
        [wrapped_book(0)], engine=engine, vocab_size=400, special_tokens="nanochat", space_after_newline=rule
    )


@given(text=TEXTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_roundtrip_stream_and_text_bytes_property(tok: MicroTransformerTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b"".join(tok.decode_stream(ids)) == tok.decode_bytes(ids) == text.encode("utf-8")
    assert text_bytes(tok, ids) == len(text.encode("utf-8"))  # bits per byte counts the text


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
    every = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=400, space_after_newline="every")
    plain = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=400)
    assert (spaced.space_after_newline, every.space_after_newline, plain.space_after_newline) == ("last", "every", "")
    newline = spaced.token_to_id(b"\n")
    assert spaced.encode("was\nhad") == spaced.encode("was") + [newline] + spaced.encode(" had")
    assert spaced.decode(spaced.encode(" had")) == " had"  # the usual piece, after a space or a line break
    after_space = plain.encode(" had")
    assert plain.encode("was\nhad")[-len(after_space):] != after_space  # without: another piece
    # a paragraph break: "last" keeps it the plain tokenizer's run of line breaks, "every" puts a space inside it
    paragraph = "was.\n\nHad"
    assert [spaced.id_to_bytes(i) for i in spaced.encode(paragraph)][-1] == b" Had"
    assert b" \n" not in b"|".join(spaced.id_to_bytes(i) for i in spaced.encode(paragraph))
    assert b"".join(every.id_to_bytes(i) for i in every.encode(paragraph)) == b"was.\n \n Had"
    assert b"".join(spaced.id_to_bytes(i) for i in spaced.encode(paragraph)) == b"was.\n\n Had"


@pytest.mark.parametrize("rule", ["last", "every"])
def test_the_transform_is_a_bijection_local_to_each_line_break(rule: str) -> None:
    for text in ["a\nb", "a\n b", "\n\n", "x\n", "\n \n  y\r\n z", "end.\n\nNext\n", "\n\n\n  \n"]:
        assert remove_spaces(add_spaces(text, rule).encode()) == text.encode()
        for cut in range(len(text) + 1):  # a corpus read in pieces: the pieces' transforms join to the whole's
            inside_a_run = text[cut - 1 : cut + 1] == "\n\n"  # the corpus never cuts there (data.corpus)
            if rule == "every" or not inside_a_run:
                assert add_spaces(text[:cut], rule) + add_spaces(text[cut:], rule) == add_spaces(text, rule)
            joined = add_spaces(text[:cut], rule) + add_spaces(text[cut:], rule)
            assert remove_spaces(joined.encode()) == text.encode()  # any cut still decodes to the text
    r = SpaceRemover()
    assert [r(b) for b in (b"a\n", b" b\n", b" ", b"  c")] == [b"a\n", b"b\n", b"", b"  c"]


def test_bits_per_byte_count_the_text_not_the_added_spaces(tok: MicroTransformerTokenizer) -> None:
    import torch

    text = wrapped_book(3, n_words=400)
    ids = np.array([tok.bos_id, *tok.encode(text)])
    model = torch.nn.Module()
    model.register_parameter("w", torch.nn.Parameter(torch.zeros(1)))
    model.forward = lambda x: (torch.zeros(*x.shape, tok.vocab_size), None)  # uniform: log2(V) bits a token
    scored = tok.text_ids()  # a token that is only the added space has 0 text bytes, and its loss still counts
    bpb, n_tokens, n_bytes = heldout_bits_per_byte(
        model, ids, tok.token_text_bytes(), block_size=64, scored=scored, added_spaces=tok.added_space_pairs()
    )
    assert n_bytes == len(text.encode("utf-8")) < int(tok.token_bytes()[ids].sum())
    assert bpb == pytest.approx(n_tokens * np.log2(tok.vocab_size) / n_bytes)
    without = heldout_bits_per_byte(model, ids, tok.token_text_bytes(), block_size=64, scored=scored)[2]
    assert without > n_bytes  # the space a line's first token starts with is not text


def test_added_spaces_need_the_inputs() -> None:
    import torch

    from microtransformer.evaluation import nats_and_bytes

    pair = (torch.tensor([False, True]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="needs the inputs"):
        nats_and_bytes(torch.zeros(2), torch.tensor([0, 1]), torch.tensor([1, 2]), added_spaces=pair)
    nats, nbytes = nats_and_bytes(torch.ones(2), torch.tensor([0, 1]), torch.tensor([1, 2]), inputs=torch.tensor([1, 0]),
                                  added_spaces=pair)
    assert (nats.item(), nbytes.item()) == (2.0, 2)  # id 1 after id 0 (a line end) stands for 1 byte, not 2


def test_saved_tokenizer_keeps_the_option_and_plain_ones_their_fingerprint(tmp_path: Path) -> None:
    book = wrapped_book(4)
    spaced = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=300, space_after_newline=True)
    plain = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=300)
    spaced.save(tmp_path / "spaced")
    loaded = MicroTransformerTokenizer.from_pretrained(tmp_path / "spaced")
    assert loaded.space_after_newline == "last" and loaded.fingerprint == spaced.fingerprint != plain.fingerprint
    assert loaded.encode("one\n\ntwo") == spaced.encode("one\n\ntwo")
    assert json.loads((tmp_path / "spaced" / "microtransformer.json").read_text())["space_after_newline"] == "last"
    plain.save(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "microtransformer.json").read_text())
    assert "space_after_newline" not in config  # earlier releases' fingerprints and files stay as they were
    assert (tmp_path / "plain" / "tokenizer.json").is_file()
    with pytest.raises(ConfigError, match="tiktoken cannot"):
        spaced.tiktoken_encoding


def test_a_tokenizer_saved_with_the_every_rule_loads_with_it(tmp_path: Path) -> None:
    expected = json.loads((LEGACY / "expected.json").read_text())
    tok = MicroTransformerTokenizer.from_pretrained(LEGACY / "bpe")
    assert tok.space_after_newline == "every" and tok.fingerprint == expected["fingerprint"]
    for text, ids in zip(expected["texts"], expected["ids"]):
        assert tok.encode(text) == ids and tok.decode(ids) == text
        assert text_bytes(tok, ids) == len(text.encode("utf-8"))
    tok.save(tmp_path / "again")  # saved again: the same file, the same fingerprint
    assert MicroTransformerTokenizer.from_pretrained(tmp_path / "again").fingerprint == expected["fingerprint"]


def test_an_unknown_rule_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="space_after_newline must be true, false or one of last, every"):
        MicroTransformerTokenizer.train_from_iterator(["a\nb"], vocab_size=300, space_after_newline="each")


@pytest.mark.parametrize(("engine", "rule"), [("bpe", True), ("sentencepiece", True), ("bpe", "every")])
def test_hugging_face_export_adds_and_drops_the_same_spaces(tmp_path: Path, engine: str, rule: bool | str) -> None:
    from tokenizers import Tokenizer

    tok = MicroTransformerTokenizer.train_from_iterator(
        [wrapped_book(5)], engine=engine, vocab_size=400, special_tokens="nanochat", space_after_newline=rule
    )
    tok.save(tmp_path)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in [wrapped_book(6, n_words=300), "Was had\nthe of\n\n  indented\n \n", "x\r\ny\n", "\n\n\na.\n\n\n"]:
        ids = tok.encode(text)
        assert hf.encode(text, add_special_tokens=False).ids == ids
        assert hf.decode(ids) == text
