from __future__ import annotations

import logging
from pathlib import Path

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


# ------------------------------------------------------------ folders: nothing skipped silently
def _tree(root: Path) -> None:
    (root / "books").mkdir(parents=True)
    for i in range(3):
        (root / "books" / f"b{i}.txt").write_text(f"book {i}\n")
    (root / "notes.md").write_text("notes\n")


def test_symlinked_folders_are_followed_once_and_loops_reported(tmp_path) -> None:
    real = tmp_path / "real"
    _tree(real)
    data = tmp_path / "data"
    data.mkdir()
    (data / "own.txt").write_text("own\n")
    (data / "linked").symlink_to(real)  # a folder of books reached through a symlink
    (real / "books" / "loop").symlink_to(real)  # a loop back to the top
    corpus = Corpus.from_dir(data)
    assert sorted(p.name for p in corpus.files) == ["b0.txt", "b1.txt", "b2.txt", "notes.md", "own.txt"]
    assert [s.path.name for s in corpus.skipped] == ["loop"]
    assert "already read" in corpus.skipped[0].reason and "1 path(s) skipped" in corpus.describe()


def test_unreadable_folders_and_files_are_reported_not_dropped(tmp_path, deny, caplog) -> None:
    _tree(tmp_path)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "hidden.txt").write_text("hidden\n")
    deny(tmp_path / "secret")
    corpus = Corpus.from_dir(tmp_path)
    assert [(s.path.name, s.reason.split(":")[0]) for s in corpus.skipped] == [("secret", "unreadable folder")]
    deny(tmp_path / "books" / "b1.txt")
    with caplog.at_level(logging.WARNING):
        docs = list(corpus.iter_documents())
    assert docs == ["book 0\n", "book 2\n", "notes\n"]
    assert {s.path.name for s in corpus.skipped} == {"secret", "b1.txt"}
    assert any("skipped 2 path(s)" in r.message and "b1.txt (unreadable" in r.message for r in caplog.records)
    list(corpus.iter_documents())  # a second pass reports the same paths once
    assert len(corpus.skipped) == 2
    single = Corpus.from_file(tmp_path / "books" / "b1.txt")
    with pytest.raises(PermissionError):  # one named file the user asked for: an error, not a skip
        list(single.iter_documents())


def test_binary_detection_does_not_depend_on_where_the_nul_is(tmp_path) -> None:
    (tmp_path / "text.txt").write_text("plain text\n")
    late = tmp_path / "late.txt"
    late.write_bytes(b"a" * 20_000 + b"\x00tail")  # NUL far after the first 8 KB
    corpus = Corpus.from_dir(tmp_path)
    assert list(corpus.iter_documents()) == ["plain text\n"]
    assert [(s.path.name, s.reason.split(":")[0]) for s in corpus.skipped] == [("late.txt", "binary")]
    with pytest.raises(CorpusError, match="binary file .NUL byte at offset 20000"):
        read_text_file(late)


# --------------------------------------------------------- streaming within one file
def test_blocks_never_split_a_character_a_crlf_or_lose_the_bom(tmp_path) -> None:
    from microtransformer.data.corpus import iter_text_blocks

    text = "\ufeffé東🙂\r\nline\r\r\nend\r"
    p = tmp_path / "t.txt"
    p.write_bytes(text.encode("utf-8"))
    for block_bytes in range(1, 12):
        blocks = list(iter_text_blocks(p, block_bytes=block_bytes))
        assert "".join(blocks) == "é東🙂\nline\n\nend\n", block_bytes
        assert all("\ufffd" not in b for b in blocks)


def test_invalid_utf8_in_a_later_block_names_the_offset_and_line(tmp_path) -> None:
    from microtransformer.data.corpus import iter_text_blocks

    p = tmp_path / "bad.txt"
    p.write_bytes(b"\xef\xbb\xbf" + "ligne é\n".encode() * 3 + b"x\xe9y\n")  # offset 3 + 27 + 1 = 31, line 4
    for block_bytes in (4, 5, 64):
        with pytest.raises(CorpusError, match=r"byte offset 31 \(line 4\) has b'\\xe9y\\n'"):
            list(iter_text_blocks(p, block_bytes=block_bytes))


_ALPHABET = "ab Z9'.,;!\n\n\t  é東🙂-_"


@pytest.mark.parametrize("pattern_name", ["gpt4", "gpt2"])
def test_pieces_cut_only_between_pre_split_chunks(pattern_name: str) -> None:
    """Training on the pieces counts exactly the chunks of the whole text (GPT-2/GPT-4 split patterns)."""
    import regex
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from microtransformer.data.corpus import _line_break, _paragraph, _word_start, cut_pieces
    from microtransformer.tokenization.special import SPLIT_PATTERNS

    split = regex.compile(SPLIT_PATTERNS[pattern_name])

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=_ALPHABET, max_size=300), st.integers(1, 40), st.integers(1, 7))
    def check(text: str, max_chars: int, block: int) -> None:
        blocks = [text[i : i + block] for i in range(0, len(text), block)]
        pieces = list(cut_pieces(blocks, max_chars))
        assert "".join(pieces) == text
        assert all(0 < len(p) <= max_chars for p in pieces)
        whole = split.findall(text)
        parts = [c for p in pieces for c in split.findall(p)]
        cuts = [sum(map(len, pieces[: i + 1])) for i in range(len(pieces) - 1)]
        safe = (_line_break, _word_start, *((_paragraph,) if pattern_name == "gpt4" else ()))
        if all(any(rule(text, e) for rule in safe) for e in cuts):
            assert parts == whole
        # a cut is never made at max_chars when a line break in running text was in reach
        for start, end in zip([0, *cuts], cuts):
            if end - start == max_chars and text[end - 1] != "\n":
                window = text[: end]
                assert not any(_line_break(window + text[end:], q) for q in range(start + 1, end)), (text, cuts)

    check()


def test_streamed_training_equals_training_on_the_whole_file(tmp_path) -> None:
    from pydoc_data.topics import topics

    from microtransformer.data.corpus import TRAIN_PIECE_CHARS
    from microtransformer.tokenization import MicroTransformerTokenizer

    text = "".join(topics[k] for k in sorted(topics)[:60])
    assert len(text) > 3 * TRAIN_PIECE_CHARS
    p = tmp_path / "one.txt"
    p.write_text(text, encoding="utf-8")
    pieces = list(Corpus.from_file(p).iter_documents(max_chars=TRAIN_PIECE_CHARS))
    assert len(pieces) > 3 and max(map(len, pieces)) <= TRAIN_PIECE_CHARS and "".join(pieces) == text
    streamed = MicroTransformerTokenizer.train(p, vocab_size=600, show_progress=False)
    whole = MicroTransformerTokenizer.train_from_iterator([text], vocab_size=600)
    assert streamed.merges == whole.merges
