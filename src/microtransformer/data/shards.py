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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from microtransformer.errors import ConfigError, DataError
from microtransformer.io import atomic_write_json, read_json

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
    """Cut ``text`` into pieces of at most ~``max_chars``, at blank lines, else newlines, else anywhere.

    >>> split_long_document("a\\n\\nb\\n\\nc", 3)
    ['a\\n\\n', 'b\\n\\n', 'c']
    """
    if len(text) <= max_chars:
        return [text]
    pieces = []
    start = 0
    while len(text) - start > max_chars:
        end = start + max_chars
        cut = text.rfind("\n\n", start + 1, end)
        cut = cut + 2 if cut != -1 else -1
        if cut == -1:
            cut = text.rfind("\n", start + 1, end)
            cut = cut + 1 if cut != -1 else end
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


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
    itemsize = np.dtype(meta.dtype).itemsize
    for name, info in meta.splits.items():
        f = shards_dir / info.file
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


def _pieces(corpus: Corpus, max_piece_chars: int) -> Iterator[tuple[str, bool]]:
    """(piece text, starts a document) for every document of ``corpus``."""
    for doc in corpus.iter_documents():
        for i, piece in enumerate(split_long_document(doc, max_piece_chars)):
            yield piece, i == 0


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

    ``max_piece_chars`` defaults to :func:`auto_piece_chars`.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    output_dir = Path(output_dir)
    if (output_dir / META_FILE).exists() and not overwrite:
        raise DataError(f"{output_dir} already holds shards ({META_FILE}); pass --overwrite or choose another --output_dir")
    sep = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    if sep is None:
        raise DataError("the tokenizer has neither a BOS nor an EOS token to separate documents; retrain it with the default special tokens")
    if max_piece_chars is None:
        max_piece_chars = auto_piece_chars(corpus, val_fraction)
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    output_dir.mkdir(parents=True, exist_ok=True)
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
        for text, first in _pieces(corpus, max_piece_chars):
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
        extra={"max_piece_chars": max_piece_chars},
    )
    atomic_write_json(output_dir / META_FILE, meta.to_json())  # last: marks the shards complete
    logger.info(
        "wrote %s: train %d tokens (%d bytes), val %d tokens (%d bytes), dtype %s",
        output_dir, infos["train"].tokens, infos["train"].bytes, infos["val"].tokens, infos["val"].bytes, dtype.name,
    )
    return meta
