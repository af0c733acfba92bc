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
