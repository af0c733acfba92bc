"""Token shards: a corpus encoded once into flat ``train.bin`` / ``val.bin`` memmaps.

Why flat files: training draws random windows, and ``numpy.memmap`` lets the
OS page in only the windows it needs, so a corpus larger than RAM trains
fine (nanoGPT's format). Layout of ``output_dir``::

    train.bin   uint16 (vocab <= 65,536) or uint32 token ids, no header
    val.bin     same dtype
    meta.json   tokenizer path + fingerprint, dtype, token/byte/document counts

Every document starts with one BOS (EOS if the tokenizer has no BOS), so the
model learns where documents begin and sampling can start from BOS. The
split is by documents, never mid-document, with one exception: a document
longer than ``max_piece_chars`` is first cut at paragraph boundaries into
pieces; by default that happens only in corpora of fewer than 20 files (e.g.
a single 1 MB book, which has no other place to split), see
:func:`auto_piece_chars`.
A piece goes to ``val`` when that brings val's share of the text seen so far
closer to ``val_fraction``, which interleaves val through the corpus (no "val is only the
last book" bias) and is deterministic and streaming.

Memory stays bounded: documents are encoded in chunks of ~``chunk_chars``
characters (``encode_batch`` over threads) and appended to the files.

>>> meta = prepare_shards(Corpus.builtin(), tok, "shards/")  # doctest: +SKIP
>>> meta.splits["val"].tokens  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from microtransformer.data.corpus import cut_pieces
from microtransformer.errors import ConfigError, DataError
from microtransformer.io import DirectoryLock, atomic_write_json, member_path, read_json, remove_stale_temporaries

if TYPE_CHECKING:  # pragma: no cover
    from microtransformer.data.corpus import Corpus
    from microtransformer.tokenization import MicroTransformerTokenizer

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
SPLITS = ("train", "val")
FORMAT_VERSION = 1
DEFAULT_MAX_PIECE_CHARS = 1 << 20
MIN_PIECE_CHARS = 1 << 10
FEW_FILES = 20
DTYPES = ("uint16", "uint32")


@dataclass(frozen=True)
class SplitInfo:
    """One split file: ``tokens`` ids, from ``documents`` pieces holding ``bytes`` bytes of UTF-8 text."""

    file: str
    tokens: int
    bytes: int
    documents: int


@dataclass(frozen=True)
class ShardMeta:
    """Contents of ``meta.json``."""

    dtype: str
    vocab_size: int
    separator_id: int
    tokenizer_path: str
    tokenizer_fingerprint: str
    splits: dict[str, SplitInfo]
    val_fraction: float
    corpus: str
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardMeta:
        data = dict(data)
        data["splits"] = {k: SplitInfo(**v) for k, v in data["splits"].items()}
        return cls(**data)


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """``uint16`` when every id fits (half the disk and page cache), else ``uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


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


def split_path(shards_dir: str | os.PathLike[str], info: SplitInfo) -> Path:
    """The file of one split: a plain name inside ``shards_dir`` (never a path leaving it)."""
    return member_path(shards_dir, info.file, manifest=META_FILE, error=DataError)


def read_meta(shards_dir: str | os.PathLike[str]) -> ShardMeta:
    """Read and check ``meta.json`` and the split files it names; typed errors say what to do."""
    shards_dir = Path(shards_dir)
    path = shards_dir / META_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found: {shards_dir} is not a shards directory; create one with "
            f"`mtx data prepare --tokenizer_path TOK --output_dir {shards_dir}`"
        )
    try:
        meta = ShardMeta.from_json(read_json(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is damaged ({exc}); re-run `mtx data prepare`") from exc
    if meta.format_version > FORMAT_VERSION:
        raise DataError(f"{path} has format_version {meta.format_version}; upgrade microtransformer to read it")
    if meta.dtype not in DTYPES:
        raise DataError(f"{path} has dtype {meta.dtype!r}; shards are {' or '.join(DTYPES)}: re-run `mtx data prepare`")
    itemsize = np.dtype(meta.dtype).itemsize
    for name, info in meta.splits.items():
        f = split_path(shards_dir, info)
        if not f.is_file():
            raise DataError(f"{f} is missing; re-run `mtx data prepare` for {shards_dir}")
        if f.stat().st_size != info.tokens * itemsize:
            raise DataError(
                f"{f} has {f.stat().st_size} bytes but meta.json says {info.tokens} tokens of {meta.dtype} "
                f"({info.tokens * itemsize} bytes): the shard is truncated or from another run; re-run `mtx data prepare`"
            )
    return meta


class _SplitWriter:
    """Appends token arrays to ``<split>.bin.tmp``; renamed into place by ``finish``."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype) -> None:
        self.final = directory / f"{split}.bin"
        self.tmp = directory / f".{split}.bin.tmp"
        self.f = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self.dtype = dtype
        self.tokens = 0
        self.bytes = 0
        self.documents = 0

    def write(self, ids: list[int], n_bytes: int) -> None:
        arr = np.asarray(ids, dtype=self.dtype)
        arr.tofile(self.f)
        self.tokens += arr.size
        self.bytes += n_bytes
        self.documents += 1

    def finish(self) -> SplitInfo:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.final)
        return SplitInfo(file=self.final.name, tokens=self.tokens, bytes=self.bytes, documents=self.documents)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def prepare_shards(
    corpus: Corpus,
    tokenizer: MicroTransformerTokenizer,
    output_dir: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    tokenizer_path: str | os.PathLike[str] | None = None,
    max_piece_chars: int | None = None,
    chunk_chars: int = 4 << 20,
    num_threads: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> ShardMeta:
    """Encode ``corpus`` into ``output_dir/{train,val}.bin`` + ``meta.json``; returns the meta.

    ``max_piece_chars`` defaults to :func:`auto_piece_chars`. Files are read
    in blocks and cut into pieces as they stream, so memory does not grow
    with the size of one file. ``output_dir`` is locked while this runs: a
    second writer gets :class:`~microtransformer.errors.DirectoryInUseError`.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for name, value in (("max_piece_chars", max_piece_chars), ("chunk_chars", chunk_chars), ("num_threads", num_threads)):
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
    with DirectoryLock(output_dir, purpose="mtx data prepare"):
        if (output_dir / META_FILE).exists() and not overwrite:  # another process finished first
            raise DataError(f"{output_dir} already holds shards ({META_FILE}); pass --overwrite or choose another --output_dir")
        remove_stale_temporaries(output_dir)
        return _write_shards(
            corpus, tokenizer, output_dir, sep=sep, val_fraction=val_fraction, tokenizer_path=tokenizer_path,
            max_piece_chars=max_piece_chars, chunk_chars=chunk_chars, num_threads=num_threads, show_progress=show_progress,
        )


def _write_shards(
    corpus: Corpus,
    tokenizer: MicroTransformerTokenizer,
    output_dir: Path,
    *,
    sep: int,
    val_fraction: float,
    tokenizer_path: str | os.PathLike[str] | None,
    max_piece_chars: int,
    chunk_chars: int,
    num_threads: int | None,
    show_progress: bool,
) -> ShardMeta:
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    writers = {s: _SplitWriter(output_dir, s, dtype) for s in SPLITS}
    seen = {"train": 0, "val": 0}
    bar = tqdm(total=corpus.file_bytes, desc="encoding shards", unit="B", unit_scale=True, disable=not show_progress)

    def flush(batch: list[tuple[str, bool, str]]) -> None:
        ids_list = tokenizer.encode_batch([t for t, _, _ in batch], num_threads=num_threads)
        for (text, first, split), ids in zip(batch, ids_list):
            n_bytes = len(text.encode("utf-8"))
            writers[split].write([sep, *ids] if first else ids, n_bytes)
            bar.update(n_bytes)
        bar.set_postfix(tokens=writers["train"].tokens + writers["val"].tokens)

    try:
        batch: list[tuple[str, bool, str]] = []
        batch_chars = 0
        for text, first in corpus.iter_pieces(max_piece_chars):
            if not text:
                continue
            # a piece goes to val when that brings val's share of the text so far closer to val_fraction
            target = val_fraction * (seen["train"] + seen["val"] + len(text))
            split = "val" if abs(seen["val"] + len(text) - target) < abs(seen["val"] - target) else "train"
            seen[split] += len(text)
            batch.append((text, first, split))
            batch_chars += len(text)
            if batch_chars >= chunk_chars:
                flush(batch)
                batch, batch_chars = [], 0
        if batch:
            flush(batch)
        bar.close()
        for split in SPLITS:
            if split == "train" and writers[split].tokens == 0:
                raise DataError(f"the corpus {corpus.describe()} produced no tokens; check the data path")
            if split == "val" and val_fraction > 0 and writers[split].tokens == 0:
                raise DataError(
                    f"the val split is empty: {corpus.describe()} has too little text to hold out "
                    f"{val_fraction:.0%}; add text or pass a smaller --max_piece_chars"
                )
        infos = {s: w.finish() for s, w in writers.items()}
    except BaseException:
        for w in writers.values():
            if not w.f.closed:
                w.abort()
        raise
    meta = ShardMeta(
        dtype=dtype.name,
        vocab_size=tokenizer.vocab_size,
        separator_id=int(sep),
        tokenizer_path=str(Path(tokenizer_path).resolve()) if tokenizer_path else "",
        tokenizer_fingerprint=tokenizer.fingerprint,
        splits=infos,
        val_fraction=val_fraction,
        corpus=corpus.describe(),
        extra={"max_piece_chars": max_piece_chars, "skipped": [str(x) for x in corpus.skipped]},
    )
    atomic_write_json(output_dir / META_FILE, meta.to_json())  # last: marks the shards complete
    logger.info(
        "wrote %s: train %d tokens (%d bytes), val %d tokens (%d bytes), dtype %s",
        output_dir, infos["train"].tokens, infos["train"].bytes, infos["val"].tokens, infos["val"].bytes, dtype.name,
    )
    return meta
