"""Training windows: from token shards on disk, or from texts in memory.

Both classes answer the tutorial call ``get_batch(split, batch_size)`` with
``x, y`` of shape ``(B, block_size)`` where ``y`` is ``x`` shifted by one.

- :class:`ShardDataset` reads the shards written by
  :func:`~microtransformer.data.prepare.prepare_shards`, each split as one
  :class:`~microtransformer.data.shards.TokenStream` over its files, opened
  again for every batch (nanoGPT's trick: a long-lived memmap keeps every
  page it touched referenced and memory grows over a long run).
- :class:`BPEDataset` is the in-memory tutorial API: texts in, a BPE tokenizer
  trained if none is given, 90/10 split.

Windows are drawn with a ``numpy.random.Generator``; the trainer passes one
seeded from ``(seed, step)`` so the data order is reproducible and a resumed
run sees exactly the batches the uninterrupted run would have. Under DDP every
rank draws the same global batch of ``batch_size * world_size`` window starts
and keeps its own ``batch_size`` rows (``rank=``, ``world_size=``): ranks never
share a draw, and N ranks see the windows one process with N times the batch
would.

Pass an :class:`EpochOrder` instead of a generator (the trainer does for
``sampling="epoch"``) and the windows are dealt out epoch by epoch instead:
every window once per epoch in a shuffled order, as nanochat and
modded-nanogpt read their data, where independent random windows would leave
about ``exp(-epochs)`` of the text unseen while repeating the rest.

>>> ds = BPEDataset(open("input.txt").read(), block_size=64, device="cpu")  # doctest: +SKIP
>>> x, y = ds.get_batch("train", 8)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from microtransformer.data.shards import SPLITS, ShardMeta, TokenStream, read_meta
from microtransformer.errors import ConfigError, DataError
from microtransformer.tokenization import MicroTransformerTokenizer

if TYPE_CHECKING:  # pragma: no cover
    from microtransformer.tokenization import MicroTransformerTokenizer

_SCAN_BYTES = 1 << 30  # shards up to 1 GiB are checked for out-of-range ids when opened
_SCAN_BLOCK = 1 << 24  # ids per max() while scanning
_EPOCH_STREAM = 0xE70C  # separates the epoch shuffles from other streams seeded with the same seed


def _windows_per_epoch(n_tokens: int, block_size: int) -> int:
    """Windows of ``block_size + 1`` tokens, ``block_size`` apart, that fit after any phase in ``[0, block_size)``."""
    return max(1, (n_tokens - 1) // block_size - 1)


@functools.lru_cache(maxsize=4)
def _epoch_deal(n_tokens: int, block_size: int, seed: int, epoch: int) -> tuple[int, np.ndarray]:
    """Epoch ``epoch``'s window offset and (read-only) shuffled window numbers; cached, a batch reads a few rows."""
    n_windows = _windows_per_epoch(n_tokens, block_size)
    rng = np.random.default_rng((seed, _EPOCH_STREAM, epoch))
    offset = int(rng.integers(0, min(block_size - 1, n_tokens - 1 - n_windows * block_size) + 1))  # a phase in [0, T)
    order = rng.permutation(n_windows)
    order.setflags(write=False)
    return offset, order


class EpochOrder:
    """Windows dealt out epoch by epoch: pass where a ``numpy.random.Generator`` goes to draw windows.

    Epoch ``e`` cuts the split at ``offset_e + i * block_size`` into windows
    of ``block_size + 1`` tokens (so each token is a target once) and deals
    them in a shuffled order; the offset changes each epoch, so text is not
    always cut at the same places. Rows are numbered through the run:
    ``row`` is the first one the next draw takes, so a trainer starts step
    ``t`` at ``t * rows_per_step`` and a resumed run continues the same deal.

    >>> order = EpochOrder(seed=0)
    >>> starts = np.concatenate([order.take(1000, 8, 41) for _ in range(3)])  # one epoch: 123 windows
    >>> len(set(starts.tolist())), len(set((starts % 8).tolist())), order.row
    (123, 1, 123)
    """

    def __init__(self, seed: int, row: int = 0) -> None:
        self.seed = seed
        self.row = row

    def take(self, n_tokens: int, block_size: int, count: int) -> np.ndarray:
        """Start offsets of the next ``count`` windows of a split of ``n_tokens`` tokens (advances ``row``)."""
        if n_tokens < block_size + 1:
            raise DataError(f"a split of {n_tokens} tokens has no window of block_size + 1 = {block_size + 1}")
        n_windows = _windows_per_epoch(n_tokens, block_size)
        rows = np.arange(self.row, self.row + count)
        self.row += count
        starts = np.empty(count, dtype=np.int64)
        epochs = rows // n_windows
        for epoch in np.unique(epochs).tolist():
            offset, order = _epoch_deal(n_tokens, block_size, self.seed, epoch)
            here = epochs == epoch
            starts[here] = offset + order[rows[here] % n_windows] * block_size
        return starts

    def integers(self, *args: Any, **kwargs: Any) -> Any:
        """A data source that draws its own random windows cannot follow an epoch order: say so."""
        raise ConfigError(
            "sampling='epoch' needs a data source that draws windows with microtransformer.data.loader."
            "window_starts (TokenArrayDataset, ShardDataset, BPEDataset); use sampling='random'"
        )


#: What draws the windows: independent uniform starts from a generator, or an epoch-by-epoch deal.
WindowOrder = np.random.Generator | EpochOrder


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")


def window_starts(
    n_tokens: int,
    block_size: int,
    batch_size: int,
    rng: WindowOrder,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """Start offsets of ``rank``'s ``batch_size`` windows: its rows of one draw of ``batch_size * world_size``.

    ``rng`` a generator (independent uniform starts) or an :class:`EpochOrder`.

    >>> g = lambda: np.random.default_rng(0)
    >>> both = window_starts(1000, 8, 4, g())
    >>> np.array_equal(np.concatenate([window_starts(1000, 8, 2, g(), rank=r, world_size=2) for r in (0, 1)]), both)
    True
    """
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if isinstance(rng, EpochOrder):
        ix = rng.take(n_tokens, block_size, batch_size * world_size)
    else:
        ix = rng.integers(0, n_tokens - block_size, size=batch_size * world_size)  # every valid start
    return ix[rank * batch_size : (rank + 1) * batch_size]


def sample_windows(
    data: Any,
    block_size: int,
    batch_size: int,
    rng: WindowOrder,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """``batch_size`` random windows of ``block_size + 1`` tokens from ``data``: ``(B, T+1)`` int64.

    The one window sampler: ``get_batch`` and the TensorFlow datasets draw
    the same windows from the same ``rng``. ``data`` is an array or a
    :class:`~microtransformer.data.shards.TokenStream`.
    """
    ix = window_starts(len(data), block_size, batch_size, rng, rank=rank, world_size=world_size)
    return np.stack([np.asarray(data[i : i + block_size + 1], dtype=np.int64) for i in ix])  # (B, T+1)


def windows_to_batch(
    data: Any,
    block_size: int,
    batch_size: int,
    rng: WindowOrder,
    device: torch.device | str,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``block_size + 1`` tokens from ``data`` -> ``(x, y)``."""
    t = torch.from_numpy(sample_windows(data, block_size, batch_size, rng, rank=rank, world_size=world_size))  # (B, T+1)
    x, y = t[:, :-1], t[:, 1:]  # (B, T), (B, T)
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.contiguous().to(device), y.contiguous().to(device)


class TokenArrayDataset:
    """Random windows over in-memory id arrays, one per split (tests, notebooks, BPEDataset).

    >>> ds = TokenArrayDataset({"train": np.arange(100), "val": np.arange(50)}, block_size=8, vocab_size=100)
    >>> [tuple(t.shape) for t in ds.get_batch("train", 4)]
    [(4, 8), (4, 8)]
    """

    def __init__(
        self,
        data: dict[str, np.ndarray],
        block_size: int,
        *,
        vocab_size: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        if not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be a positive integer, got {block_size!r}")
        self.data = {k: np.asarray(v) for k, v in data.items()}
        self.block_size = block_size
        self.vocab_size = vocab_size
        self.device = device
        for split in SPLITS:
            if split not in self.data:
                raise DataError(f"missing the {split!r} split; pass both 'train' and 'val' arrays")
            arr = self.data[split]
            if len(arr) < block_size + 1:
                raise DataError(
                    f"the {split} split has {len(arr)} tokens but block_size + 1 = {block_size + 1} are needed; "
                    "lower block_size or pass more text"
                )
            if len(arr) and (arr.min() < 0 or arr.max() >= vocab_size):
                raise DataError(f"the {split} split has ids outside [0, {vocab_size}); wrong vocab_size?")
        self._rng = np.random.default_rng(seed)

    def num_tokens(self, split: str) -> int:
        _check_split(split)
        return len(self.data[split])

    def get_batch(
        self,
        split: str,
        batch_size: int,
        rng: WindowOrder | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_split(split)
        return windows_to_batch(
            self.data[split], self.block_size, batch_size, rng or self._rng, self.device, rank=rank, world_size=world_size
        )


class ShardDataset:
    """Random windows over a shards directory, each split one stream over its files (see :mod:`microtransformer.data.shards`)."""

    def __init__(
        self, shards_dir: str | os.PathLike[str], block_size: int, device: torch.device | str = "cpu", *, seed: int = 0
    ) -> None:
        if not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be a positive integer, got {block_size!r}")
        self.shards_dir = Path(shards_dir)
        self.meta: ShardMeta = read_meta(self.shards_dir)
        self.block_size = block_size
        self.device = device
        self.vocab_size = self.meta.vocab_size
        self._rng = np.random.default_rng(seed)
        for split in SPLITS:
            tokens = self.num_tokens(split)
            if tokens < block_size + 1:
                raise DataError(
                    f"the {split} split of {self.shards_dir} has {tokens} tokens but a training window "
                    f"needs block_size + 1 = {block_size + 1}; lower --block_size (at most {max(tokens - 1, 0)}) "
                    "or add more text"
                    + (" / raise --val_fraction" if split == "val" else "")
                )
        # shards up to _SCAN_BYTES are checked once here, larger ones batch by batch
        self._unscanned = {s for s in SPLITS if self.num_tokens(s) * np.dtype(self.meta.dtype).itemsize > _SCAN_BYTES}
        for split in set(SPLITS) - self._unscanned:
            self._check_ids(split)

    def _check_ids(self, split: str) -> None:
        """Typed error for ids the vocabulary does not have (a damaged or foreign shard), naming the file."""
        stream = self.memmap(split)
        for path, start, stop in zip(stream.paths, stream.offsets[:-1], stream.offsets[1:]):
            top = 0
            for a in range(int(start), int(stop), _SCAN_BLOCK):
                top = max(top, int(stream[a : min(a + _SCAN_BLOCK, int(stop))].max(initial=0)))
            if top >= self.vocab_size:
                raise DataError(
                    f"{path} holds token id {top}, but meta.json says vocab_size {self.vocab_size}: the shard is "
                    "damaged or from another tokenizer; re-run `mtx data prepare`"
                )

    def num_tokens(self, split: str) -> int:
        _check_split(split)
        if split not in self.meta.splits:
            raise DataError(f"{self.shards_dir} has no {split!r} split; re-run `mtx data prepare`")
        return self.meta.splits[split].tokens

    def memmap(self, split: str) -> TokenStream:
        """The split's token ids as one read-only stream over its memory-mapped files (make a fresh one per batch)."""
        _check_split(split)
        self.num_tokens(split)
        return TokenStream.open(self.shards_dir, split, self.meta)

    def get_batch(
        self,
        split: str,
        batch_size: int,
        rng: WindowOrder | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x, y`` ``(B, T)`` int64 on ``device``; ``rng`` defaults to the dataset's own; DDP: see the module docstring."""
        _check_split(split)
        x, y = windows_to_batch(
            self.memmap(split), self.block_size, batch_size, rng or self._rng, self.device, rank=rank, world_size=world_size
        )
        if split in self._unscanned and max(int(x.max()), int(y.max())) >= self.vocab_size:
            self._check_ids(split)
        return x, y


class BPEDataset(TokenArrayDataset):
    """In-memory tutorial dataset: ``BPEDataset(texts, block_size, device)`` then ``get_batch``.

    ``texts`` is one string or an iterable of documents. Without a
    ``tokenizer`` a ``bpe`` tokenizer of ``vocab_size`` is trained on the texts.
    Each document starts with BOS; the first ``1 - val_fraction`` of the tokens
    is ``train``, the rest ``val`` (the classic tutorial split).
    """

    def __init__(
        self,
        texts: str | Iterable[str],
        block_size: int,
        device: torch.device | str = "cpu",
        *,
        tokenizer: MicroTransformerTokenizer | None = None,
        vocab_size: int = 2048,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        docs = [texts] if isinstance(texts, str) else list(texts)
        if not any(docs):
            raise DataError("BPEDataset got no text; pass a non-empty string or list of strings")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if tokenizer is None:

            tokenizer = MicroTransformerTokenizer.train_from_iterator(docs, engine="bpe", vocab_size=vocab_size)
        self.tokenizer = tokenizer
        sep = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        ids: list[int] = []
        for doc_ids in tokenizer.encode_batch(docs):
            ids.extend(([sep] if sep is not None else []) + doc_ids)
        data = np.asarray(ids, dtype=np.int64)
        n = int(len(data) * (1 - val_fraction))
        super().__init__(
            {"train": data[:n], "val": data[n:]}, block_size, vocab_size=tokenizer.vocab_size, device=device, seed=seed
        )
