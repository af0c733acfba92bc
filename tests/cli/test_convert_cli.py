"""``mtx tokenizer convert``: import any supported file, save ours, print the parity line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from microtransformer.cli.main import main
from microtransformer.data.corpus import Corpus
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.reference_bpe import count_pieces, train_merges


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Source path (+ extra flags) of each kind, made by the library it comes from or in its format."""
    root = tmp_path_factory.mktemp("sources")
    docs = list(Corpus.builtin().iter_documents())[:30]
    bpe_dir = MicroTransformerTokenizer.train_from_iterator(docs, vocab_size=600).save(root / "ours")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter("\n".join(docs).splitlines()), model_writer=model, model_type="bpe", vocab_size=600,
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity", add_dummy_prefix=False,
        remove_extra_whitespaces=False, minloglevel=2,
    )
    (root / "sp.model").write_bytes(model.getvalue())
    merges = train_merges(count_pieces(docs[:5]), 300, tie_break="first")
    (root / "minbpe.model").write_text(
        "minbpe v1\n\n0\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return {
        "hf-dir": [str(bpe_dir)],
        "tokenizer.json": [str(bpe_dir / "tokenizer.json")],
        "tiktoken": [str(bpe_dir / "tokenizer.tiktoken"), "--pattern", "gpt4", "--special_tokens", "<|bos|>"],
        "sentencepiece": [str(root / "sp.model")],
        "minbpe": [str(root / "minbpe.model")],
    }


@pytest.mark.parametrize("kind", ["hf-dir", "tokenizer.json", "tiktoken", "sentencepiece", "minbpe"])
def test_convert_prints_parity(sources, kind: str, tmp_path: Path, capsys) -> None:
    src, *flags = sources[kind]
    out = tmp_path / "converted"
    assert main(["tokenizer", "convert", src, "--output_dir", str(out), "--n_strings", "60", *flags]) == 0
    printed = capsys.readouterr().out
    assert "parity: identical ids to" in printed and "on 60 held-out strings" in printed
    assert MicroTransformerTokenizer.from_pretrained(out).encode("Hello, world!")


def test_convert_reports_first_mismatch(sources, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from microtransformer.tokenization.interop import imports

    # an original library that disagrees on the second string: the line names the string and the first difference
    monkeypatch.setattr(imports, "reference_encoder", lambda *a, **k: ("the other library", lambda t: [7, 7] if t else []))
    assert main(["tokenizer", "convert", sources["hf-dir"][0], "--output_dir", str(tmp_path / "o")]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("parity: MISMATCH with the other library on 'Hello, world!': first difference at token 0")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b'{"model": {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "a"}}', "tokenizer.json", "model type 'WordPiece'"),
        (b"\x12\x34garbage", "x.model", "not a valid SentencePiece model"),
        (b"minbpe v1\n\nnot-a-number\n", "y.model", "not a valid minbpe model"),
        (b"QUJD notanint\n", "z.tiktoken", "line 1 is damaged"),
        (b"", "w.vocab", "not a tokenizer file"),
    ],
)
def test_convert_unsupported_or_damaged_exits_2(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "microtransformer", "tokenizer", "convert", str(src), "--output_dir", str(tmp_path / "o"),
         "--pattern", "gpt4"] if name.endswith(".tiktoken") else
        [sys.executable, "-m", "microtransformer", "tokenizer", "convert", str(src), "--output_dir", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0] and "Traceback" not in proc.stderr


def test_train_with_nanochat_presets(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--corpus", "builtin", "--vocab_size", "600", "--special_tokens", "nanochat",
                 "--pattern", "nanochat", "--output_dir", str(out)]) == 0
    tok = MicroTransformerTokenizer.from_pretrained(out)
    assert len(tok.special_tokens) == 9 and tok.bos_id == tok.n_ordinary and r"\p{N}{1,2}" in tok.pattern
