"""The README's Python example of the learned tokenizer runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from microtransformer import Corpus
from microtransformer.training import checkpoint as run_format

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_autoencoder_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("### The learned auto-encoder tokenizer")
    end = text.index("\n## ", start)
    (block,) = re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"docs": list(Corpus.builtin().iter_documents())[:40]}
    exec(compile(block, "README.md (auto-encoder)", "exec"), namespace)
    assert namespace["result"].step == 200 and run_format.is_run_dir(tmp_path / "ckpt")
    assert namespace["tok"].engine_name == "autoencoder" and len(namespace["tok"].codes) > 0
    assert namespace["report"].after_fallback.sentences_perfect == namespace["report"].sentences_total
    assert capsys.readouterr().out.strip()
