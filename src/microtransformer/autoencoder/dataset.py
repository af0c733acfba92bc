"""What pre-training learns from: the chunk dataset (train/val split) and the batch sampler.

**Split.** Every document is cut at newlines into blocks of about
``split_block_chars`` characters; a seeded coin sends each block to the
validation split with probability ``val_fraction``. Blocks, not unique
chunks, are split, so validation looks like new text: mostly chunks the model
has seen plus the unseen ones new text brings; its metrics are weighted by
occurrence, as a tokenizer sees text.

**Sampling.** A batch draws unique training strings with probability
proportional to ``count ** sample_alpha``: alpha 1 spends most steps on
``" the"``, alpha 0 on typos seen once; 0.5 keeps frequent chunks frequent
without starving the tail. ``piece_share`` of the mass goes to sub-chunk
pieces (:func:`training_pieces`) and ``augment_share`` of a batch is
replaced by synthetic variants (:mod:`.augment`).

>>> ds = ChunkDataset.from_documents(["the cat and the hat\\n"] * 3, val_fraction=0.0)
>>> ds.train_chunks[:2], ds.train_counts[:2]
([b'\\n', b' and'], [3, 3])
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from microtransformer.autoencoder.augment import augment_chunk
from microtransformer.autoencoder.chunking import DEFAULT_MAX_CHUNK_LEN, iter_chunks
from microtransformer.autoencoder.model import chunks_to_tensor
from microtransformer.autoencoder.vocab import string_priorities
from microtransformer.errors import ConfigError, CorpusError
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

__all__ = ["ChunkDataset", "ChunkSampler", "training_pieces"]

logger = logging.getLogger(__name__)


@dataclass
class ChunkDataset:
    """Unique chunks with counts for the train and validation splits (most frequent first)."""

    train_chunks: list[bytes]
    train_counts: list[int]
    val_chunks: list[bytes]
    val_counts: list[int]
    max_chunk_len: int

    @classmethod
    def from_counters(cls, train: Counter[bytes], val: Counter[bytes], max_chunk_len: int) -> ChunkDataset:
        def ordered(c: Counter[bytes]) -> tuple[list[bytes], list[int]]:
            items = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
            return [k for k, _ in items], [v for _, v in items]

        tc, tn = ordered(train)
        vc, vn = ordered(val)
        return cls(tc, tn, vc, vn, max_chunk_len)

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[str],
        *,
        max_chunk_len: int = DEFAULT_MAX_CHUNK_LEN,
        val_fraction: float = 0.05,
        split_block_chars: int = 2048,
        seed: int = 0,
        pattern: str = GPT4_SPLIT_PATTERN,
    ) -> ChunkDataset:
        """Chunk ``documents`` and split newline-cut blocks into train/val (see module docstring)."""
        rng = random.Random(seed)
        train: Counter[bytes] = Counter()
        val: Counter[bytes] = Counter()
        for doc in documents:
            if not isinstance(doc, str):
                raise ConfigError(f"documents must be str, got {type(doc).__name__}")
            pos, n = 0, len(doc)
            while pos < n:
                end = min(n, pos + split_block_chars)
                if end < n:
                    nl = doc.rfind("\n", pos, end)
                    if nl > pos:
                        end = nl + 1
                target = val if (val_fraction > 0 and rng.random() < val_fraction) else train
                target.update(iter_chunks(doc[pos:end], max_chunk_len=max_chunk_len, pattern=pattern))
                pos = end
        if not train:
            if not val:
                raise CorpusError("the corpus has no text to chunk; point --data_file/--data_dir at some text")
            train, val = val, Counter()
        if val_fraction > 0 and not val:
            logger.warning("validation split is empty (corpus too small for val_fraction=%s); validating on train chunks", val_fraction)
        return cls.from_counters(train, val, max_chunk_len)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over both splits: a resumed run warns when its data changed."""
        h = hashlib.sha256()
        for chunks, counts in ((self.train_chunks, self.train_counts), (self.val_chunks, self.val_counts)):
            for c, n in zip(chunks, counts):
                h.update(len(c).to_bytes(1, "little") + c + n.to_bytes(8, "little"))
            h.update(b"|")
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        train_set = set(self.train_chunks)
        val_occ = sum(self.val_counts)
        unseen = sum(n for c, n in zip(self.val_chunks, self.val_counts) if c not in train_set)
        return {
            "train_unique": len(self.train_chunks),
            "train_occurrences": sum(self.train_counts),
            "val_unique": len(self.val_chunks),
            "val_occurrences": val_occ,
            "val_unseen_occurrence_rate": unseen / val_occ if val_occ else 0.0,
            "max_chunk_len": self.max_chunk_len,
            "fingerprint": self.fingerprint,
        }

    def validation_set(self, max_unique: int) -> tuple[list[bytes], list[int]]:
        """The most frequent ``max_unique`` val chunks with counts (train chunks if val is empty)."""
        if self.val_chunks:
            return self.val_chunks[:max_unique], self.val_counts[:max_unique]
        return self.train_chunks[:max_unique], self.train_counts[:max_unique]

    def all_counts(self) -> Counter[bytes]:
        """Occurrences of every chunk over both splits."""
        counts = Counter(dict(zip(self.train_chunks, self.train_counts)))
        counts.update(dict(zip(self.val_chunks, self.val_counts)))
        return counts


def training_pieces(dataset: ChunkDataset, *, n_pieces: int, piece_share: float, max_len: int) -> list[tuple[bytes, int]]:
    """Sub-chunk pieces to train on beside the whole chunks, with their counts (empty unless ``piece_share > 0``).

    The ``n_pieces`` best substrings of the training chunks that are not
    whole chunks (:func:`~microtransformer.autoencoder.vocab.string_priorities`,
    the candidates the export's vocabulary is chosen from), each with the
    number of chunk occurrences containing it: the export can only keep
    strings the network reconstructs, and one trained on whole chunks alone
    reconstructs few such pieces. Derived from the dataset and the config
    alone, so a resumed run gets the same list.
    """
    if piece_share <= 0 or n_pieces == 0:
        return []
    counts = dict(zip(dataset.train_chunks, dataset.train_counts))
    prio = string_priorities(counts, max_len=max_len, max_strings=n_pieces + len(counts))
    ranked = [x for x in prio if x not in counts][:n_pieces]
    return [(x, prio[x] // (len(x) - 1)) for x in ranked]  # priority = (len - 1) * occurrences


class ChunkSampler:
    """The training strings (chunks, then pieces) as one tensor, and the seeded draws of each batch.

    Exact resume depends on the order of the draws from ``generator`` (saved
    in every checkpoint as ``rng.sampler``); :meth:`draw` makes them, per
    step and always in this order: ``batch_size`` rows (``multinomial``),
    then with ``augment_share > 0`` one ``rand`` per row, then the draws of
    :func:`~microtransformer.autoencoder.augment.augment_chunk` for each
    replaced row, in row order. Adding, removing or reordering a draw here
    changes every run after it and breaks resuming a checkpoint saved before.
    """

    def __init__(
        self,
        dataset: ChunkDataset,
        *,
        batch_size: int,
        sample_alpha: float,
        piece_share: float = 0.0,
        n_pieces: int = 0,
        augment_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.batch_size, self.augment_share, self.max_len = batch_size, augment_share, dataset.max_chunk_len
        self.generator = torch.Generator().manual_seed(seed)
        pieces = training_pieces(dataset, n_pieces=n_pieces, piece_share=piece_share, max_len=self.max_len)
        self.strings = dataset.train_chunks + [p for p, _ in pieces]
        self.x_all = chunks_to_tensor(self.strings, self.max_len)  # (N+P, T)
        probs = torch.tensor(dataset.train_counts, dtype=torch.float64) ** sample_alpha  # (N,)
        if pieces:
            piece_probs = torch.tensor([n for _, n in pieces], dtype=torch.float64) ** sample_alpha  # (P,)
            probs = torch.cat([probs / probs.sum() * (1 - piece_share), piece_probs / piece_probs.sum() * piece_share])
        self.probs = probs  # (N+P,)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``(rows (B,), bytes (B, T), positions replaced by synthetic variants)`` of one batch."""
        rows = torch.multinomial(self.probs, self.batch_size, replacement=True, generator=self.generator)  # (B,)
        x = self.x_all[rows]  # (B, T)
        if self.augment_share <= 0:
            return rows, x, []
        pick = (torch.rand(len(rows), generator=self.generator) < self.augment_share).nonzero().flatten().tolist()
        if not pick:
            return rows, x, pick
        variants = [augment_chunk(self.strings[int(rows[i])], self.generator, self.max_len) for i in pick]
        x = x.clone()
        x[pick] = chunks_to_tensor(variants, self.max_len)
        return rows, x, pick
