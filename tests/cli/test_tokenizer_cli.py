from __future__ import annotations

import pytest

from microtransformer.cli.main import main
from microtransformer.tokenization import MicroTransformerTokenizer


@pytest.mark.parametrize("engine", ["bpe", "sentencepiece"])
def test_train_test_encode(tmp_path, capsys, engine: str) -> None:
    data = tmp_path / "data"
    (data / "code").mkdir(parents=True)
    from pydoc_data.topics import topics  # real varied prose, shipped with Python

    (data / "notes.md").write_text(topics["assignment"] + topics["if"])
    (data / "code" / "x.py").write_text("def add(a, b):\n    return a + b\n" + topics["class"])
    out = tmp_path / "tok"
    # the classic script's flags, hyphen and underscore spellings
    assert main(["tokenizer", "train", "--data_dir", str(data), "--output-dir", str(out), "--vocab_size", "400",
                 "--engine", engine]) == 0
    printed = capsys.readouterr().out
    assert "vocab size:      400" in printed and "training time:" in printed and "bytes per token:" in printed
    assert "The quick brown fox" in printed
    assert MicroTransformerTokenizer.from_pretrained(out).vocab_size == 400

    assert main(["tokenizer", "test", "--tokenizer_path", str(out)]) == 0
    table = capsys.readouterr().out
    assert "FAIL" not in table and "7 passed, 0 skipped, 0 failed" in table

    assert main(["tokenizer", "encode", "--tokenizer_path", str(out), "--no_color", "def add <|bos|>"]) == 0
    shown = capsys.readouterr().out
    assert "ids (" in shown and "pieces:" in shown and "|" in shown


def test_special_tokens_flag(tmp_path, capsys) -> None:
    f = tmp_path / "t.txt"
    f.write_text("text for a BERT style tokenizer " * 50)
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--data_file", str(f), "--output_dir", str(out), "--vocab_size", "300",
                 "--special_tokens", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]) == 0
    tok = MicroTransformerTokenizer.from_pretrained(out)
    assert tok.token_to_id("[SEP]") == tok.eos_id and tok.pad_id == tok.token_to_id("[PAD]")


def test_checks_that_need_a_pad_token_are_skipped_not_failed(tmp_path, capsys) -> None:
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--corpus", "builtin", "--vocab_size", "400", "--output_dir", str(out),
                 "--special_tokens", "<bos>", "<eos>"]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "test", "--tokenizer_path", str(out)]) == 0
    table = capsys.readouterr().out
    skipped = [line.split("  ")[0] for line in table.splitlines() if " SKIP " in line]
    assert skipped == ["truncation + padding", "tensors (return_tensors='pt')", "causal LM inputs"]
    assert "FAIL" not in table and "3 passed, 3 skipped, 0 failed" in table


def test_space_after_newline_flag(tmp_path, capsys) -> None:
    f = tmp_path / "t.txt"
    f.write_text("a line of hard-wrapped text\nwrapped at a column\n\nand more text\n" * 60)
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--data_file", str(f), "--output_dir", str(out), "--vocab_size", "300",
                 "--space_after_newline"]) == 0
    tok = MicroTransformerTokenizer.from_pretrained(out)
    assert tok.space_after_newline and tok.decode(tok.encode("text\nwrapped")) == "text\nwrapped"
    assert tok.encode("text\nwrapped")[-len(tok.encode(" wrapped")):] == tok.encode(" wrapped")
    capsys.readouterr()
    assert main(["tokenizer", "test", "--tokenizer_path", str(out)]) == 0
    assert " 0 failed" in capsys.readouterr().out
