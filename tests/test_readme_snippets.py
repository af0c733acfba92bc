"""The README's "PyTorch, the HF way" and "TensorFlow/Keras" code blocks run as printed."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    assert blocks, f"no python block under '## {section}'"
    return blocks


def run_blocks(section: str) -> dict:
    namespace: dict = {"__name__": "readme"}
    for block in python_blocks(section):
        exec(compile(block, f"README.md ({section})", "exec"), namespace)
    return namespace


def test_readme_pytorch_the_hf_way(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns = run_blocks("PyTorch, the HF way")
    printed = capsys.readouterr().out
    assert printed.startswith("[") and len(ns["ids"]) == 2
    assert ns["greedy"].shape[0] == 2 and ns["out"].loss is not None


def test_readme_tensorflow_keras(tf, tmp_path, monkeypatch, capsys):
    from pydoc_data.topics import topics

    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.txt").write_text("".join(topics[k] for k in ("if", "for", "while", "try")), encoding="utf-8")
    ns = run_blocks("TensorFlow/Keras")
    assert (tmp_path / "keras_lm" / "model.keras").is_file() and (tmp_path / "shards" / "train_00000.bin").is_file()
    assert ns["gpt"].output_shape[-1] == ns["tok"].vocab_size
    assert len(capsys.readouterr().out.splitlines()) >= 2
