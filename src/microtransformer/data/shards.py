"""Token shards: a corpus encoded once into flat memmap files, and the one stream a split reads as.

Why flat files: training draws random windows, and ``numpy.memmap`` lets the
OS page in only the windows it needs, so a corpus larger than RAM trains
fine (nanoGPT's format). Layout of a shards directory::

    train_00000.bin  train_00001.bin ...   uint16 (vocab <= 65,536) or uint32 token ids, no header;
    val_00000.bin ...                      every file holds ``shard_tokens`` ids but the last of its split
    meta.json        tokenizer fingerprint, dtype, the files of each split with their token counts

The files of a split are one token stream cut at fixed token counts (a
document can continue in the next file), so :class:`TokenStream` reads them
as one array and a window may span two files. Directories in the layout of
earlier releases (one ``train.bin`` / ``val.bin`` per split, ``format_version``
1) read as a split of one file. Writing is
:func:`~microtransformer.data.prepare.prepare_shards` (``mtx data prepare``).

>>> stream = TokenStream.open("shards/", "train")  # doctest: +SKIP
>>> stream[10:20]  # doctest: +SKIP
array([...], dtype=uint16)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microtransformer.errors import DataError
from microtransformer.io import member_path, read_json

META_FILE = "meta.json"
SPLITS = ("train", "val")
FORMAT_VERSION = 2  # 2: numbered files per split; 1: one <split>.bin per split
DTYPES = ("uint16", "uint32")


def shard_name(split: str, index: int) -> str:
    """``train_00000.bin``: the ``index``-th file of ``split``."""
    return f"{split}_{index:05d}.bin"


@dataclass(frozen=True)
class SplitInfo:
    """One split: ``files`` holding ``file_tokens`` ids each (``tokens`` in all), from ``documents`` pieces of ``bytes`` bytes."""

    files: tuple[str, ...]
    file_tokens: tuple[int, ...]
    tokens: int
    bytes: int
    documents: int

    def __post_init__(self) -> None:
        if len(self.files) != len(self.file_tokens) or sum(self.file_tokens) != self.tokens:
            raise ValueError(f"files {list(self.files)} and file_tokens {list(self.file_tokens)} do not add up to {self.tokens}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitInfo:
        data = dict(data)
        if "file" in data:  # format_version 1: one file per split
            data["files"], data["file_tokens"] = [data.pop("file")], [data["tokens"]]
        return cls(
            files=tuple(data["files"]), file_tokens=tuple(int(n) for n in data["file_tokens"]), tokens=int(data["tokens"]),
            bytes=int(data["bytes"]), documents=int(data["documents"]),
        )


@dataclass(frozen=True)
class ShardMeta:
    """Contents of ``meta.json``; ``shard_tokens`` is the ids per file (0: one file per split, the old layout)."""

    dtype: str
    vocab_size: int
    separator_id: int
    tokenizer_path: str
    tokenizer_fingerprint: str
    splits: dict[str, SplitInfo]
    val_fraction: float
    corpus: str
    format_version: int = FORMAT_VERSION
    shard_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardMeta:
        data = dict(data)
        data["splits"] = {k: SplitInfo.from_json(v) for k, v in data["splits"].items()}
        return cls(**data)


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """``uint16`` when every id fits (half the disk and page cache), else ``uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def split_paths(shards_dir: str | os.PathLike[str], info: SplitInfo) -> list[Path]:
    """The files of one split: plain names inside ``shards_dir`` (never a path leaving it)."""
    return [member_path(shards_dir, name, manifest=META_FILE, error=DataError) for name in info.files]


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
    for info in meta.splits.values():
        for f, tokens in zip(split_paths(shards_dir, info), info.file_tokens):
            if not f.is_file():
                raise DataError(f"{f} is missing; re-run `mtx data prepare` for {shards_dir}")
            if f.stat().st_size != tokens * itemsize:
                raise DataError(
                    f"{f} has {f.stat().st_size} bytes but meta.json says {tokens} tokens of {meta.dtype} "
                    f"({tokens * itemsize} bytes): the shard is truncated or from another run; re-run `mtx data prepare`"
                )
    return meta


class TokenStream:
    """The ids of one split as one read-only array: ``len``, ``stream[i]``, ``stream[a:b]`` across its files.

    Files are memory-mapped when first touched, so a stream is cheap to make:
    open a fresh one per batch (nanoGPT's trick: a long-lived memmap keeps every
    page it touched referenced and memory grows over a long run).

    >>> s = TokenStream([Path("a.bin"), Path("b.bin")], [3, 2], np.uint16)  # doctest: +SKIP
    >>> s[2:4]  # the last id of a.bin, then the first of b.bin  # doctest: +SKIP
    """

    def __init__(self, paths: list[Path], counts: list[int] | tuple[int, ...], dtype: np.dtype | type) -> None:
        self.paths = list(paths)
        self.dtype = np.dtype(dtype)
        self.offsets = np.cumsum([0, *counts], dtype=np.int64)  # file i holds [offsets[i], offsets[i + 1])
        self._maps: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, shards_dir: str | os.PathLike[str], split: str, meta: ShardMeta | None = None) -> TokenStream:
        meta = meta or read_meta(shards_dir)
        if split not in meta.splits:
            raise DataError(f"{shards_dir} has no {split!r} split; re-run `mtx data prepare`")
        info = meta.splits[split]
        return cls(split_paths(shards_dir, info), info.file_tokens, np.dtype(meta.dtype))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _file(self, i: int) -> np.ndarray:
        if i not in self._maps:
            self._maps[i] = np.memmap(self.paths[i], dtype=self.dtype, mode="r")
        return self._maps[i]

    def __getitem__(self, key: int | slice) -> Any:
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                raise IndexError("a TokenStream takes slices with step 1")
            return self._read(start, max(start, stop))
        i = int(key) + (n if int(key) < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"index {key} is out of range for {n} tokens")
        return self._read(i, i + 1)[0]

    def _read(self, start: int, stop: int) -> np.ndarray:
        if start == stop:
            return np.zeros(0, dtype=self.dtype)
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        parts = []
        while start < stop:
            end = min(stop, int(self.offsets[i + 1]))
            if end > start:
                base = int(self.offsets[i])
                parts.append(self._file(i)[start - base : end - base])
            start = end
            i += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __repr__(self) -> str:
        return f"TokenStream({len(self)} tokens of {self.dtype.name} in {len(self.paths)} file(s))"


_MOVED = {"prepare_shards", "auto_piece_chars", "split_long_document"}


def __getattr__(name: str) -> Any:
    """``prepare_shards`` and its helpers live in :mod:`microtransformer.data.prepare`; still importable from here."""
    if name in _MOVED:
        from microtransformer.data import prepare  # here, not at the top: prepare imports this module

        return getattr(prepare, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
