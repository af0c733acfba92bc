from __future__ import annotations

import logging

import pytest

from microtransformer.data.corpus import Corpus, read_text_file, split_holdout
from microtransformer.errors import ConfigError, CorpusError


def test_folder_recursive_with_extensions(tmp_path, caplog) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub" / "b.md").write_text("# beta")
    (tmp_path / "sub" / "deeper" / "c.rs").write_text("fn main() {}")
    (tmp_path / "sub" / "skip.bin").write_bytes(b"ignored: wrong extension")
    (tmp_path / "sub" / "bin.py").write_bytes(b"\x00\x00binary")
    corpus = Corpus.from_dir(tmp_path)
    with caplog.at_level(logging.WARNING):
        docs = list(corpus.iter_documents())
    assert docs == ["alpha", "# beta", "fn main() {}"]
    assert any("skipped 1 path(s)" in r.message and "bin.py (binary" in r.message for r in caplog.records)
    assert [s.path.name for s in corpus.skipped] == ["bin.py"] and "1 path(s) skipped" in corpus.describe()


def test_bom_and_crlf(tmp_path) -> None:
    p = tmp_path / "w.txt"
    p.write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    assert read_text_file(p) == "line one\nline two\n"


def test_real_gutenberg_file(shared_data_dir) -> None:
    text = read_text_file(shared_data_dir / "pride_and_prejudice.txt")
    assert not text.startswith("\ufeff") and "\r" not in text and "Elizabeth" in text


def test_invalid_utf8_names_file_and_offset(tmp_path) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(b"good line\nbad \xff byte")
    with pytest.raises(CorpusError, match=r"bad.txt is not valid UTF-8: byte offset 14 \(line 2\).*--errors replace"):
        read_text_file(p)
    assert read_text_file(p, errors="replace") == "good line\nbad \ufffd byte"
    assert list(Corpus.from_file(p, errors="replace").iter_documents()) == ["good line\nbad \ufffd byte"]


def test_builtin_corpus() -> None:
    docs = list(Corpus.builtin().iter_documents())
    assert len(docs) > 50 and sum(map(len, docs)) > 100_000
    code = Corpus.from_args(corpus="builtin-code")
    assert sum(1 for _ in code.iter_documents()) > len(docs)


def test_from_args_conflicts_and_missing(tmp_path) -> None:
    with pytest.raises(ConfigError, match="only one"):
        Corpus.from_args(data_file="a", data_dir="b")
    with pytest.raises(CorpusError, match="does not exist"):
        Corpus.from_args(data_file=str(tmp_path / "none.txt"))
    assert Corpus.from_args().builtin_name == "builtin"


def test_split_holdout_cuts_at_newline() -> None:
    docs = ["\n".join(f"line {i}" for i in range(100))]
    train, held = split_holdout(iter(docs), fraction=0.1)
    parts = list(train)
    assert parts[0] + held[0] == docs[0]
    assert held[0].startswith("line ") and parts[0].endswith("\n")
