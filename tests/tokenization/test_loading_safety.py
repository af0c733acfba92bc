"""Loading a tokenizer directory reads only its own files, and refuses configs that would break it later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microtransformer.cli.main import main
from microtransformer.errors import TokenizerError, TokenizerFormatError
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.base import CONFIG_FILE


@pytest.fixture
def saved(tmp_path) -> Path:
    tok = MicroTransformerTokenizer.train_from_iterator(["some training text, some more text"] * 20, vocab_size=300)
    return tok.save(tmp_path / "tok")


def _edit(saved: Path, change) -> None:
    cfg = json.loads((saved / CONFIG_FILE).read_text())
    change(cfg)
    (saved / CONFIG_FILE).write_text(json.dumps(cfg))


def _rename_file(saved: Path, old: str, new: str) -> None:
    def change(cfg):
        cfg["files"][new] = cfg["files"].pop(old)

    _edit(saved, change)


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/etc/passwd", "../secret.txt", "sub/tokenizer.tiktoken"])
def test_config_file_names_cannot_leave_the_directory(saved, tmp_path, target: str, capsys) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    _rename_file(saved, "tokenizer.tiktoken", target)
    with pytest.raises(TokenizerFormatError, match="not a plain file name inside that directory") as info:
        MicroTransformerTokenizer.from_pretrained(saved)
    # the message is the same whether the target exists or not: nothing about it is revealed
    assert "damaged" not in str(info.value) and "missing" not in str(info.value)
    assert main(["tokenizer", "encode", "--tokenizer_path", str(saved), "hi"]) == 2
    assert "plain file name" in capsys.readouterr().err


def test_a_symlink_out_of_the_directory_is_refused(saved, tmp_path) -> None:
    outside = tmp_path / "elsewhere.tiktoken"
    (saved / "tokenizer.tiktoken").rename(outside)
    (saved / "tokenizer.tiktoken").symlink_to(outside)
    with pytest.raises(TokenizerFormatError, match="symlink .* outside"):
        MicroTransformerTokenizer.from_pretrained(saved)


def test_a_symlink_inside_the_directory_still_loads(saved) -> None:
    before = MicroTransformerTokenizer.from_pretrained(saved)
    (saved / "tokenizer.tiktoken").rename(saved / "real.tiktoken")
    (saved / "tokenizer.tiktoken").symlink_to(saved / "real.tiktoken")
    assert MicroTransformerTokenizer.from_pretrained(saved).fingerprint == before.fingerprint


def test_duplicate_special_token_in_a_config_is_refused(saved) -> None:
    def change(cfg):
        cfg["special_tokens"][1]["content"] = cfg["special_tokens"][0]["content"]

    _edit(saved, change)
    with pytest.raises(TokenizerFormatError, match="listed twice"):
        MicroTransformerTokenizer.from_pretrained(saved)


@pytest.mark.parametrize("engine", [["bpe"], {"name": "bpe"}, 7, None])
def test_an_engine_that_is_not_a_string_is_a_typed_error(saved, engine, capsys) -> None:
    _edit(saved, lambda cfg: cfg.update(engine=engine))
    with pytest.raises(TokenizerError, match="unknown tokenizer engine"):
        MicroTransformerTokenizer.from_pretrained(saved)
    assert main(["tokenizer", "test", "--tokenizer_path", str(saved)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown tokenizer engine") and "Traceback" not in err
