"""Training text from a file, a folder, or the built-in default corpus.

The built-in corpus needs no download: every Python install ships the
documentation topics behind ``help()`` (``pydoc_data.topics``, ~0.5 MB of
English prose with code) and the standard library's own ``.py`` sources.

Documents are streamed one at a time (a file, or one help topic), never joined
into one string. Files are read as UTF-8 (a BOM is dropped, CRLF becomes LF);
invalid UTF-8 raises an error naming the file and byte offset unless
``errors="replace"``. Binary files inside a folder are skipped with a warning.

>>> corpus = Corpus.from_args(data_dir="data/")  # doctest: +SKIP
>>> sum(1 for _ in corpus.iter_documents())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from microtransformer.errors import ConfigError, CorpusError

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".py", ".js", ".ts", ".java", ".go", ".rs", ".c", ".cpp", ".h"})
BUILTIN_CORPORA = ("builtin", "builtin-code")
_SNIFF_BYTES = 8192
Errors = Literal["strict", "replace"]


class BinaryFileError(CorpusError):
    """A file looks binary (contains NUL bytes), so it is not training text."""


def read_text_file(path: str | os.PathLike[str], errors: Errors = "strict") -> str:
    """Read one UTF-8 text file; BOM removed, ``\\r\\n`` and ``\\r`` normalized to ``\\n``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path} does not exist; check --data_file") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a directory; use --data_dir for folders") from None
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise BinaryFileError(f"{path} looks like a binary file (it contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"{path} is not valid UTF-8: byte offset {exc.start} (line {line}) has {data[exc.start:exc.start + 4]!r}. "
            "Convert the file to UTF-8, or pass --errors replace to replace bad bytes with U+FFFD."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
    """

    files: tuple[Path, ...] = ()
    builtin_name: str | None = None
    errors: Errors = "strict"
    skip_binary: bool = False
    source: str = ""

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
        """Every text/code file under ``path`` (recursive; extensions in :data:`TEXT_EXTENSIONS`)."""
        path = Path(path)
        if not path.is_dir():
            raise CorpusError(f"--data_dir {path} does not exist or is not a directory")
        files = tuple(
            sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_EXTENSIONS)
        )
        if not files:
            raise CorpusError(
                f"--data_dir {path} has no text files (looked for {', '.join(sorted(TEXT_EXTENSIONS))}, recursively)"
            )
        return cls(files=files, errors=errors, skip_binary=True, source=str(path))

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
        return sum(p.stat().st_size for p in self.files) if self.files else None

    def iter_documents(self, progress: bool = False) -> Iterator[str]:
        """Yield documents one at a time; a tqdm bar over bytes read when ``progress``."""
        if self.builtin_name is not None:
            docs = builtin_documents(include_sources=self.builtin_name == "builtin-code")
            yield from tqdm(docs, desc="reading corpus", unit="doc", disable=not progress)
            return
        skipped = 0
        with tqdm(total=self.file_bytes, desc="reading corpus", unit="B", unit_scale=True, disable=not progress) as bar:
            for path in self.files:
                try:
                    text = read_text_file(path, self.errors)
                except BinaryFileError:
                    if not self.skip_binary:
                        raise
                    skipped += 1
                    logger.warning("skipping binary file %s", path)
                    continue
                finally:
                    bar.update(path.stat().st_size)
                yield text
        if skipped:
            logger.warning("skipped %d binary file(s) of %d in %s", skipped, len(self.files), self.source)
            if skipped == len(self.files):
                raise CorpusError(
                    f"every file in {self.source} is binary ({skipped} skipped); point --data_dir at text files"
                )

    def describe(self) -> str:
        if self.builtin_name:
            return f"built-in corpus '{self.builtin_name}'"
        return f"{len(self.files)} file(s) from {self.source}"


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
