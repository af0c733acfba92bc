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

Files are text, JSON Lines, Parquet or Arrow, text and JSON Lines also
gzip- or zstd-compressed (:mod:`~microtransformer.data.formats`: a text file
is one document, a record or row one document). Text is UTF-8 (a BOM is
dropped, CRLF becomes LF); invalid UTF-8 raises an error naming the file and
where (byte offset, line, record) unless ``errors="replace"``.
A file with a NUL byte anywhere is binary: inside a folder it is skipped, as
are unreadable files and folders; folders are followed through symlinks
(each real folder once). Every skipped path is listed in ``Corpus.skipped``
and in the warning at the end of reading, never dropped silently.

>>> corpus = Corpus.from_args(data_dir="data/")  # doctest: +SKIP
>>> sum(1 for _ in corpus.iter_documents())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from microtransformer.data.formats import (  # noqa: F401 - BLOCK_BYTES, iter_text_blocks: re-exported
    BLOCK_BYTES,
    COLUMNAR_EXTENSIONS,
    COMPRESSIONS,
    DEFAULT_TEXT_FIELD,
    JSONL_EXTENSIONS,
    TEXT_EXTENSIONS,
    BinaryFileError,
    Errors,
    file_format,
    is_corpus_file,
    iter_text_blocks,
    read_documents,
    require_pyarrow,
)
from microtransformer.errors import ConfigError, CorpusError

logger = logging.getLogger(__name__)

BUILTIN_CORPORA = ("builtin", "builtin-code")
#: Piece size for tokenizer training: small enough that a trainer's buffer of pieces stays small.
TRAIN_PIECE_CHARS = 1 << 16


@dataclass(frozen=True)
class SkippedPath:
    """A path a folder corpus did not read, and why (binary, unreadable, a folder seen twice)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


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
class PiecePosition:
    """Where a piece sits in a corpus: file (or built-in topic list) index, document in it, piece in that.

    Positions order like the pieces (tuple order), so a resumed reader can
    start right after the last piece it handled (``Corpus.iter_pieces(start=...)``).
    """

    file: int
    document: int
    piece: int

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.file, self.document, self.piece)


@dataclass(frozen=True)
class Corpus:
    """Where training text comes from: explicit files, or the built-in corpus.

    ``files`` is resolved once (sorted, so runs are reproducible); ``builtin_name``
    is ``"builtin"`` (help topics) or ``"builtin-code"`` (topics + stdlib sources).
    ``text_field`` is the field (JSON Lines) or column (Parquet, Arrow) that
    holds the text. ``skipped`` lists the paths a folder corpus left out and
    why; listing fills it, and reading adds binary and unreadable files.
    """

    files: tuple[Path, ...] = ()
    builtin_name: str | None = None
    errors: Errors = "strict"
    skip_binary: bool = False
    source: str = ""
    skipped: list[SkippedPath] = field(default_factory=list, compare=False, hash=False, repr=False)
    text_field: str = DEFAULT_TEXT_FIELD

    def __post_init__(self) -> None:
        if self.errors not in ("strict", "replace"):
            raise ConfigError(f"errors must be 'strict' or 'replace', got {self.errors!r}")
        if self.builtin_name is not None and self.builtin_name not in BUILTIN_CORPORA:
            raise ConfigError(f"unknown built-in corpus {self.builtin_name!r}; choose one of {BUILTIN_CORPORA}")
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ConfigError(f"text_field must be a non-empty field name, got {self.text_field!r}")
        if not self.files and self.builtin_name is None:
            raise CorpusError(f"the corpus {self.source!r} has no text files")
        formats = [file_format(f) for f in self.files]  # a compressed .parquet is refused here
        if any(f.columnar for f in formats):
            require_pyarrow()  # before any work, not at the first .parquet file

    @classmethod
    def builtin(cls, name: str = "builtin") -> Corpus:
        """The built-in corpus: ``"builtin"`` (the stdlib's help topics, the default) or ``"builtin-code"``."""
        return cls(builtin_name=name, source=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], errors: Errors = "strict", text_field: str = DEFAULT_TEXT_FIELD) -> Corpus:
        """One file in any format of :mod:`~microtransformer.data.formats` (a name it does not know is text)."""
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"--data_file {path} does not exist or is not a file")
        return cls(files=(path,), errors=errors, source=str(path), text_field=text_field)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], errors: Errors = "strict", text_field: str = DEFAULT_TEXT_FIELD) -> Corpus:
        """Every corpus file under ``path`` (recursive, through symlinks; names :func:`~microtransformer.data.formats.is_corpus_file` accepts)."""
        path = Path(path)
        if not path.is_dir():
            raise CorpusError(f"--data_dir {path} does not exist or is not a directory")
        skipped: list[SkippedPath] = []
        files = tuple(_list_text_files(path, skipped))
        if not files:
            why = f"; skipped: {_describe_skipped(skipped)}" if skipped else ""
            raise CorpusError(f"--data_dir {path} has no text files (looked for {_LOOKED_FOR}, recursively){why}")
        return cls(files=files, errors=errors, skip_binary=True, source=str(path), skipped=skipped, text_field=text_field)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], errors: Errors = "strict", text_field: str = DEFAULT_TEXT_FIELD) -> Corpus:
        if str(path) in BUILTIN_CORPORA:
            return cls.builtin(str(path))
        if Path(path).is_dir():
            return cls.from_dir(path, errors, text_field)
        return cls.from_file(path, errors, text_field)

    @classmethod
    def from_args(
        cls,
        data_file: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        corpus: str | None = None,
        errors: Errors = "strict",
        text_field: str = DEFAULT_TEXT_FIELD,
    ) -> Corpus:
        """The CLI's ``--data_file`` / ``--data_dir`` / ``--corpus``; none of them means the built-in corpus."""
        given = [x for x in (data_file, data_dir, corpus) if x]
        if len(given) > 1:
            raise ConfigError("pass only one of --data_file, --data_dir and --corpus")
        if data_file:
            return cls.from_file(data_file, errors, text_field)
        if data_dir:
            return cls.from_dir(data_dir, errors, text_field)
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
        for _, _, blocks in self._iter_blocks(progress):
            if max_chars is None:
                yield "".join(blocks)
            else:
                yield from cut_pieces(blocks, max_chars)

    def iter_pieces(
        self, max_chars: int, progress: bool = False, *, start: PiecePosition | None = None
    ) -> Iterator[tuple[str, bool]]:
        """``(piece, starts_a_document)`` for every document, cut into pieces of at most ``max_chars``.

        ``start`` skips every piece up to and including that position: files
        before it are not opened at all, its own file is read but not yielded
        up to there.
        """
        for piece, first, _ in self.iter_located_pieces(max_chars, progress, start=start):
            yield piece, first

    def iter_located_pieces(
        self, max_chars: int, progress: bool = False, *, start: PiecePosition | None = None
    ) -> Iterator[tuple[str, bool, PiecePosition]]:
        """As :meth:`iter_pieces`, with each piece's :class:`PiecePosition`."""
        after = start.as_tuple() if start is not None else (-1, -1, -1)
        for file_index, doc_index, blocks in self._iter_blocks(progress, first_file=max(after[0], 0)):
            if (file_index, doc_index) < after[:2]:
                for _ in blocks:  # drain: the reader moves on to the next document
                    pass
                continue
            for piece_index, piece in enumerate(cut_pieces(blocks, max_chars)):
                pos = PiecePosition(file_index, doc_index, piece_index)
                if pos.as_tuple() > after:
                    yield piece, piece_index == 0, pos

    def _iter_blocks(self, progress: bool, first_file: int = 0) -> Iterator[tuple[int, int, Iterator[str]]]:
        """``(file index, document index, text blocks)`` per document, in order; consume each before the next."""
        if self.builtin_name is not None:
            docs = builtin_documents(include_sources=self.builtin_name == "builtin-code")
            for i, doc in enumerate(tqdm(docs, desc="reading corpus", unit="doc", disable=not progress)):
                yield 0, i, iter((doc,))
            return
        read_skips: list[SkippedPath] = []
        initial = sum(_size(p) for p in self.files[:first_file])
        with tqdm(total=self.file_bytes, initial=initial, desc="reading corpus", unit="B", unit_scale=True,
                  disable=not progress) as bar:
            for file_index in range(first_file, len(self.files)):
                path = self.files[file_index]
                docs = read_documents(path, errors=self.errors, text_field=self.text_field, progress=bar.update)
                try:
                    head = next(docs, None)  # whole-file checks (binary, permission, format) happen here
                except BinaryFileError as exc:
                    if not self.skip_binary:
                        raise
                    read_skips.append(SkippedPath(path, f"binary: NUL byte at offset {exc.offset}"))
                    logger.warning("skipping binary file %s (NUL byte at offset %d)", path, exc.offset)
                    bar.update(_size(path))
                    continue
                except PermissionError as exc:
                    if not self.skip_binary:  # a single --data_file: the user must know
                        raise
                    read_skips.append(SkippedPath(path, f"unreadable: {exc.strerror or exc}"))
                    logger.warning("skipping unreadable file %s (%s)", path, exc.strerror or exc)
                    bar.update(_size(path))
                    continue
                if head is None:  # an empty file (or one whose records are all empty)
                    continue
                yield file_index, 0, head
                for doc_index, blocks in enumerate(docs, 1):
                    yield file_index, doc_index, blocks
        self.skipped.extend(s for s in read_skips if s not in self.skipped)  # a second pass adds nothing new
        if self.skipped:
            logger.warning(
                "skipped %d path(s) in %s: %s", len(self.skipped), self.source, _describe_skipped(self.skipped)
            )
        n_binary = sum(1 for s in read_skips if s.reason.startswith("binary"))
        if read_skips and first_file == 0 and len(read_skips) == len(self.files):
            kind = "binary" if n_binary == len(read_skips) else "binary or unreadable"
            raise CorpusError(
                f"every file in {self.source} is {kind} ({len(read_skips)} skipped); point --data_dir at text files"
            )

    def describe(self) -> str:
        if self.builtin_name:
            return f"built-in corpus '{self.builtin_name}'"
        skipped = f" ({len(self.skipped)} path(s) skipped: {_describe_skipped(self.skipped)})" if self.skipped else ""
        return f"{len(self.files)} file(s) from {self.source}{skipped}"


_LOOKED_FOR = (
    " ".join(sorted(TEXT_EXTENSIONS | JSONL_EXTENSIONS | set(COLUMNAR_EXTENSIONS)))
    + f", and {'/'.join(sorted(COMPRESSIONS))} of text or JSON Lines"
)


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
            if not is_corpus_file(p):
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
