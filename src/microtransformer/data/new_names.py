"""Made-up names in training windows, so that a model learns to copy a new name from its context.

A model that reads a few books several times learns their characters' names
by heart (``Pierre`` follows ``Prince`` because it always has), not how to
pick up a name it has never seen from earlier in its window, which is what
every new book asks of it: its names are new, and a tokenizer trained without
them spells them in pieces (``" D" "ar" "cy"``). :class:`NameSwap` replaces
each name token of a training window, consistently within the window, with a
made-up name spelled in such pieces (a capital piece such as ``" B"`` or
``" Ka"``, then one to ``max_pieces`` short lowercase pieces), so the only way
to predict a name's second mention is to copy its first.

Name tokens are read off the tokenizer and the training ids: a leading space,
a capital, lowercase letters after it, seen at least ``min_count`` times, and
seldom lowercase (``" Pierre"`` is a name; ``" The"`` is not, since ``" the"``
is common). Which name a window gets is a pure function of the window's ids
and the seed, so exact resume and DDP see the same rows.

>>> import numpy as np
>>> swap = NameSwap(names=np.array([False, True, False, False, False]), capitals=np.array([3]), pieces=np.array([4]),
...                 max_pieces=1)
>>> swap(np.array([[0, 1, 2, 1, 2, 0]])).tolist()  # name 1 -> " X" "y" (3, 4) twice; the row keeps its length
[[0, 3, 4, 2, 3, 4]]
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from microtransformer.data.token_counts import token_counts

logger = logging.getLogger(__name__)


def _is_name(s: str) -> bool:
    w = s[1:]
    return s.startswith(" ") and len(w) >= 3 and w.isalpha() and w[0].isupper() and w[1:].islower()


def _is_capital(s: str) -> bool:
    w = s[1:]
    return s.startswith(" ") and 1 <= len(w) <= 2 and w.isascii() and w.isalpha() and w[0].isupper() and w[1:] == w[1:].lower()


def _is_piece(s: str) -> bool:
    return 1 <= len(s) <= 3 and s.isascii() and s.isalpha() and s.islower()


@dataclass(frozen=True)
class NameSwap:
    """Swap the name tokens of ``(B, T)`` id rows for made-up names; see the module's docstring.

    ``names``: a bool mask over the vocabulary; ``capitals`` and ``pieces``: the ids a made-up name starts with
    and continues with; ``share``: the fraction of rows treated.
    """

    names: np.ndarray
    capitals: np.ndarray
    pieces: np.ndarray
    share: float = 1.0
    max_pieces: int = 3
    seed: int = 0

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, train_ids: np.ndarray, *, share: float = 1.0, seed: int = 0,
        min_count: int = 20, max_pieces: int = 3,
    ) -> NameSwap:
        """The name, capital and piece ids of ``tokenizer`` (``id_to_token``'s text), counted in ``train_ids``."""
        vocab = int(tokenizer.vocab_size)
        counts = token_counts(train_ids, vocab)
        strings = [tokenizer.id_to_token(i) for i in range(vocab)]
        index = {s: i for i, s in enumerate(strings)}
        names = np.zeros(vocab, dtype=bool)
        for i, s in enumerate(strings):
            if counts[i] >= min_count and _is_name(s):
                lower = index.get(s.lower())
                names[i] = lower is None or 3 * counts[lower] < counts[i]
        capitals = np.array([i for i, s in enumerate(strings) if _is_capital(s)], dtype=np.int64)
        pieces = np.array([i for i, s in enumerate(strings) if _is_piece(s) and counts[i] >= 50], dtype=np.int64)
        logger.info("new names: %d name tokens (%s), %d capital and %d lowercase pieces to spell new ones",
                    names.sum(), ", ".join(strings[i].strip() for i in np.flatnonzero(names)[:8]),
                    len(capitals), len(pieces))
        return cls(names, capitals, pieces, share=share, max_pieces=max_pieces, seed=seed)

    @property
    def active(self) -> bool:
        """Whether there is anything to swap and anything to spell new names with."""
        return bool(self.share > 0 and self.names.any() and len(self.capitals) and len(self.pieces))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` ``(B, T)`` with the names of a ``share`` of them swapped; each row keeps its length."""
        if not self.active:
            return rows
        out = rows.copy()
        for b, row in enumerate(rows):
            hit = self.names[row]
            if not hit.any():
                continue
            rng = np.random.default_rng((self.seed, zlib.crc32(np.ascontiguousarray(row, dtype=np.int64).tobytes())))
            if rng.random() >= self.share:
                continue
            spelled = {
                int(t): [int(rng.choice(self.capitals)), *rng.choice(self.pieces, size=int(rng.integers(1, self.max_pieces + 1))).tolist()]
                for t in np.unique(row[hit])
            }
            new: list[int] = []
            for t in row.tolist():
                new.extend(spelled.get(t, (t,)))
                if len(new) >= len(row):
                    break
            out[b] = new[: len(row)]
        return out
