"""A trained tokenizer gives back its text: lossy patterns, empty-matching and invalid regexes are refused."""

from __future__ import annotations

import json
import logging
import unicodedata

import pytest

from microtransformer.cli.main import main
from microtransformer.errors import ConfigError, TokenizerFormatError
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.base import CONFIG_FILE

TEXTS = ["Hello world. This is a test, with 123 numbers!\nAnd a second line.\n"] * 20


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "in.txt"
    p.write_text("".join(TEXTS), encoding="utf-8")
    return p


def test_a_pattern_that_drops_text_is_refused(tmp_path, text_file, capsys) -> None:
    with pytest.raises(ConfigError, match=r"loses text.*'Hello world. This is a te' comes back as 'HelloworldThisisatest"):
        MicroTransformerTokenizer.train_from_iterator(TEXTS, vocab_size=300, pattern=r"\p{L}+")
    out = tmp_path / "tok"
    code, err = run(capsys, "tokenizer", "train", "--data_file", str(text_file), "--pattern", r"\p{L}+",
                    "--vocab_size", "300", "--output_dir", str(out))
    assert code == 2 and "loses text" in err and "--allow_lossy" in err
    assert not out.exists()  # nothing saved, so `mtx data prepare` cannot write "HelloworldThis..." shards


def test_allow_lossy_keeps_it_with_a_loud_warning(tmp_path, text_file, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        tok = MicroTransformerTokenizer.train_from_iterator(TEXTS, vocab_size=300, pattern=r"\p{L}+", allow_lossy=True)
    assert tok.decode(tok.encode("Hello, world")) == "Helloworld"
    assert any("LOSSY TOKENIZER" in r.message for r in caplog.records)
    assert main(["tokenizer", "train", "--data_file", str(text_file), "--pattern", r"\p{L}+", "--vocab_size", "300",
                 "--output_dir", str(tmp_path / "tok"), "--allow_lossy"]) == 0


@pytest.mark.parametrize("pattern, message", [
    ("x*", "can match the empty string"),
    (r"\w+|\s*", "can match the empty string"),
    ("(", "not a valid regex: missing \\)"),
    (r"\p{Foo}+", "not a valid regex: unknown property"),
])
def test_bad_patterns_exit_2_before_training(tmp_path, text_file, capsys, pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MicroTransformerTokenizer.train_from_iterator(TEXTS, vocab_size=300, pattern=pattern)
    code, err = run(capsys, "tokenizer", "train", "--data_file", str(text_file), "--pattern", pattern,
                    "--output_dir", str(tmp_path / "tok"))
    assert code == 2 and message.replace("\\", "") in err


def test_a_saved_config_with_an_empty_matching_pattern_does_not_load(tmp_path) -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(TEXTS, vocab_size=300)
    out = tok.save(tmp_path / "tok")
    cfg = json.loads((out / CONFIG_FILE).read_text())
    cfg["pattern"] = "x*"  # tiktoken would panic in Rust on every encode
    (out / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(TokenizerFormatError, match="empty string"):
        MicroTransformerTokenizer.from_pretrained(out)


@pytest.mark.parametrize("engine, flag", [("hf-bytelevel", ["--pattern", r"\w+|\s+|."]),
                                          ("sentencepiece", ["--pattern", r"\w+|\s+|."]),
                                          ("bpe", ["--normalization", "nfkc"]),
                                          ("reference", ["--normalization", "nfkc"])])
def test_an_option_of_another_engine_is_a_one_line_error(tmp_path, text_file, capsys, engine, flag) -> None:
    code, err = run(capsys, "tokenizer", "train", "--data_file", str(text_file), "--engine", engine, *flag,
                    "--vocab_size", "300", "--output_dir", str(tmp_path / "tok"))
    assert code == 2 and err.startswith("error: the ") and "does not take" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------- SentencePiece NFKC
NFKC_CASES = ["a\nb", "a\n\n\tb  c", "line one\r\nline two", "ﬁne ① ＡＢ ｱ x²", "e\u0301 café", "\u00a0|\u3000|x"]


def test_nfkc_keeps_line_structure_and_is_exactly_unicode_nfkc() -> None:
    corpus = ["Some text to learn from, with numbers 12 and ﬁ ligatures ①.\nSecond line\tand a tab.\n"] * 30
    tok = MicroTransformerTokenizer.train_from_iterator(
        corpus, engine="sentencepiece", vocab_size=400, normalization="nfkc", allow_lossy=True
    )
    assert tok.decode(tok.encode("a\nb")) == "a\nb"
    for text in NFKC_CASES:
        assert tok.decode(tok.encode(text)) == unicodedata.normalize("NFKC", text), text


def test_nfkc_on_text_nfkc_changes_needs_allow_lossy() -> None:
    corpus = ["plain text with a ﬁ ligature\n"] * 30
    with pytest.raises(ConfigError, match="loses text"):
        MicroTransformerTokenizer.train_from_iterator(corpus, engine="sentencepiece", vocab_size=400, normalization="nfkc")
    plain = ["plain text, no compatibility characters\nsecond line\n"] * 30
    tok = MicroTransformerTokenizer.train_from_iterator(plain, engine="sentencepiece", vocab_size=400, normalization="nfkc")
    assert tok.decode(tok.encode("x\ny")) == "x\ny"
