from __future__ import annotations

import pytest

from microtransformer.errors import ConfigError
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.special import DEFAULT_SPECIAL_TOKENS, SpecialToken, parse_special_tokens


def test_defaults_have_roles_and_chat_tokens() -> None:
    roles = {t.role: t.content for t in DEFAULT_SPECIAL_TOKENS if t.role}
    assert roles == {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>", "mask": "<|mask|>"}
    assert "<|assistant_end|>" in {t.content for t in DEFAULT_SPECIAL_TOKENS}


def test_bert_style_names_get_roles() -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(
        ["some text to train on " * 5], vocab_size=300, special_tokens=["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"]
    )
    assert tok.token_to_id("[SEP]") == tok.eos_id == tok.n_ordinary + 1
    assert (tok.bos_id, tok.pad_id, tok.mask_id, tok.unk_id) == tuple(tok.n_ordinary + i for i in (0, 2, 3, 4))
    assert tok.encode("x", add_special_tokens=True) == [tok.token_to_id("[CLS]"), *tok.encode("x"), tok.eos_id]


def test_explicit_roles_and_mapping() -> None:
    assert parse_special_tokens(["eos=</doc>", "<x>"]) == (SpecialToken("</doc>", "eos"), SpecialToken("<x>"))
    assert parse_special_tokens({"pad": "<p>"}) == (SpecialToken("<p>", "pad"),)


@pytest.mark.parametrize(
    "spec, message",
    [
        (["<a>", "<a>"], "listed twice"),
        (["[PAD]", "pad=<p>"], "two special tokens claim the role 'pad'"),
        ("<|bos|>", "list of strings"),
        ([""], "non-empty"),
    ],
)
def test_bad_specs(spec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_special_tokens(spec)


def test_no_pad_token_padding_error() -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(["abc abc"], vocab_size=260, special_tokens=["<|bos|>"])
    with pytest.raises(ConfigError, match="no pad token"):
        tok(["a", "abc"], padding=True)


@pytest.mark.parametrize("spec, message", [
    (["boss=<a>"], "'boss' is not a role"),
    (["BOS="], "names the role 'bos' but no token"),
    (["eos="], "names the role 'eos' but no token"),
    (["<x>", ""], "non-empty"),
])
def test_unknown_role_prefixes_and_empty_tokens_are_errors(spec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_special_tokens(spec)


def test_common_spellings_get_their_roles() -> None:
    # the tutorial's names: ["<pad>", "<unk>", "<bos>", "<eos>"]
    parsed = parse_special_tokens(["<pad>", "<unk>", "<bos>", "<eos>"])
    assert [t.role for t in parsed] == ["pad", "unk", "bos", "eos"]
    assert [t.role for t in parse_special_tokens(["<BOS>", "[EOS]", "<Pad>"])] == ["bos", "eos", "pad"]
    assert parse_special_tokens(["<|begin_of_text|>", "<|end_of_text|>"])[1].role == "eos"
    # an '=' inside a token that is not a role prefix stays part of the token
    assert parse_special_tokens(["<a=b>", "eos=</s>"]) == (SpecialToken("<a=b>"), SpecialToken("</s>", "eos"))
    tok = MicroTransformerTokenizer.train_from_iterator(
        ["some text to train on " * 5], vocab_size=300, special_tokens=["<pad>", "<unk>", "<bos>", "<eos>"]
    )
    assert tok.eos_id == tok.token_to_id("<eos>") and tok.bos_id == tok.token_to_id("<bos>")
    assert tok.decode([tok.bos_id, tok.eos_id]) == "<bos><eos>"


def test_data_prepare_says_when_the_tokenizer_has_no_eos(tmp_path, caplog) -> None:
    import logging

    from microtransformer.data.corpus import Corpus
    from microtransformer.data.prepare import prepare_shards

    text = tmp_path / "t.txt"
    text.write_text("some text to train on, and more text.\n" * 200)
    tok = MicroTransformerTokenizer.train(text, vocab_size=300, special_tokens=["<bos>"], show_progress=False)
    with caplog.at_level(logging.WARNING):
        prepare_shards(Corpus.from_file(text), tok, tmp_path / "shards", show_progress=False)
    assert any("has no eos token" in r.message for r in caplog.records)
