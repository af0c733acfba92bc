"""Bad input: a typed error whose message says what to do, and CLI exit code 2 without a traceback."""

from __future__ import annotations

import json
import logging

import pytest

from microtransformer.cli.main import main
from microtransformer.errors import (
    CorpusError,
    TokenizerFormatError,
    TokenizerNotFoundError,
    UnknownEngineError,
    VocabSizeError,
)
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.base import CONFIG_FILE


@pytest.fixture
def saved(tmp_path):
    tok = MicroTransformerTokenizer.train_from_iterator(["some training text, some more text"] * 20, vocab_size=300)
    return tok.save(tmp_path / "tok")


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_empty_corpus(tmp_path, capsys) -> None:
    with pytest.raises(CorpusError, match="empty"):
        MicroTransformerTokenizer.train_from_iterator([], vocab_size=300)
    with pytest.raises(CorpusError, match="empty"):
        MicroTransformerTokenizer.train_from_iterator(["", ""], vocab_size=300)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, err = cli(capsys, "tokenizer", "train", "--data_file", str(empty), "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "empty" in err
    assert not (tmp_path / "o").exists()


def test_folder_of_binary_files(tmp_path, capsys) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "a.txt").write_bytes(b"\x00\x01\x02binary")
    (d / "b.py").write_bytes(bytes(range(256)))
    code, err = cli(capsys, "tokenizer", "train", "--data_dir", str(d), "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "binary" in err and "2 skipped" in err


def test_folder_without_text_files(tmp_path, capsys) -> None:
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    code, err = cli(capsys, "tokenizer", "train", "--data_dir", str(tmp_path))
    assert code == 2 and "no text files" in err


def test_vocab_too_small(capsys) -> None:
    with pytest.raises(VocabSizeError, match=r"at least 256 ordinary tokens \+ 12 special tokens = 268"):
        MicroTransformerTokenizer.train_from_iterator(["text"], vocab_size=200)
    with pytest.raises(VocabSizeError):  # rustbpe would panic (BaseException) below 256: we validate first
        MicroTransformerTokenizer.train_from_iterator(["text"], vocab_size=255, special_tokens=[])
    code, err = cli(capsys, "tokenizer", "train", "--vocab-size", "100")
    assert code == 2 and "--vocab_size 268" in err


@pytest.mark.parametrize("engine", ["bpe", "hf-bytelevel", "reference"])
def test_vocab_larger_than_corpus_is_capped_with_warning(engine: str, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        tok = MicroTransformerTokenizer.train_from_iterator(["abcabc"], engine=engine, vocab_size=5000)
    assert tok.vocab_size < 5000
    assert any("vocab capped" in r.message and "smaller --vocab_size" in r.message for r in caplog.records)
    assert tok.decode(tok.encode("abcabc")) == "abcabc"


def test_sentencepiece_impossible_vocab() -> None:
    with pytest.raises(VocabSizeError, match="raise --vocab_size|sentencepiece"):
        # 40 distinct CJK characters + 256 bytes + <unk> do not fit in 270 ordinary pieces
        MicroTransformerTokenizer.train_from_iterator(
            ["".join(chr(0x4E00 + i) for i in range(40))], engine="sentencepiece", vocab_size=282
        )


def test_unknown_engine(capsys) -> None:
    with pytest.raises(UnknownEngineError, match="choose one of: bpe, hf-bytelevel"):
        MicroTransformerTokenizer.train_from_iterator(["x"], engine="wordpiece", vocab_size=300)
    assert main(["tokenizer", "train", "--engine", "wordpiece"]) == 2  # argparse's error lists the valid names
    err = capsys.readouterr().err
    assert "invalid choice: 'wordpiece'" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_non_str_items() -> None:
    with pytest.raises(Exception, match="must be str"):
        MicroTransformerTokenizer.train_from_iterator([b"bytes"], vocab_size=300)


def test_bare_string_is_one_document() -> None:
    tok = MicroTransformerTokenizer.train_from_iterator("hello hello hello", vocab_size=270, special_tokens=[])
    assert tok.n_ordinary > 256  # learned merges, not per-character documents


def test_missing_tokenizer_dir(tmp_path, capsys) -> None:
    with pytest.raises(TokenizerNotFoundError, match="mtx tokenizer train"):
        MicroTransformerTokenizer.from_pretrained(tmp_path / "nope")
    with pytest.raises(TokenizerNotFoundError, match=CONFIG_FILE):
        MicroTransformerTokenizer.from_pretrained(tmp_path)
    code, err = cli(capsys, "tokenizer", "test", "--tokenizer_path", str(tmp_path / "nope"))
    assert code == 2 and "no tokenizer directory" in err


def test_damaged_engine_file_named(saved, capsys) -> None:
    ranks = saved / "tokenizer.tiktoken"
    ranks.write_bytes(ranks.read_bytes()[:-40])
    with pytest.raises(TokenizerFormatError, match="tokenizer.tiktoken is damaged"):
        MicroTransformerTokenizer.from_pretrained(saved)
    code, err = cli(capsys, "tokenizer", "encode", "--tokenizer_path", str(saved), "hi")
    assert code == 2 and "tokenizer.tiktoken" in err


def test_damaged_config_named(saved) -> None:
    (saved / CONFIG_FILE).write_text("{not json")
    with pytest.raises(TokenizerFormatError, match=CONFIG_FILE):
        MicroTransformerTokenizer.from_pretrained(saved)


def test_newer_format_version(saved) -> None:
    cfg = json.loads((saved / CONFIG_FILE).read_text())
    cfg["format_version"] = 99
    (saved / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(TokenizerFormatError, match="newer than this microtransformer"):
        MicroTransformerTokenizer.from_pretrained(saved)


def test_python_m_entry_point(tmp_path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "microtransformer", "tokenizer", "test", "--tokenizer_path", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no tokenizer directory") and "Traceback" not in proc.stderr
