"""Training text from a file, a folder, or the built-in default corpus.

The built-in corpus needs no download: every Python install ships the
documentation topics behind ``help()`` (``pydoc_data.topics``, ~0.5 MB of
English prose with code) and the standard library's own ``.py`` sources.

Documents are streamed one at a time (a file, or one help topic), never joined
into one string, and a large file is itself read in blocks and handed on in
pieces (``iter_documents(max_chars=...)``, ``iter_pieces``), so memory does
not grow with the size of one file. Pieces end at a line break in running
text (``"...end.\\n|Next..."``), else at the end of a blank-line run before
a paragraph, else before a space that starts a word, and only as a last
resort (a line longer than a piece with no spaces) anywhere. For the GPT-2
and GPT-4 split patterns the first and third are always boundaries between
pre-split chunks, and the second is one for GPT-4 (the ``bpe`` default), so
training on the pieces counts the chunks the whole file has. A UTF-8
sequence is never split (blocks are decoded incrementally).

Files are read as UTF-8 (a BOM is dropped, CRLF becomes LF); invalid UTF-8
raises an error naming the file and byte offset unless ``errors="replace"``.
A file with a NUL byte anywhere is binary: inside a folder it is skipped, as
are unreadable files and folders; folders are followed through symlinks
(each real folder once). Every skipped path is listed in ``Corpus.skipped``
and in the warning at the end of reading, never dropped silently.

>>> corpus = Corpus.from_args(data_dir="data/")  # doctest: +SKIP
>>> sum(1 for _ in corpus.iter_documents())  # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import logging
import os
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from tqdm.auto import tqdm

from microtransformer.errors import ConfigError, CorpusError

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".py", ".js", ".ts", ".java", ".go", ".rs", ".c", ".cpp", ".h"})
BUILTIN_CORPORA = ("builtin", "builtin-code")
BLOCK_BYTES = 1 << 20  # bytes read (and scanned for NUL) at a time
#: Piece size for tokenizer training: small enough that a trainer's buffer of pieces stays small.
TRAIN_PIECE_CHARS = 1 << 16
Errors = Literal["strict", "replace"]
_BOM = codecs.BOM_UTF8


class BinaryFileError(CorpusError):
    """A file looks binary (contains NUL bytes), so it is not training text."""

    def __init__(self, path: Path, offset: int) -> None:
        super().__init__(f"{path} looks like a binary file (NUL byte at offset {offset}), not text")
        self.path, self.offset = path, offset


@dataclass(frozen=True)
class SkippedPath:
    """A path a folder corpus did not read, and why (binary, unreadable, a folder seen twice)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


def _check_not_binary(f: BinaryIO, path: Path) -> None:
    """Scan the whole file for NUL (memchr speed), then rewind: binary is binary wherever the NUL is."""
    offset = 0
    while block := f.read(BLOCK_BYTES):
        nul = block.find(b"\x00")
        if nul != -1:
            raise BinaryFileError(path, offset + nul)
        offset += len(block)
    f.seek(0)


def _open_text_file(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise CorpusError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a directory; use --data_dir for folders") from None


def iter_text_blocks(path: str | os.PathLike[str], errors: Errors = "strict", block_bytes: int = BLOCK_BYTES) -> Iterator[str]:
    """The text of one UTF-8 file in blocks of about ``block_bytes``; BOM removed, ``\\r\\n``/``\\r`` -> ``\\n``.

    The whole file is checked for NUL bytes before the first block is
    yielded. Invalid UTF-8 (``errors="strict"``) raises :class:`CorpusError`
    naming the byte offset and line. ``PermissionError`` and other I/O errors
    propagate (the caller decides whether to skip the file).
    """
    path = Path(path)
    with _open_text_file(path) as f:
        _check_not_binary(f, path)
        decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
        fed = 0  # bytes handed to the decoder so far
        newlines = 0  # b"\n" in those bytes
        carry_cr = False
        first = True
        while True:
            data = f.read(max(block_bytes, len(_BOM)) if first else block_bytes)
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
                    f"{path} is not valid UTF-8: byte offset {start} (line {line}) has "
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
            if text:
                yield text.replace("\r\n", "\n").replace("\r", "\n")
            if final:
                return


def read_text_file(path: str | os.PathLike[str], errors: Errors = "strict") -> str:
    """Read one UTF-8 text file; BOM removed, ``\\r\\n`` and ``\\r`` normalized to ``\\n``."""
    return "".join(iter_text_blocks(path, errors))


def _line_break(text: str, p: int) -> bool:
    """``text[:p]`` ends one line break after text, and text follows: a chunk boundary for GPT-2 and GPT-4."""
    return text[p - 1] == "\n" and p >= 2 and not text[p - 2].isspace() and not text[p].isspace()


def _paragraph(text: str, p: int) -> bool:
    """``text[:p]`` ends a run of line breaks and text follows: a chunk boundary for GPT-4."""
    return text[p - 1] == "\n" and not text[p].isspace()


def _word_start(text: str, p: int) -> bool:
    """``text[p]`` is the single space in front of a word (``"foo| bar"``): a chunk boundary for GPT-2 and GPT-4."""
    return text[p] == " " and not text[p - 1].isspace() and p + 1 < len(text) and not text[p + 1].isspace()


def _cut_point(text: str, max_chars: int) -> int:
    """Where to end the first piece of ``text`` (longer than ``max_chars``): at most ``max_chars`` in.

    The last line break in running text, else the last break before a
    paragraph, else the last space before a word, else exactly ``max_chars``.
    """
    for sep, good, offset in (("\n", _line_break, 1), ("\n", _paragraph, 1), (" ", _word_start, 0)):
        pos = text.rfind(sep, 0, max_chars - offset + 1)
        while pos > 0 or (pos == 0 and offset):
            p = pos + offset
            if 0 < p < len(text) and good(text, p):
                return p
            pos = text.rfind(sep, 0, pos)
    return max_chars


def cut_pieces(blocks: Iterable[str], max_chars: int) -> Iterator[str]:
    """Re-cut a stream of text blocks into pieces of at most ``max_chars`` characters (see the module docstring).

    Holds at most ``max_chars`` plus one block in memory.

    >>> list(cut_pieces(["a\\n\\nb\\n", "\\nc"], 3))
    ['a\\n\\n', 'b\\n\\n', 'c']
    """
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        raise ConfigError(f"max_chars must be a positive integer, got {max_chars!r}")
    buf, start = "", 0
    for block in blocks:
        buf, start = (buf[start:] + block if start < len(buf) else block), 0
        while len(buf) - start > max_chars:
            # the rules look at most two characters past max_chars; a window keeps each cut O(max_chars)
            cut = _cut_point(buf[start : start + max_chars + 2], max_chars)
            yield buf[start : start + cut]
            start += cut
    if start < len(buf):
        yield buf[start:]


def builtin_documents(include_sources: bool = False) -> Iterator[str]:
    """The stdlib's help topics (and optionally its top-level ``.py`` sources), one document each."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name]
    if include_sources:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        for path in sorted(stdlib.glob("*.py")):
            yield read_text_file(path, errors="replace")


@dataclass(frozen=True)
class Corpus:
    """Where training text comes from: explicit files, or the built-in corpus.

    ``files`` is resolved once (sorted, so runs are reproducible); ``builtin_name``
    is ``"builtin"`` (help topics) or ``"builtin-code"`` (topics + stdlib sources).
    ``skipped`` lists the paths a folder corpus left out and why; listing
    fills it, and reading adds binary and unreadable files.
    """

    files: tuple[Path, ...] = ()
    builtin_name: str | None = None
    errors: Errors = "strict"
    skip_binary: bool = False
    source: str = ""
    skipped: list[SkippedPath] = field(default_factory=list, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.errors not in ("strict", "replace"):
            raise ConfigError(f"errors must be 'strict' or 'replace', got {self.errors!r}")
        if self.builtin_name is not None and self.builtin_name not in BUILTIN_CORPORA:
            raise ConfigError(f"unknown built-in corpus {self.builtin_name!r}; choose one of {BUILTIN_CORPORA}")
        if not self.files and self.builtin_name is None:
            raise CorpusError(f"the corpus {self.source!r} has no text files")

    @classmethod
    def builtin(cls, name: str = "builtin") -> Corpus:
        """The built-in corpus: ``"builtin"`` (the stdlib's help topics, the default) or ``"builtin-code"``."""
        return cls(builtin_name=name, source=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], errors: Errors = "strict") -> Corpus:
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"--data_file {path} does not exist or is not a file")
        return cls(files=(path,), errors=errors, source=str(path))

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], errors: Errors = "strict") -> Corpus:
        """Every text/code file under ``path`` (recursive, through symlinks; extensions in :data:`TEXT_EXTENSIONS`)."""
        path = Path(path)
        if not path.is_dir():
            raise CorpusError(f"--data_dir {path} does not exist or is not a directory")
        skipped: list[SkippedPath] = []
        files = tuple(_list_text_files(path, skipped))
        if not files:
            why = f"; skipped: {_describe_skipped(skipped)}" if skipped else ""
            raise CorpusError(
                f"--data_dir {path} has no text files (looked for {', '.join(sorted(TEXT_EXTENSIONS))}, recursively){why}"
            )
        return cls(files=files, errors=errors, skip_binary=True, source=str(path), skipped=skipped)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], errors: Errors = "strict") -> Corpus:
        if str(path) in BUILTIN_CORPORA:
            return cls.builtin(str(path))
        return cls.from_dir(path, errors) if Path(path).is_dir() else cls.from_file(path, errors)

    @classmethod
    def from_args(
        cls,
        data_file: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        corpus: str | None = None,
        errors: Errors = "strict",
    ) -> Corpus:
        """The CLI's ``--data_file`` / ``--data_dir`` / ``--corpus``; none of them means the built-in corpus."""
        given = [x for x in (data_file, data_dir, corpus) if x]
        if len(given) > 1:
            raise ConfigError("pass only one of --data_file, --data_dir and --corpus")
        if data_file:
            return cls.from_file(data_file, errors)
        if data_dir:
            return cls.from_dir(data_dir, errors)
        return cls.builtin(corpus or "builtin")

    @property
    def file_bytes(self) -> int | None:
        """Size on disk of the corpus files (None for the built-in corpus): progress bars and split sizing."""
        return sum(_size(p) for p in self.files) if self.files else None  # unreadable ones count 0 (reported on read)

    def iter_documents(self, progress: bool = False, max_chars: int | None = None) -> Iterator[str]:
        """Yield documents one at a time; a tqdm bar over bytes read when ``progress``.

        With ``max_chars``, a document longer than that comes as several pieces
        (see :func:`cut_pieces`) and no file is ever held in memory whole.
        """
        for blocks in self._iter_blocks(progress):
            if max_chars is None:
                yield "".join(blocks)
            else:
                yield from cut_pieces(blocks, max_chars)

    def iter_pieces(self, max_chars: int, progress: bool = False) -> Iterator[tuple[str, bool]]:
        """``(piece, starts_a_document)`` for every document, cut into pieces of at most ``max_chars``."""
        for blocks in self._iter_blocks(progress):
            first = True
            for piece in cut_pieces(blocks, max_chars):
                yield piece, first
                first = False

    def _iter_blocks(self, progress: bool) -> Iterator[Iterator[str]]:
        """One iterator of text blocks per document, in order; consume each before taking the next."""
        if self.builtin_name is not None:
            docs = builtin_documents(include_sources=self.builtin_name == "builtin-code")
            for doc in tqdm(docs, desc="reading corpus", unit="doc", disable=not progress):
                yield iter((doc,))
            return
        read_skips: list[SkippedPath] = []
        with tqdm(total=self.file_bytes, desc="reading corpus", unit="B", unit_scale=True, disable=not progress) as bar:
            for path in self.files:
                blocks = iter_text_blocks(path, self.errors)
                head = None
                try:
                    head = next(blocks, None)  # binary and permission checks happen before the first block
                except BinaryFileError as exc:
                    if not self.skip_binary:
                        raise
                    read_skips.append(SkippedPath(path, f"binary: NUL byte at offset {exc.offset}"))
                    logger.warning("skipping binary file %s (NUL byte at offset %d)", path, exc.offset)
                    continue
                except PermissionError as exc:
                    if not self.skip_binary:  # a single --data_file: the user must know
                        raise
                    read_skips.append(SkippedPath(path, f"unreadable: {exc.strerror or exc}"))
                    logger.warning("skipping unreadable file %s (%s)", path, exc.strerror or exc)
                    continue
                finally:
                    if head is None:
                        bar.update(_size(path))
                if head is not None:
                    yield _counted(head, blocks, bar, _size(path))
        self.skipped.extend(s for s in read_skips if s not in self.skipped)  # a second pass adds nothing new
        if self.skipped:
            logger.warning(
                "skipped %d path(s) in %s: %s", len(self.skipped), self.source, _describe_skipped(self.skipped)
            )
        n_binary = sum(1 for s in read_skips if s.reason.startswith("binary"))
        if read_skips and len(read_skips) == len(self.files):
            kind = "binary" if n_binary == len(read_skips) else "binary or unreadable"
            raise CorpusError(
                f"every file in {self.source} is {kind} ({len(read_skips)} skipped); point --data_dir at text files"
            )

    def describe(self) -> str:
        if self.builtin_name:
            return f"built-in corpus '{self.builtin_name}'"
        skipped = f" ({len(self.skipped)} path(s) skipped: {_describe_skipped(self.skipped)})" if self.skipped else ""
        return f"{len(self.files)} file(s) from {self.source}{skipped}"


def _counted(head: str, rest: Iterator[str], bar: tqdm, size: int) -> Iterator[str]:
    """``head`` then ``rest``, moving the bar by about each block's bytes and to the file's size at its end."""
    done = 0
    for block in _chain(head, rest):
        step = min(len(block), size - done)  # characters ~ bytes for mostly-ASCII text
        bar.update(step)
        done += step
        yield block
    bar.update(size - done)


def _chain(head: str, rest: Iterator[str]) -> Iterator[str]:
    yield head
    yield from rest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _describe_skipped(skipped: list[SkippedPath], limit: int = 5) -> str:
    shown = ", ".join(str(s) for s in skipped[:limit])
    return shown + (f", and {len(skipped) - limit} more" if len(skipped) > limit else "")


def _list_text_files(root: Path, skipped: list[SkippedPath]) -> list[Path]:
    """Text files under ``root``, following symlinked folders once each; what cannot be listed goes to ``skipped``."""
    seen: set[tuple[int, int]] = set()
    files: list[Path] = []

    def unreadable(exc: OSError) -> None:
        skipped.append(SkippedPath(Path(exc.filename or root), f"unreadable folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            unreadable(exc)
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a symlink loop, or a second link to a folder already read
            skipped.append(SkippedPath(Path(dirpath), "folder already read through another path (symlink)"))
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            if p.suffix.lower() not in TEXT_EXTENSIONS:
                continue
            if p.is_file():
                files.append(p)
            elif p.is_symlink():
                skipped.append(SkippedPath(p, "broken symlink"))
    return sorted(files)


def split_holdout(docs: Iterator[str], fraction: float = 0.02, max_chars: int = 1 << 20) -> tuple[Iterator[str], list[str]]:
    """Hold out the tail ``fraction`` of every document (cut at a newline) for evaluation.

    Returns a generator of the training parts and a list that fills with the
    held-out parts as the generator is consumed (capped at ``max_chars``), so
    bytes-per-token can be measured on text the tokenizer never saw.
    """
    held: list[str] = []
    budget = [max_chars]

    def gen() -> Iterator[str]:
        for doc in docs:
            cut = int(len(doc) * (1 - fraction))
            nl = doc.rfind("\n", 0, cut)
            cut = nl + 1 if nl > 0 else cut
            if budget[0] > 0 and cut < len(doc):
                tail = doc[cut:][: budget[0]]
                held.append(tail)
                budget[0] -= len(tail)
                doc = doc[:cut]
            if doc:
                yield doc

    return gen(), held
