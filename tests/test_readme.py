"""The README's "Use it elsewhere" snippets run as written (offline), in order, in one namespace.

The only set-up is what the snippets assume exists: a ``bpe`` directory
``tok/``, a ``sentencepiece`` directory ``tok-sp/`` and some documents ``docs``.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported by a snippet

import re
from pathlib import Path

import pytest

from microtransformer import Corpus, MicroTransformerTokenizer

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_blocks(title: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)


def test_use_it_elsewhere_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _section_blocks("Use it elsewhere")
    joined = "\n".join(blocks)
    for library in ("AutoTokenizer", "PreTrainedTokenizerFast", "tiktoken.Encoding", "SentencePieceProcessor", "prepend="):
        assert library in joined, library
    monkeypatch.chdir(tmp_path)
    docs = list(Corpus.builtin().iter_documents())[:40]
    MicroTransformerTokenizer.train_from_iterator(docs, vocab_size=1024).save("tok")
    MicroTransformerTokenizer.train_from_iterator(docs, engine="sentencepiece", vocab_size=1024).save("tok-sp")
    namespace: dict = {"docs": docs}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md snippet {i}", "exec"), namespace)
