"""Corpus formats: JSON Lines, Parquet, Arrow (Hugging Face `datasets` folders), gzip and zstd; each with its bad records."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from microtransformer.cli.main import main
from microtransformer.data.corpus import Corpus
from microtransformer.data.formats import FileFormat, file_format, is_corpus_file, read_documents
from microtransformer.errors import ConfigError, CorpusError

DOCS = ["first document\nwith two lines", "second: café ☕ 東京", "x" * 3000 + "\n\nend"]


def _jsonl(records: list, **json_kwargs) -> bytes:
    return "".join(json.dumps(r, **json_kwargs) + "\n" for r in records).encode("utf-8")


def _zstd(data: bytes, frames: int = 1) -> bytes:
    import zstandard

    step = -(-len(data) // frames)
    return b"".join(zstandard.ZstdCompressor().compress(data[i : i + step]) for i in range(0, len(data), step))


def _docs(path: Path, **kwargs) -> list[str]:
    return ["".join(d) for d in read_documents(path, **kwargs)]


def test_format_from_the_name() -> None:
    assert file_format("a/b.jsonl") == FileFormat("jsonl")
    assert file_format("b.NDJSON.GZ") == FileFormat("jsonl", "gzip")
    assert file_format("pile.jsonl.zst") == FileFormat("jsonl", "zstd")
    assert file_format("book.txt.zst") == FileFormat("text", "zstd")
    assert file_format("notes") == FileFormat("text") and file_format("x.json") == FileFormat("text")
    assert file_format("f.parquet") == FileFormat("parquet") and file_format("data-00000-of-00001.arrow") == FileFormat("arrow")
    with pytest.raises(CorpusError, match="decompress it"):
        file_format("f.parquet.gz")
    assert [is_corpus_file(n) for n in ("a.txt.gz", "a.jsonl.zst", "a.arrow", "a.gz", "state.json", "a.tar.gz")] == [
        True, True, True, False, False, False,
    ]


# ------------------------------------------------------------------- JSONL
def test_jsonl_one_document_per_record(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    records = [{"id": i, "text": d} for i, d in enumerate(DOCS)]
    p.write_bytes(b"\xef\xbb\xbf" + _jsonl(records[:2]) + b"\n  \n" + _jsonl(records[2:]).replace(b"\n", b"\r\n"))
    assert _docs(p) == DOCS  # BOM dropped, blank lines skipped, CRLF line ends fine
    q = tmp_path / "body.jsonl"
    q.write_bytes(_jsonl([{"body": "a\r\nb"}, {"body": ""}, {"body": "c"}], ensure_ascii=False))
    assert _docs(q, text_field="body") == ["a\nb", "c"]  # CRLF inside the text becomes LF, as in text files; empty left out
    assert list(Corpus.from_file(q, text_field="body").iter_documents()) == ["a\nb", "c"]


@pytest.mark.parametrize(
    "line, needle",
    [
        (b'{"text": "ok"', r"line 3 is not valid JSON \(Expecting ',' delimiter at column 14\)"),
        (b'["a list"]', r"line 3 is a JSON list, not an object with a 'text' field"),
        (b'{"content": "x", "id": 1}', r"line 3 has no field 'text' \(it has: content, id\); pass --text_field"),
        (b'{"text": null}', r"line 3 has null in 'text', not text"),
        (b'{"text": 42}', r"line 3 has int in 'text', not text"),
        (b'{"text": "caf\xe9"}', r"line 3 is not valid UTF-8 \(byte 13 of the line has b'\\xe9\"}'\)"),
        (b'{"text": "a\\ud800b"}', r"line 3 has a lone surrogate \(U\+D800\) in 'text'"),
    ],
)
def test_jsonl_bad_records_name_the_file_and_line(tmp_path: Path, line: bytes, needle: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(_jsonl([{"text": "a"}, {"text": "b"}]) + line + b"\n")
    with pytest.raises(CorpusError, match=rf"bad.jsonl: {needle}"):
        _docs(p)


def test_jsonl_errors_replace_repairs_text_but_not_structure(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_bytes(b'{"text": "caf\xe9"}\n{"text": "a\\ud800b"}\n')
    assert _docs(p, errors="replace") == ["caf\ufffd", "a\ufffdb"]
    p.write_bytes(b'{"text": "ok"}\nnot json\n')
    with pytest.raises(CorpusError, match="line 2 is not valid JSON"):
        _docs(p, errors="replace")


# --------------------------------------------------------------- gzip, zstd
@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_compressed_text_and_jsonl_read_like_the_plain_files(tmp_path: Path, compression: str) -> None:
    squeeze = gzip.compress if compression == "gz" else lambda b: _zstd(b, frames=3)  # zstd: frames read one after another
    text = "line one\r\nline two é\n" * 2000
    (tmp_path / f"t.txt.{compression}").write_bytes(squeeze(("\ufeff" + text).encode("utf-8")))
    (tmp_path / f"r.jsonl.{compression}").write_bytes(squeeze(_jsonl([{"text": d} for d in DOCS])))
    assert _docs(tmp_path / f"t.txt.{compression}") == [text.replace("\r\n", "\n")]
    assert _docs(tmp_path / f"r.jsonl.{compression}") == DOCS
    corpus = Corpus.from_dir(tmp_path)
    assert len(list(corpus.iter_documents())) == 1 + len(DOCS)


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_compressed_bad_records_and_damaged_archives(tmp_path: Path, compression: str) -> None:
    squeeze = gzip.compress if compression == "gz" else _zstd
    name = "gzip" if compression == "gz" else "zstd"
    bad_text = tmp_path / f"bad.txt.{compression}"
    bad_text.write_bytes(squeeze(b"ok\nstill ok\nbad \xff here\n"))
    with pytest.raises(CorpusError, match=r"bad.txt.* is not valid UTF-8: byte offset 16 \(line 3\) of the decompressed text"):
        _docs(bad_text)
    bad_record = tmp_path / f"bad.jsonl.{compression}"
    bad_record.write_bytes(squeeze(_jsonl([{"text": "a"}, {"txt": "b"}])))
    with pytest.raises(CorpusError, match=r"bad.jsonl.*: line 2 \(decompressed\) has no field 'text'"):
        _docs(bad_record)
    whole = squeeze(("a line of text\n" * 5000).encode())
    cut = tmp_path / f"cut.txt.{compression}"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorpusError, match=rf"cut.txt.* is not a complete {name} file .*cut short"):
        _docs(cut)
    notzip = tmp_path / f"plain.txt.{compression}"
    notzip.write_bytes(b"just text, not compressed\n")
    with pytest.raises(CorpusError, match=rf"is not a complete {name} file"):
        _docs(notzip)


def test_zstd_frames_cut_anywhere_are_found(tmp_path: Path) -> None:
    """The frame walk that finds a cut .zst: checksums, content sizes, skippable frames, every cut position."""
    import zstandard

    from microtransformer.data.formats import _zstd_cut_short

    text = ("a line of text number %d\n" * 3000 % tuple(range(3000))).encode()
    frames = [
        zstandard.ZstdCompressor(write_checksum=True).compress(text[:30000]),
        b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"skip!",  # a skippable frame
        zstandard.ZstdCompressor(write_content_size=False).compress(text[30000:]),
        zstandard.ZstdCompressor(level=1).compress(b"x" * 300_000),  # RLE-friendly blocks
    ]
    whole = b"".join(frames)
    boundaries = {sum(map(len, frames[:i])) for i in range(len(frames) + 1)}
    p = tmp_path / "t.zst"
    for cut in sorted({*range(0, len(whole), 97), *(b + d for b in boundaries for d in (-1, 1, 3, 5))}):
        if 0 < cut <= len(whole):
            p.write_bytes(whole[:cut])
            assert _zstd_cut_short(p) == (cut not in boundaries), cut
    p.write_bytes(whole)
    assert not _zstd_cut_short(p)
    q = tmp_path / "t.txt.zst"
    q.write_bytes(whole)
    assert _docs(q) == [(text + b"x" * 300_000).decode()]


def test_archives_that_compress_a_thousandfold_still_stream_in_blocks(tmp_path: Path) -> None:
    import zstandard

    from microtransformer.data.formats import BLOCK_BYTES, iter_text_blocks

    data = b"ab " * 7_000_000  # 21 MB in a few KB
    for name, packed in (("z.txt.zst", zstandard.ZstdCompressor().compress(data)), ("g.txt.gz", gzip.compress(data))):
        (tmp_path / name).write_bytes(packed)
        assert len(packed) < 100_000
        sizes = [len(b) for b in iter_text_blocks(tmp_path / name)]
        assert sum(sizes) == len(data) and max(sizes) <= BLOCK_BYTES


def test_a_compressed_binary_file_is_skipped_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("text")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"x" * 5_000_000 + b"\x00tail"))  # NUL after the first block
    corpus = Corpus.from_dir(tmp_path)
    assert list(corpus.iter_documents()) == ["text"]
    assert [s.reason for s in corpus.skipped] == ["binary: NUL byte at offset 5000000"]


# ------------------------------------------------------------ Parquet, Arrow
def test_parquet_rows_stream_in_order(pa, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    texts = [f"row {i}: " + "word " * (i % 7) for i in range(1000)]
    p = tmp_path / "f.parquet"
    pq.write_table(pa.table({"id": list(range(1000)), "text": texts}), p, row_group_size=300)
    assert _docs(p) == texts
    pq.write_table(pa.table({"content": pa.array([t.encode() for t in texts[:3]], pa.binary())}), tmp_path / "b.parquet")
    assert _docs(tmp_path / "b.parquet", text_field="content") == texts[:3]  # UTF-8 bytes columns are text too
    assert list(Corpus.from_file(p).iter_documents()) == texts


def test_parquet_bad_rows_name_the_file_and_row(pa, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    p = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["a", "b", None, "d"]}), p)
    with pytest.raises(CorpusError, match=r"bad.parquet: row 2 has null in 'text', not text"):
        _docs(p)
    pq.write_table(pa.table({"text": pa.array([b"ok", b"caf\xe9"], pa.binary())}), p)
    with pytest.raises(CorpusError, match=r"bad.parquet: row 1 is not valid UTF-8 \(byte 3 of 'text' has b'\\xe9'\)"):
        _docs(p)
    assert _docs(p, errors="replace") == ["ok", "caf\ufffd"]
    pq.write_table(pa.table({"body": ["x"], "url": ["u"]}), p)
    with pytest.raises(CorpusError, match=r"bad.parquet has no column 'text' \(it has: body, url\); pass --text_field"):
        _docs(p)
    pq.write_table(pa.table({"text": [1, 2]}), p)
    with pytest.raises(CorpusError, match=r"column 'text' holds int64, not text"):
        _docs(p)
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CorpusError, match=r"bad.parquet cannot be read as Parquet"):
        _docs(p)


def test_a_hugging_face_datasets_folder_reads_offline(pa, tmp_path: Path) -> None:
    """What `Dataset.save_to_disk` writes: Arrow IPC stream files plus JSON metadata (which is not read as text)."""
    d = tmp_path / "saved"
    d.mkdir()
    (d / "dataset_info.json").write_text(json.dumps({"features": {"text": {"dtype": "string"}}}))
    (d / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00002.arrow"}]}))
    rows = [[f"shard {s} row {i}" for i in range(5)] for s in range(2)]
    for s, texts in enumerate(rows):
        table = pa.table({"text": texts, "label": list(range(5))})
        with pa.OSFile(str(d / f"data-0000{s}-of-00002.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            for batch in table.to_batches(max_chunksize=2):
                w.write_batch(batch)
    assert list(Corpus.from_dir(d).iter_documents()) == rows[0] + rows[1]
    with pa.OSFile(str(d / "data-00000-of-00002.arrow"), "wb") as sink, pa.ipc.new_file(sink, pa.schema([("text", pa.string())])) as w:
        w.write_table(pa.table({"text": ["arrow file format"]}))
    assert _docs(d / "data-00000-of-00002.arrow") == ["arrow file format"]
    with pytest.raises(CorpusError, match=r"data-00001-of-00002.arrow has no column 'body' \(it has: text, label\)"):
        _docs(d / "data-00001-of-00002.arrow", text_field="body")


def test_without_pyarrow_a_parquet_corpus_says_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "f.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what a missing package looks like to import
    with pytest.raises(ConfigError, match=r"pip install 'microtransformer\[parquet\]'"):
        Corpus.from_dir(tmp_path)


# ---------------------------------------------------------------- commands
def test_commands_read_every_format_with_text_field(pa, tmp_path: Path, capsys) -> None:
    import pyarrow.parquet as pq
    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)[:40]]
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.jsonl.zst").write_bytes(_zstd(_jsonl([{"body": t} for t in texts[:20]])))
    pq.write_table(pa.table({"body": texts[20:]}), d / "b.parquet")
    tok = tmp_path / "tok"
    assert main(["tokenizer", "train", "--data_dir", str(d), "--text_field", "body", "--vocab_size", "400",
                 "--output_dir", str(tok)]) == 0
    shards = tmp_path / "shards"
    assert main(["data", "prepare", "--tokenizer_path", str(tok), "--data_dir", str(d), "--text-field", "body",
                 "--output_dir", str(shards)]) == 0
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["splits"]["train"]["bytes"] + meta["splits"]["val"]["bytes"] == sum(len(t.encode()) for t in texts)
    capsys.readouterr()
    assert main(["data", "prepare", "--tokenizer_path", str(tok), "--data_dir", str(d), "--output_dir", str(tmp_path / "s2")]) == 2
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("error: ") and "a.jsonl.zst: line 1 (decompressed) has no field 'text' (it has: body)" in last
