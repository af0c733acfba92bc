"""``mtx data prepare``: a corpus of any size encoded once into token shards, in parallel, and resumable.

The pipeline streams: pieces of the corpus come in one at a time (a block of
one file at most, see :mod:`~microtransformer.data.corpus`), the main thread
puts each in ``train`` or ``val`` and gathers batches of ~``chunk_chars``
characters, one batch encodes while the next is read, and the ids are
appended in corpus order to the split's open file. Memory is bounded by two
batches, whatever the size of a file or of the corpus. Encoding is parallel:
on threads when the engine encodes outside the GIL (tiktoken, Hugging Face
tokenizers, SentencePiece), else on worker processes (the pure-Python
reference engine, the auto-encoder), which start only once a corpus needs a
second batch.

Every document starts with one BOS (EOS if the tokenizer has no BOS), so the
model learns where documents begin and sampling can start from BOS. The split
is by documents, never mid-document, with one exception: a document longer
than ``max_piece_chars`` is first cut at paragraph boundaries into pieces; by
default that happens only in corpora of fewer than 20 files (e.g. a single
1 MB book, which has no other place to split), see :func:`auto_piece_chars`.
A piece goes to ``val`` when that brings val's share of the text seen so far
closer to ``val_fraction``, which interleaves val through the corpus (no "val
is only the last book" bias) and is deterministic and streaming.

Files hold ``shard_tokens`` ids each (:mod:`~microtransformer.data.shards`).
Each time one is complete, the open files are synced and ``prepare_state.json``
records the position in the corpus of the last piece written. A prepare that
was killed continues, when run again with the same arguments, from there:
the open files are cut back to that point, files of the corpus before it are
not read again, and the output equals that of a run never stopped. A changed
corpus, tokenizer or setting starts over. ``meta.json`` is written last and
marks the shards complete.

>>> meta = prepare_shards(Corpus.from_args(data_dir="fineweb/"), tok, "shards/")  # doctest: +SKIP
>>> meta.splits["train"].files[:2]  # doctest: +SKIP
('train_00000.bin', 'train_00001.bin')
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Collection
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microtransformer.data.corpus import PiecePosition, cut_pieces
from microtransformer.data.shards import META_FILE, SPLITS, ShardMeta, SplitInfo, dtype_for_vocab, shard_name
from microtransformer.errors import ConfigError, DataError
from microtransformer.io import DirectoryLock, atomic_write_json, read_json, remove_stale_temporaries

if TYPE_CHECKING:  # pragma: no cover
    from microtransformer.data.corpus import Corpus
    from microtransformer.tokenization import MicroTransformerTokenizer

logger = logging.getLogger(__name__)

STATE_FILE = "prepare_state.json"
STATE_VERSION = 1
DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB of uint16 per file (modded-nanogpt's FineWeb shards hold 1e8 tokens)
DEFAULT_CHUNK_CHARS = 4 << 20
DEFAULT_MAX_PIECE_CHARS = 1 << 20
MIN_PIECE_CHARS = 1 << 10
FEW_FILES = 20
_OUR_FILES = re.compile(r"^(?:train|val)(?:_\d{5})?\.bin(?:\.partial)?$")  # this layout's and the old one's


def split_long_document(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` into pieces of at most ~``max_chars``, at blank lines, else line breaks, else before a word.

    The in-memory form of :func:`~microtransformer.data.corpus.cut_pieces` (which streams).

    >>> split_long_document("a\\n\\nb\\n\\nc", 3)
    ['a\\n\\n', 'b\\n\\n', 'c']
    """
    return list(cut_pieces([text], max_chars)) or [text]


def auto_piece_chars(corpus: Corpus, val_fraction: float) -> int:
    """Longest piece before a document is cut at paragraphs.

    A corpus of many documents is split by whole documents (pieces of 1 MiB
    only bound the memory of one encode call). A corpus of a few files (say,
    one book) cannot hold out 10 % by whole documents, so its documents are cut
    into ~1/4 of the val share (1 KiB..1 MiB) and the share comes out close.
    """
    if corpus.builtin_name is not None or len(corpus.files) >= FEW_FILES:
        return DEFAULT_MAX_PIECE_CHARS
    total = corpus.file_bytes or 0
    return int(min(DEFAULT_MAX_PIECE_CHARS, max(MIN_PIECE_CHARS, total * max(val_fraction, 0.01) / 4)))


# ------------------------------------------------------------------ encoding
_worker_tokenizer: Any = None


def _init_worker(tokenizer: Any) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it keeps what is written)


def _encode_in_worker(texts: list[str], dtype: str) -> list[np.ndarray]:
    return [np.asarray(ids, dtype=dtype) for ids in _worker_tokenizer.encode_batch(texts, num_threads=1)]


class _Encoder:
    """Encodes one batch at a time in the background: the engine's threads, or a pool of worker processes."""

    def __init__(self, tokenizer: MicroTransformerTokenizer, workers: int, dtype: np.dtype) -> None:
        self.tokenizer, self.workers, self.dtype = tokenizer, workers, dtype.name
        self.use_processes = workers > 1 and not getattr(tokenizer, "releases_gil", False)
        self._background = ThreadPoolExecutor(1, thread_name_prefix="mtx-encode")
        self._pool: Executor | None = None
        self._batches = 0

    def submit(self, texts: list[str]) -> Future[list[np.ndarray]]:
        self._batches += 1
        if self.use_processes and self._batches > 1:  # a corpus of one batch never pays for starting processes
            return self._background.submit(self._in_processes, texts)
        return self._background.submit(self._in_threads, texts)

    def _in_threads(self, texts: list[str]) -> list[np.ndarray]:
        threads = 1 if self.use_processes else self.workers
        return [np.asarray(ids, dtype=self.dtype) for ids in self.tokenizer.encode_batch(texts, num_threads=threads)]

    def _in_processes(self, texts: list[str]) -> list[np.ndarray]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.tokenizer,),
            )
            logger.info("encoding on %d worker processes (the %s engine holds the GIL)", self.workers,
                        self.tokenizer.engine_name)
        size = -(-len(texts) // self.workers)
        slices = [texts[i : i + size] for i in range(0, len(texts), size)]
        return [a for part in self._pool.map(_encode_in_worker, slices, [self.dtype] * len(slices)) for a in part]

    def close(self) -> None:
        self._background.shutdown(wait=True, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Batch:
    """Pieces gathered for one encode call, and where the corpus stands after the last of them."""

    texts: list[str] = field(default_factory=list)
    firsts: list[bool] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    n_bytes: list[int] = field(default_factory=list)
    chars: int = 0
    last: PiecePosition | None = None
    seen: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------- writing
class _CannotResume(Exception):
    """What an interrupted prepare left does not match its state file."""


class _SplitWriter:
    """Appends ids to a split's open file (``train_00003.bin.partial``); a full one is synced and renamed into place."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int, saved: dict[str, Any] | None) -> None:
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.files: list[str] = []
        self.file_tokens: list[int] = []
        self.open_tokens = self.bytes = self.documents = 0
        if saved is not None:
            self._restore(saved)
        self.f = open(self._partial, "r+b" if self._partial.exists() else "wb")  # noqa: SIM115 - closed in finish/close
        self.f.seek(0, os.SEEK_END)

    @property
    def _partial(self) -> Path:
        return self.directory / (shard_name(self.split, len(self.files)) + ".partial")

    @property
    def tokens(self) -> int:
        return sum(self.file_tokens) + self.open_tokens

    def _restore(self, saved: dict[str, Any]) -> None:
        """Put the files back as the state file describes them (a kill may have come after it was written)."""
        itemsize = self.dtype.itemsize
        for name, tokens in zip(saved["files"], saved["file_tokens"]):
            final, partial = self.directory / name, self.directory / (name + ".partial")
            if not final.exists() and partial.exists():
                os.replace(partial, final)  # killed between the state write and the rename
            if not final.is_file() or final.stat().st_size != tokens * itemsize:
                raise _CannotResume(f"{final} is missing or has another size")
            self.files.append(name)
            self.file_tokens.append(int(tokens))
        keep = int(saved["open_tokens"]) * itemsize
        final = self.directory / shard_name(self.split, len(self.files))
        for candidate in (self._partial, final):  # the open file, or the same file renamed once it filled up
            if candidate.is_file() and candidate.stat().st_size >= keep:
                os.replace(candidate, self._partial)
                os.truncate(self._partial, keep)
                break
        else:
            if keep:
                raise _CannotResume(f"{self._partial} is missing or shorter than the state file says")
        self.open_tokens = int(saved["open_tokens"])
        self.bytes, self.documents = int(saved["bytes"]), int(saved["documents"])
        index = len(self.files)
        for p in self.directory.iterdir():  # files a kill left beyond the saved point
            m = re.fullmatch(rf"{self.split}_(\d{{5}})\.bin(\.partial)?", p.name)
            if m and (int(m.group(1)) > index or (int(m.group(1)) == index and not m.group(2))):
                p.unlink()

    def write(self, ids: np.ndarray, n_bytes: int, documents: int) -> bool:
        """Append ``ids``; True when a file was completed on the way."""
        completed = False
        while ids.size:
            take = min(ids.size, self.shard_tokens - self.open_tokens)
            self.f.write(memoryview(np.ascontiguousarray(ids[:take])))
            self.open_tokens += take
            ids = ids[take:]
            if self.open_tokens == self.shard_tokens:
                self._complete()
                completed = True
        self.bytes += n_bytes
        self.documents += documents
        return completed

    def _complete(self, *, last: bool = False) -> None:
        self.sync()
        self.f.close()
        name = shard_name(self.split, len(self.files))
        os.replace(self._partial, self.directory / name)
        self.files.append(name)
        self.file_tokens.append(self.open_tokens)
        self.open_tokens = 0
        if not last:
            self.f = open(self._partial, "wb")  # noqa: SIM115

    def sync(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def state(self) -> dict[str, Any]:
        return {"files": self.files, "file_tokens": self.file_tokens, "open_tokens": self.open_tokens,
                "bytes": self.bytes, "documents": self.documents}

    def finish(self) -> SplitInfo:
        """Close the split: its last file takes its final name (an empty one is removed)."""
        if self.open_tokens:
            self._complete(last=True)
        else:
            self.f.close()
            self._partial.unlink()
        return SplitInfo(files=tuple(self.files), file_tokens=tuple(self.file_tokens), tokens=self.tokens,
                         bytes=self.bytes, documents=self.documents)

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()


def _corpus_identity(corpus: Corpus) -> str:
    """A hash of what the corpus is (its files' names, sizes and times, or the built-in one): a resume reads the same."""
    files = []
    for p in corpus.files:
        try:
            st = p.stat()
            files.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([str(p), -1, -1])
    what = {"builtin": corpus.builtin_name, "python": sys.version_info[:2] if corpus.builtin_name else None,
            "files": files, "text_field": corpus.text_field, "errors": corpus.errors}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()


def _remove_ours(directory: Path, keep: Collection[str] = ()) -> None:
    """Remove shard files (this layout's and the old one's) not in ``keep``: leftovers of an earlier prepare."""
    for p in directory.iterdir():
        if _OUR_FILES.match(p.name) and p.name not in keep and p.is_file():
            p.unlink()


# ---------------------------------------------------------------------- main
def prepare_shards(
    corpus: Corpus,
    tokenizer: MicroTransformerTokenizer,
    output_dir: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    tokenizer_path: str | os.PathLike[str] | None = None,
    max_piece_chars: int | None = None,
    chunk_chars: int | None = None,
    num_threads: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    overwrite: bool = False,
    show_progress: bool = True,
) -> ShardMeta:
    """Encode ``corpus`` into ``output_dir/{train,val}_NNNNN.bin`` + ``meta.json``; returns the meta.

    ``max_piece_chars`` defaults to :func:`auto_piece_chars`; ``num_threads``
    (threads or processes, see the module docstring) to ``min(8, cpu_count)``;
    ``chunk_chars`` (characters per encode batch) to 4 Mi, or enough for one
    piece per worker. Neither changes the output.
    A directory an interrupted prepare left is continued (same arguments) or
    started over (anything changed). ``output_dir`` is locked while this runs:
    a second writer gets :class:`~microtransformer.errors.DirectoryInUseError`.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for name, value in (("max_piece_chars", max_piece_chars), ("chunk_chars", chunk_chars), ("num_threads", num_threads),
                        ("shard_tokens", shard_tokens)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    output_dir = Path(output_dir)
    if (output_dir / META_FILE).exists() and not overwrite:
        raise DataError(f"{output_dir} already holds shards ({META_FILE}); pass --overwrite or choose another --output_dir")
    sep = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    if sep is None:
        raise DataError("the tokenizer has neither a BOS nor an EOS token to separate documents; retrain it with the default special tokens")
    if tokenizer.eos_id is None:
        logger.warning(
            "the tokenizer has no eos token (special tokens: %s): documents are separated by bos only, so a model "
            "trained on these shards never learns to end a text; retrain the tokenizer with one (e.g. eos=<|eos|>)",
            ", ".join(tokenizer.special_tokens) or "none",
        )
    if max_piece_chars is None:
        max_piece_chars = auto_piece_chars(corpus, val_fraction)
    workers = num_threads or min(8, os.cpu_count() or 1)
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    settings = {
        "tokenizer_fingerprint": tokenizer.fingerprint, "dtype": dtype.name, "separator_id": int(sep),
        "val_fraction": val_fraction, "max_piece_chars": max_piece_chars, "shard_tokens": shard_tokens,
        "corpus": _corpus_identity(corpus),
    }
    with DirectoryLock(output_dir, purpose="mtx data prepare"):
        if (output_dir / META_FILE).exists():
            if not overwrite:  # another process finished first
                raise DataError(f"{output_dir} already holds shards ({META_FILE}); pass --overwrite or choose another --output_dir")
            (output_dir / META_FILE).unlink()  # from here the old shards are gone: never a meta.json over a mix of two runs
            (output_dir / STATE_FILE).unlink(missing_ok=True)
        remove_stale_temporaries(output_dir)
        state = _resumable_state(output_dir, settings)
        run = _ShardRun(corpus, tokenizer, output_dir, settings=settings, sep=int(sep), dtype=dtype, workers=workers,
                        chunk_chars=chunk_chars or max(DEFAULT_CHUNK_CHARS, workers * max_piece_chars),
                        show_progress=show_progress)
        infos = run.write(state)
        meta = ShardMeta(
            dtype=dtype.name,
            vocab_size=tokenizer.vocab_size,
            separator_id=int(sep),
            tokenizer_path=str(Path(tokenizer_path).resolve()) if tokenizer_path else "",
            tokenizer_fingerprint=tokenizer.fingerprint,
            splits=infos,
            val_fraction=val_fraction,
            corpus=corpus.describe(),
            shard_tokens=shard_tokens,
            extra={"max_piece_chars": max_piece_chars, "skipped": run.skipped()},
        )
        _remove_ours(output_dir, keep={name for info in infos.values() for name in info.files})
        atomic_write_json(output_dir / META_FILE, meta.to_json())  # last: marks the shards complete
        (output_dir / STATE_FILE).unlink(missing_ok=True)
    logger.info(
        "wrote %s: train %d tokens (%d bytes, %d files), val %d tokens (%d bytes), dtype %s",
        output_dir, infos["train"].tokens, infos["train"].bytes, len(infos["train"].files), infos["val"].tokens,
        infos["val"].bytes, dtype.name,
    )
    return meta


def _resumable_state(output_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The state an interrupted prepare with the same settings left, else None (and its files removed)."""
    path = output_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = read_json(path)
        same = state.get("version") == STATE_VERSION and state.get("settings") == settings
    except (ValueError, AttributeError):
        state, same = None, False
    if not same:
        logger.warning("%s holds an interrupted prepare of another corpus, tokenizer or settings; starting over", output_dir)
        _remove_ours(output_dir)
        path.unlink()
        return None
    return state


class _ShardRun:
    """One pass of the pipeline over the corpus (from the start, or from where an interrupted one stopped)."""

    def __init__(self, corpus: Corpus, tokenizer: MicroTransformerTokenizer, output_dir: Path, *, settings: dict[str, Any],
                 sep: int, dtype: np.dtype, workers: int, chunk_chars: int, show_progress: bool) -> None:
        self.corpus, self.tokenizer, self.output_dir, self.settings = corpus, tokenizer, output_dir, settings
        self.sep = np.asarray([sep], dtype=dtype)
        self.dtype, self.workers, self.chunk_chars, self.show_progress = dtype, workers, chunk_chars, show_progress
        self._skipped_before: list[str] = []

    def skipped(self) -> list[str]:
        return sorted(set(self._skipped_before) | {str(s) for s in self.corpus.skipped})

    def write(self, state: dict[str, Any] | None) -> dict[str, SplitInfo]:
        out = self.output_dir
        try:
            self.writers = self._open_writers(state)
        except _CannotResume as exc:
            logger.warning("cannot continue the interrupted prepare in %s (%s); starting over", out, exc)
            _remove_ours(out)
            (out / STATE_FILE).unlink(missing_ok=True)
            state = None
            self.writers = self._open_writers(None)
        start = None
        self.seen = {"train": 0, "val": 0}
        if state is not None:
            start = PiecePosition(*state["position"])
            self.seen = dict(state["seen"])
            self._skipped_before = list(state.get("skipped", []))
            logger.info("continuing the interrupted prepare in %s after %s (train %d tokens, val %d so far)",
                        out, start, self.writers["train"].tokens, self.writers["val"].tokens)
        encoder = _Encoder(self.tokenizer, self.workers, self.dtype)
        try:
            self._stream(encoder, start)
        except BaseException:
            for w in self.writers.values():  # what is written up to the state file stays, to be continued
                w.close()
            raise
        finally:
            encoder.close()
        self._check_not_empty()
        return {split: w.finish() for split, w in self.writers.items()}

    def _open_writers(self, state: dict[str, Any] | None) -> dict[str, _SplitWriter]:
        writers: dict[str, _SplitWriter] = {}
        try:
            for split in SPLITS:
                saved = state["splits"][split] if state else None
                writers[split] = _SplitWriter(self.output_dir, split, self.dtype, self.settings["shard_tokens"], saved)
        except BaseException:
            for w in writers.values():
                w.close()
            raise
        return writers

    def _stream(self, encoder: _Encoder, start: PiecePosition | None) -> None:
        val_fraction = self.settings["val_fraction"]
        pending: deque[tuple[Future[list[np.ndarray]], _Batch]] = deque()
        batch = _Batch()

        def send(b: _Batch) -> None:
            b.seen = dict(self.seen)
            pending.append((encoder.submit(b.texts), b))
            while len(pending) > 1:  # one batch encodes while the next is gathered
                self._write(*_popleft_result(pending))

        pieces = self.corpus.iter_located_pieces(self.settings["max_piece_chars"], progress=self.show_progress, start=start)
        for text, first, pos in pieces:
            if not text:
                continue
            # a piece goes to val when that brings val's share of the text so far closer to val_fraction
            target = val_fraction * (self.seen["train"] + self.seen["val"] + len(text))
            split = "val" if abs(self.seen["val"] + len(text) - target) < abs(self.seen["val"] - target) else "train"
            self.seen[split] += len(text)
            batch.texts.append(text)
            batch.firsts.append(first)
            batch.splits.append(split)
            batch.n_bytes.append(len(text) if text.isascii() else len(text.encode("utf-8")))
            batch.chars += len(text)
            batch.last = pos
            if batch.chars >= self.chunk_chars:
                send(batch)
                batch = _Batch()
        if batch.texts:
            send(batch)
        while pending:
            self._write(*_popleft_result(pending))

    def _write(self, arrays: list[np.ndarray], batch: _Batch) -> None:
        completed = False
        for split in SPLITS:
            parts: list[np.ndarray] = []
            n_bytes = documents = 0
            for ids, first, s, nb in zip(arrays, batch.firsts, batch.splits, batch.n_bytes):
                if s == split:
                    parts += [self.sep, ids] if first else [ids]
                    n_bytes += nb
                    documents += 1
            if parts:
                completed |= self.writers[split].write(np.concatenate(parts), n_bytes, documents)
        if completed:
            self._save_state(batch)

    def _save_state(self, batch: _Batch) -> None:
        """Sync the open files, then record where the corpus stands: a killed prepare continues from here."""
        for w in self.writers.values():
            w.sync()
        assert batch.last is not None
        atomic_write_json(self.output_dir / STATE_FILE, {
            "version": STATE_VERSION, "settings": self.settings, "position": list(batch.last.as_tuple()),
            "seen": batch.seen, "splits": {s: w.state() for s, w in self.writers.items()}, "skipped": self.skipped(),
        })

    def _check_not_empty(self) -> None:
        problem = None
        if self.writers["train"].tokens == 0:
            problem = f"the corpus {self.corpus.describe()} produced no tokens; check the data path"
        elif self.settings["val_fraction"] > 0 and self.writers["val"].tokens == 0:
            problem = (
                f"the val split is empty: {self.corpus.describe()} has too little text to hold out "
                f"{self.settings['val_fraction']:.0%}; add text or pass a smaller --max_piece_chars"
            )
        if problem:
            for w in self.writers.values():
                w.close()
            _remove_ours(self.output_dir)  # nothing to continue: the same corpus gives the same answer
            (self.output_dir / STATE_FILE).unlink(missing_ok=True)
            raise DataError(problem)


def _popleft_result(pending: deque[tuple[Future[list[np.ndarray]], _Batch]]) -> tuple[list[np.ndarray], _Batch]:
    future, batch = pending.popleft()
    return future.result(), batch

