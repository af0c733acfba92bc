"""Re-set typography in training windows, so that a model does not tie a book's punctuation to its content.

Books set the same marks differently: apostrophes as ``'`` or ``’``, dashes as
``--`` or ``—``, double quotes as ``"`` or ``“ ”``. A model that reads a few
books learns each book's style along with its words (straight quotes with
Cervantes, curly ones with Tolstoy) and pays for a new book that mixes them
(curly quotes with straight apostrophes and ``--``), as every new book may.
:class:`TypographySwap` re-sets a share of the training windows: each mark
gets a style drawn for the window, and every token that holds the mark is
rewritten to it (re-encoded where the new text is not one token), so the
model learns to read a window's style from the window.

Which styles a window gets is a pure function of the window's ids and the
seed, so exact resume and DDP see the same rows.

>>> import numpy as np
>>> swap = TypographySwap(tables=({1: (2,)}, {2: (1,)}), share=1.0)  # two styles of one mark: id 1 <-> id 2
>>> swap(np.array([[0, 1, 0, 1]])).tolist() in ([[0, 1, 0, 1]], [[0, 2, 0, 2]])
True
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: a ``"`` after one of these (or a space) opens a quotation
OPENERS = "([—-"
#: each mark's styles, as functions that rewrite a token's text into that style
STYLES: dict[str, tuple[Callable[[str], str], ...]] = {
    "apostrophe": (lambda s: s.replace("’", "'"), lambda s: s.replace("'", "’")),
    "dash": (lambda s: s.replace("—", "--"), lambda s: s.replace("--", "—")),
    "double quote": (lambda s: s.replace("“", '"').replace("”", '"'), lambda s: _curly_quotes(s, opening=False)),
}


def _curly_quotes(s: str, *, opening: bool) -> str:
    """``s`` with each ``"`` made ``“`` after a space or bracket (or at the start, when ``opening``), else ``”``."""
    out = []
    for k, ch in enumerate(s):
        before = s[k - 1] if k else None
        starts = opening if before is None else (before.isspace() or before in OPENERS)
        out.append(("“" if starts else "”") if ch == '"' else ch)
    return "".join(out)


@dataclass(frozen=True)
class TypographySwap:
    """Re-set ``(B, T)`` id rows; see the module's docstring.

    ``tables``: one ``{id: replacement ids}`` per (mark, style), a mark's two styles side by side. A token that
    starts with ``"`` needs the token before it to choose ``“`` or ``”``: table ``quote_table`` closes it, and
    ``opening`` gives its replacement where the token before it is in ``opens``. ``share``: the fraction of rows
    treated.
    """

    tables: tuple[dict[int, tuple[int, ...]], ...]
    opening: dict[int, tuple[int, ...]] | None = None
    opens: np.ndarray | None = None  # bool over the vocabulary: tokens after which a quote opens
    quote_table: int = -1  # the index in ``tables`` of the curly-quote style, whose ``opening`` applies
    share: float = 1.0
    seed: int = 0

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, share: float = 1.0, seed: int = 0) -> TypographySwap:
        """The tables of ``tokenizer``: its tokens' texts (``id_to_token``) rewritten, re-encoded where needed."""
        strings = [tokenizer.id_to_token(i) for i in range(int(tokenizer.vocab_size))]
        index = {s: i for i, s in enumerate(strings)}

        def ids_of(text: str) -> tuple[int, ...]:
            return (index[text],) if text in index else tuple(int(i) for i in tokenizer.encode(text))

        tables: list[dict[int, tuple[int, ...]]] = []
        for styles in STYLES.values():
            for style in styles:
                tables.append({i: ids_of(new) for i, s in enumerate(strings) if (new := style(s)) != s})
        quote_table = len(tables) - 1
        opening = {i: ids_of(_curly_quotes(s, opening=True)) for i, s in enumerate(strings) if s.startswith('"')}
        # a quote after these opens: an opener, or a piece of a character (a dash's last bytes) that decodes to U+FFFD
        texts = [tokenizer.decode([i]) for i in range(len(strings))]
        opens = np.array([not t or t[-1].isspace() or t[-1] in OPENERS + "\ufffd" for t in texts], dtype=bool)
        logger.info("typography: %s tokens to re-set", ", ".join(
            f"{mark} {len(tables[2 * k])}/{len(tables[2 * k + 1])}" for k, mark in enumerate(STYLES)))
        return cls(tuple(tables), opening, opens, quote_table, share=share, seed=seed)

    @property
    def active(self) -> bool:
        """Whether there is anything to re-set."""
        return bool(self.share > 0 and any(self.tables))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` ``(B, T)`` with a ``share`` of them re-set; each row keeps its length."""
        if not self.active:
            return rows
        out = rows.copy()
        for b, row in enumerate(rows):
            rng = np.random.default_rng((self.seed, 1, zlib.crc32(np.ascontiguousarray(row, dtype=np.int64).tobytes())))
            if rng.random() >= self.share:
                continue
            ids = row.tolist()
            for pair in range(0, len(self.tables), 2):
                k = pair + int(rng.integers(2))
                ids = self._rewrite(ids, k)[: len(row)]
            out[b] = ids
        return out

    def _rewrite(self, ids: list[int], k: int) -> list[int]:
        table = self.tables[k]
        if not any(t in table for t in ids):
            return ids
        opening = self.opening if k == self.quote_table else None
        new: list[int] = []
        for t in ids:
            if opening is not None and t in opening and (not new or (self.opens is not None and self.opens[new[-1]])):
                new.extend(opening[t])
            else:
                new.extend(table.get(t, (t,)))
        return new
