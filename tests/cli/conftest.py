"""A small text, tokenizer and shards shared by the CLI tests of one module (built once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    from pydoc_data.topics import topics

    from microtransformer.data.corpus import Corpus
    from microtransformer.data.prepare import prepare_shards
    from microtransformer.tokenization import MicroTransformerTokenizer

    root = tmp_path_factory.mktemp("data")
    text = root / "input.txt"
    text.write_text("".join(topics[k] for k in ("assignment", "if", "for", "while")), encoding="utf-8")
    tok = MicroTransformerTokenizer.train(text, vocab_size=300, show_progress=False)
    tok.save(root / "tok")
    prepare_shards(Corpus.from_file(text), tok, root / "shards", val_fraction=0.2, tokenizer_path=root / "tok",
                   show_progress=False)
    return {"root": root, "text": text, "tok": root / "tok", "shards": root / "shards"}
