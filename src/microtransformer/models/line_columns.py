"""Where each token ends in its line, in bytes: the rows of a table the GPT adds to the token embedding.

A model that reads tokens cannot count the bytes of a line, and hard-wrapped
text (Project Gutenberg's books break their lines at about 70 columns) puts
its newlines where that count says: near column 70 a newline is likely, at
column 20 it is not. Given each token's length in bytes and where its last
newline falls, the column of every position is a running sum restarted at
each newline, computed from the ids alone (no tokenizer at run time, the same
in training, evaluation and generation with a KV cache).

Row 0 of the table stands for "not known yet": no newline (or document start)
earlier in the window. Row ``1 + c`` is column ``c`` (bytes since the line's
start through the token's end), the last row also every column past it.

>>> layout = TokenLayout.from_token_bytes([b"ab", b" cd", b"\\n", b"e\\nfg"])
>>> rows, end = column_rows(torch.tensor([[0, 1, 2, 0, 3, 1]]), layout.length, layout.tail, n_rows=8)
>>> rows.tolist(), end.tolist()  # "ab cd\\nabe\\nfg cd": unknown, unknown, col 0, col 2, col 2, col 5
([[0, 0, 1, 3, 3, 6]], [5])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenLayout:
    """Per token id: ``length`` in bytes and ``tail``, the bytes after its last newline (``-1``: it has none).

    A document-start token (BOS) counts as a line start of length 0 (``tail`` 0).
    """

    length: torch.Tensor  # (V,) int64
    tail: torch.Tensor  # (V,) int64

    @classmethod
    def from_token_bytes(cls, pieces: Sequence[bytes], line_starts: Sequence[int] = ()) -> TokenLayout:
        """From each id's bytes; ``line_starts``: ids (BOS) that begin a line without a newline byte."""
        length = torch.tensor([len(b) for b in pieces], dtype=torch.long)
        tail = torch.tensor([len(b) - 1 - b.rindex(b"\n") if b"\n" in b else -1 for b in pieces], dtype=torch.long)
        for i in line_starts:
            length[i], tail[i] = 0, 0
        return cls(length, tail)

    @classmethod
    def from_tokenizer(cls, tokenizer: object) -> TokenLayout:
        """From a :class:`~microtransformer.tokenization.MicroTransformerTokenizer`: its ids' bytes (special tokens
        none), BOS starting a line."""
        sizes = tokenizer.token_bytes()  # type: ignore[attr-defined]  # 0 for special tokens: they are no text
        pieces = [tokenizer.id_to_bytes(i) if sizes[i] else b"" for i in range(len(sizes))]  # type: ignore[attr-defined]
        bos = getattr(tokenizer, "bos_id", None)
        return cls.from_token_bytes(pieces, () if bos is None else (int(bos),))


def column_rows(
    ids: torch.Tensor,
    length: torch.Tensor,
    tail: torch.Tensor,
    n_rows: int,
    *,
    start: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Table rows ``(B, T)`` for ``ids`` ``(B, T)``, and each row's column after its last token ``(B,)`` (-1: unknown).

    ``start`` ``(B,)``: the column before the first id (what a KV cache carries; -1 or None: unknown);
    ``mask`` ``(B, T)``: False for padding, which counts as no bytes.
    """
    L, tl = length[ids], tail[ids]  # (B, T)
    if mask is not None:
        L, tl = L * mask, tl.masked_fill(~mask, -1)
    if start is not None:  # the carried column as a position of no bytes before the first
        L = torch.cat([torch.zeros_like(L[:, :1]), L], 1)
        tl = torch.cat([start.to(tl.dtype).view(-1, 1), tl], 1)
    cs = L.cumsum(1)  # (B, T')
    pos = torch.arange(ids.size(1) + (start is not None), device=ids.device).expand_as(cs)
    last = torch.where(tl >= 0, pos, torch.full_like(pos, -1)).cummax(1).values  # the last line start at or before
    at = last.clamp(min=0)
    col = cs - cs.gather(1, at) + tl.gather(1, at)  # (B, T')
    known = last >= 0
    rows = torch.where(known, 1 + col.clamp(max=n_rows - 2), torch.zeros_like(col))
    end = torch.where(known[:, -1], col[:, -1], torch.full_like(col[:, -1], -1))
    return (rows[:, 1:] if start is not None else rows), end
