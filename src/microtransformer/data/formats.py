"""Corpus files in the formats corpora ship in: text, JSON Lines, Parquet, Arrow; gzip or zstd around text and JSONL.

The format comes from the file name:

- ``.jsonl`` / ``.ndjson``: one JSON object per line, the document in its
  ``text_field`` (``"text"`` by default, as in FineWeb, The Pile, Dolma);
- ``.parquet``: one document per row of the ``text_field`` column (needs
  ``pyarrow``: ``pip install 'microtransformer[parquet]'``);
- ``.arrow``: the same from an Arrow IPC file, which is what a Hugging Face
  ``datasets`` folder (``save_to_disk``, or the cache of ``load_dataset``)
  holds; read offline with ``pyarrow``, no ``datasets`` needed;
- ``.gz`` / ``.zst`` around any text or JSONL name (``books.txt.gz``,
  ``pile_00.jsonl.zst``), decompressed as it streams;
- anything else: UTF-8 text, one document per file.

Every reader streams: text in blocks of ``BLOCK_BYTES``, JSON Lines one line
at a time, Parquet ``ROWS_PER_BATCH`` rows and Arrow one record batch at a
time, so memory does not grow with the file. Text of every format gets the same rules: a BOM is
dropped, CRLF/CR become LF, invalid UTF-8 is an error naming the file and
where (byte offset and line, JSON Lines line, Parquet/Arrow row) unless
``errors="replace"``, and a file with a NUL byte is binary (compressed files
are decompressed once for that check, which also finds a truncated archive
before any of its text is used). A damaged archive, a line that is not a JSON
object, or a record without a string ``text_field`` stops with a
:class:`~microtransformer.errors.CorpusError` that names the file and record.

>>> file_format("pile/00.jsonl.zst")
FileFormat(kind='jsonl', compression='zstd')
>>> docs = read_documents("fineweb/000.parquet", text_field="text")  # doctest: +SKIP
>>> "".join(next(docs))  # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Literal

from microtransformer.errors import ConfigError, CorpusError

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".py", ".js", ".ts", ".java", ".go", ".rs", ".c", ".cpp", ".h"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
COLUMNAR_EXTENSIONS = {".parquet": "parquet", ".arrow": "arrow"}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
BLOCK_BYTES = 1 << 20  # bytes read (and scanned for NUL) at a time
ROWS_PER_BATCH = 256  # Parquet/Arrow rows turned into Python strings at a time
DEFAULT_TEXT_FIELD = "text"
Errors = Literal["strict", "replace"]
Progress = Callable[[int], object]  # called with bytes of the file (on disk) read since the last call
_BOM = codecs.BOM_UTF8
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class BinaryFileError(CorpusError):
    """A file looks binary (contains NUL bytes), so it is not training text."""

    def __init__(self, path: Path, offset: int) -> None:
        super().__init__(f"{path} looks like a binary file (NUL byte at offset {offset}), not text")
        self.path, self.offset = path, offset


@dataclass(frozen=True)
class FileFormat:
    """How a corpus file is read: ``kind`` text/jsonl/parquet/arrow, ``compression`` gzip/zstd/None."""

    kind: Literal["text", "jsonl", "parquet", "arrow"]
    compression: str | None = None

    @property
    def columnar(self) -> bool:
        return self.kind in ("parquet", "arrow")


def file_format(path: str | os.PathLike[str]) -> FileFormat:
    """The format of ``path`` from its name (see the module docstring); unknown names are text."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    inner = suffixes[-2] if compression and len(suffixes) >= 2 else (suffixes[-1] if suffixes and not compression else "")
    if inner in JSONL_EXTENSIONS:
        return FileFormat("jsonl", compression)
    if inner in COLUMNAR_EXTENSIONS:
        if compression:
            raise CorpusError(
                f"{path}: a {inner} file compressed as a whole cannot be streamed; decompress it "
                f"({inner} compresses its columns inside the file already)"
            )
        return FileFormat(COLUMNAR_EXTENSIONS[inner], None)  # type: ignore[arg-type]
    return FileFormat("text", compression)


def is_corpus_file(path: str | os.PathLike[str]) -> bool:
    """Whether a folder corpus reads ``path``: a text/code, JSONL, Parquet or Arrow name, or ``.gz``/``.zst`` of text or JSONL.

    >>> [is_corpus_file(n) for n in ("a.md", "a.jsonl.gz", "a.parquet", "a.gz", "a.json")]
    [True, True, True, False, False]
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if not suffixes:
        return False
    if suffixes[-1] in COMPRESSIONS:
        return len(suffixes) >= 2 and (suffixes[-2] in TEXT_EXTENSIONS or suffixes[-2] in JSONL_EXTENSIONS)
    return suffixes[-1] in TEXT_EXTENSIONS or suffixes[-1] in JSONL_EXTENSIONS or suffixes[-1] in COLUMNAR_EXTENSIONS


def require_pyarrow() -> ModuleType:
    """``import pyarrow``, or a :class:`ConfigError` that says how to install it."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise ConfigError(
            "reading .parquet and .arrow files needs pyarrow, an optional extra: pip install 'microtransformer[parquet]'"
        ) from None


# ------------------------------------------------------------ byte streams
def _open_file(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a directory; use --data_dir for folders") from None


def _zstd_cut_short(path: Path) -> bool:
    """Whether the zstd file ends inside a frame: a walk over frame and block headers (RFC 8878), no decoding.

    ``zstandard``'s stream reader ends quietly at a truncated frame, and its
    ``decompressobj`` has no bound on the output of one call; so data is read
    through the former and completeness checked here (a few bytes per block).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(8)
            magic = int.from_bytes(head[:4], "little")
            if 0x184D2A50 <= magic <= 0x184D2A5F:  # a skippable frame: magic, 4-byte length, data
                if len(head) < 8:
                    return True
                pos += 8 + int.from_bytes(head[4:8], "little")
                continue
            if magic != 0xFD2FB528 or len(head) < 5:  # not a frame (the decoder reports that) or a cut header
                return magic == 0xFD2FB528 or len(head) < 4
            descriptor = head[4]
            single_segment = descriptor >> 5 & 1
            content_size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            pos += 5 + (not single_segment) + (0, 1, 2, 4)[descriptor & 3] + content_size_bytes
            last = False
            while not last and pos <= size:
                f.seek(pos)
                block = f.read(3)
                if len(block) < 3:
                    return True
                header = int.from_bytes(block, "little")
                last, kind, length = bool(header & 1), header >> 1 & 3, header >> 3
                pos += 3 + (1 if kind == 1 else length)  # an RLE block stores one byte
            pos += 4 * (descriptor >> 2 & 1)  # the content checksum
            if not last:
                return True
    return pos > size  # the last frame (or skippable frame) runs past the end of the file


class _Decompressed(io.RawIOBase):
    """The decompressed bytes of a gzip or zstd file; a damaged or truncated archive is a :class:`CorpusError`."""

    def __init__(self, raw: BinaryIO, path: Path, compression: str) -> None:
        super().__init__()
        self.path, self.compression = path, compression
        if compression == "gzip":
            self._reader: Any = gzip.GzipFile(fileobj=raw, mode="rb")
            self._errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)
        else:
            import zstandard

            self._reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 16, read_across_frames=True)
            self._errors = (zstandard.ZstdError,)

    def readable(self) -> bool:
        return True

    def _damaged(self, why: object) -> CorpusError:
        return CorpusError(
            f"{self.path} is not a complete {self.compression} file ({why}); it is damaged or was cut short: "
            "download or compress it again"
        )

    def readinto(self, buffer: Any) -> int:
        try:
            n = self._reader.readinto(buffer)  # at most len(buffer) bytes, however well the data compresses
        except self._errors as exc:
            raise self._damaged(exc) from None
        if n == 0 and self.compression == "zstd" and _zstd_cut_short(self.path):
            raise self._damaged("the last frame is incomplete")
        return n

    def close(self) -> None:
        self._reader.close()
        super().close()


class _Stream:
    """An open corpus file as bytes (decompressed if need be), with how far into the file on disk reading is."""

    def __init__(self, path: Path, compression: str | None) -> None:
        self.raw = _open_file(path)
        self.reader: BinaryIO = (
            io.BufferedReader(_Decompressed(self.raw, path, compression), BLOCK_BYTES)  # type: ignore[arg-type]
            if compression
            else self.raw
        )
        self.size = os.fstat(self.raw.fileno()).st_size
        self._reported = 0

    def report(self, progress: Progress | None, done: bool = False) -> None:
        """Tell ``progress`` how many more bytes of the file on disk were consumed."""
        if progress is None:
            return
        pos = self.size if done else min(self.raw.tell(), self.size)
        if pos > self._reported:
            progress(pos - self._reported)
            self._reported = pos

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.reader.close()
        self.raw.close()


def _check_not_binary(path: Path, compression: str | None) -> None:
    """Read the whole (decompressed) file once looking for NUL (memchr speed): binary is binary wherever the NUL is."""
    offset = 0
    with _Stream(path, compression) as s:
        while block := s.reader.read(BLOCK_BYTES):
            nul = block.find(b"\x00")
            if nul != -1:
                raise BinaryFileError(path, offset + nul)
            offset += len(block)


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


# --------------------------------------------------------------------- text
def iter_text_blocks(
    path: str | os.PathLike[str],
    errors: Errors = "strict",
    block_bytes: int = BLOCK_BYTES,
    *,
    progress: Progress | None = None,
) -> Iterator[str]:
    """The text of one UTF-8 file (plain, ``.gz`` or ``.zst``) in blocks of about ``block_bytes``; BOM removed, CRLF/CR -> LF.

    The whole file is checked for NUL bytes before the first block is
    yielded. Invalid UTF-8 (``errors="strict"``) raises :class:`CorpusError`
    naming the byte offset and line. ``PermissionError`` and other I/O errors
    propagate (the caller decides whether to skip the file).
    """
    path = Path(path)
    compression = file_format(path).compression
    _check_not_binary(path, compression)
    where = " of the decompressed text" if compression else ""
    with _Stream(path, compression) as s:
        decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
        fed = 0  # bytes handed to the decoder so far
        newlines = 0  # b"\n" in those bytes
        carry_cr = False
        first = True
        while True:
            data = s.reader.read(max(block_bytes, len(_BOM)) if first else block_bytes)
            final = not data
            if first:
                first = False
                if data.startswith(_BOM):
                    data, fed = data[len(_BOM) :], len(_BOM)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final=final)
            except UnicodeDecodeError as exc:
                start = fed - pending + exc.start
                line = newlines + exc.object.count(b"\n", 0, exc.start) + 1
                raise CorpusError(
                    f"{path} is not valid UTF-8: byte offset {start} (line {line}){where} has "
                    f"{exc.object[exc.start:exc.start + 4]!r}. Convert the file to UTF-8, "
                    "or pass --errors replace to replace bad bytes with U+FFFD."
                ) from None
            fed += len(data)
            newlines += data.count(b"\n")
            if carry_cr:
                text = "\r" + text
            carry_cr = not final and text.endswith("\r")  # a \r\n may straddle two blocks
            if carry_cr:
                text = text[:-1]
            s.report(progress, done=final)
            if text:
                yield _normalize_newlines(text)
            if final:
                return


# ---------------------------------------------------------------- records
def _decode(data: bytes, path: Path, where: str, what: str, errors: Errors) -> str:
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: {where} is not valid UTF-8 (byte {exc.start} of {what} has "
            f"{exc.object[exc.start:exc.start + 4]!r}); fix the record, or pass --errors replace"
        ) from None


def _record_text(value: Any, path: Path, where: str, text_field: str, errors: Errors) -> str:
    """A record's text, checked: a string (or UTF-8 bytes) that is valid Unicode, newlines normalized."""
    if isinstance(value, bytes):
        value = _decode(value, path, where, repr(text_field), errors)
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise CorpusError(f"{path}: {where} has {kind} in {text_field!r}, not text; drop or fix that record")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a "\ud800" escape in JSON
        if errors == "strict":
            raise CorpusError(
                f"{path}: {where} has a lone surrogate (U+{ord(exc.object[exc.start]):04X}) in {text_field!r}, "
                "which is not valid Unicode; fix the record, or pass --errors replace"
            ) from None
        value = _LONE_SURROGATE.sub("\ufffd", value)  # json.loads has already joined the valid pairs
    return _normalize_newlines(value)


def _jsonl_documents(
    path: Path, compression: str | None, errors: Errors, text_field: str, progress: Progress | None
) -> Iterator[Iterator[str]]:
    _check_not_binary(path, compression)
    where_file = " (decompressed)" if compression else ""
    with _Stream(path, compression) as s:
        for lineno, line in enumerate(s.reader, 1):
            if lineno == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if lineno % 256 == 0:
                s.report(progress)
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            where = f"line {lineno}{where_file}"
            raw = _decode(line, path, where, "the line", errors)
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"{path}: {where} is not valid JSON ({exc.msg} at column {exc.colno}); "
                    "a .jsonl file holds one JSON object per line"
                ) from None
            if not isinstance(record, dict):
                raise CorpusError(f"{path}: {where} is a JSON {type(record).__name__}, not an object with a {text_field!r} field")
            if text_field not in record:
                fields = ", ".join(list(record)[:10]) or "none"
                raise CorpusError(f"{path}: {where} has no field {text_field!r} (it has: {fields}); pass --text_field NAME")
            text = _record_text(record[text_field], path, where, text_field, errors)
            if text:
                yield iter((text,))
        s.report(progress, done=True)


# ---------------------------------------------------------- Parquet / Arrow
def _columnar_batches(path: Path, kind: str, text_field: str) -> tuple[Any, Iterator[Any], int | None]:
    """(column type, record batches of the one column, row count if known); typed errors for a bad file."""
    pa = require_pyarrow()
    _open_file(path).close()  # the same missing-file / folder / permission errors as text files
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            # read each column chunk through a 1 MB buffer: without it pyarrow loads a whole row group's chunk
            pf = pq.ParquetFile(path, buffer_size=BLOCK_BYTES, pre_buffer=False)
            schema, rows = pf.schema_arrow, pf.metadata.num_rows
            if text_field in schema.names:
                return schema.field(text_field).type, pf.iter_batches(batch_size=ROWS_PER_BATCH, columns=[text_field]), rows
        else:
            source = pa.OSFile(str(path))  # read batch by batch (a memory map would count the whole file as resident)
            try:
                reader = pa.ipc.open_stream(source)  # what `datasets` writes
            except pa.ArrowInvalid:
                source.seek(0)
                file_reader = pa.ipc.open_file(source)
                reader = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
                schema = file_reader.schema
            else:
                schema = reader.schema
            rows = None
            if text_field in schema.names:
                column = schema.get_field_index(text_field)
                return schema.field(text_field).type, _closing(source, (b.select([column]) for b in reader)), rows
            source.close()
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, PermissionError):
            raise
        raise CorpusError(f"{path} cannot be read as {kind.capitalize()} ({exc}); is the file complete?") from None
    names = ", ".join(schema.names[:10]) or "none"
    raise CorpusError(f"{path} has no column {text_field!r} (it has: {names}); pass --text_field NAME")


def _closing(source: Any, batches: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from batches
    finally:
        source.close()


def _columnar_documents(
    path: Path, kind: str, errors: Errors, text_field: str, progress: Progress | None
) -> Iterator[Iterator[str]]:
    pa = require_pyarrow()
    col_type, batches, total_rows = _columnar_batches(path, kind, text_field)
    if not (pa.types.is_string(col_type) or pa.types.is_large_string(col_type)
            or pa.types.is_binary(col_type) or pa.types.is_large_binary(col_type)
            or str(col_type) in ("string_view", "binary_view")):
        raise CorpusError(f"{path}: column {text_field!r} holds {col_type}, not text; pass the text column with --text_field")
    size = path.stat().st_size
    row, reported = 0, 0
    try:
        for batch in batches:
            for value in batch.column(0).to_pylist():
                text = _record_text(value, path, f"row {row}", text_field, errors)
                row += 1
                if text:
                    yield iter((text,))
            if progress is not None and total_rows:
                pos = size * row // total_rows
                progress(pos - reported)
                reported = pos
    except pa.ArrowException as exc:
        raise CorpusError(f"{path} is damaged after row {row} ({exc}); is the file complete?") from None
    if progress is not None:
        progress(size - reported)


# ------------------------------------------------------------------- entry
def read_documents(
    path: str | os.PathLike[str],
    *,
    errors: Errors = "strict",
    text_field: str = DEFAULT_TEXT_FIELD,
    progress: Progress | None = None,
) -> Iterator[Iterator[str]]:
    """The documents of one corpus file, each an iterator of text blocks; consume each before taking the next.

    A text file is one document (read in blocks); a JSON Lines record or a
    Parquet/Arrow row is one document (one block; empty ones are left out).
    Every check that can reject the whole file (missing, binary, not the
    format, no ``text_field`` column) happens before the first document.
    ``progress`` is called with bytes of the file on disk as they are read.
    """
    path = Path(path)
    fmt = file_format(path)
    if fmt.columnar:
        yield from _columnar_documents(path, fmt.kind, errors, text_field, progress)
    elif fmt.kind == "jsonl":
        yield from _jsonl_documents(path, fmt.compression, errors, text_field, progress)
    else:
        blocks = iter_text_blocks(path, errors, progress=progress)
        head = next(blocks, None)  # binary and permission checks happen before the first block
        if head is not None:
            yield _chain(head, blocks)


def _chain(head: str, rest: Iterator[str]) -> Iterator[str]:
    yield head
    yield from rest
