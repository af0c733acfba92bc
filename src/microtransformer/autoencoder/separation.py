"""Push apart training strings that the encoder puts in the same FSQ cell.

Why: the reconstruction loss alone leaves many frequent strings sharing one
code (``"The"``/``"the"``, ``" whale"``/``" whole"``/``" while"``): the
decoder reads a code mostly through its detached digit embeddings and hashed
memory, so the straight-through gradient that reaches the encoder is weak,
and once the encoder freezes a shared code is permanent. Only one string of
each group can then be reconstructed, and only one can enter the vocabulary.

:class:`CollisionTable` remembers the last code of every training string
(row of the trainer's string table). When a sampled string lands on a code
last seen with a *different* string, that string is its collision partner:
the trainer re-encodes the partner and adds :func:`separation_loss`, a hinge
on the largest per-dimension distance of the two bounded (pre-rounding)
latents. A distance of at least 1 grid step in any dimension puts the two in
different cells for certain, so the hinge stops pushing once they are apart.

The table is a plain int64 tensor (row -> last code, -1 = not seen yet) so
it goes into the checkpoint's safetensors and a resumed run is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["CollisionTable", "separation_loss"]


class CollisionTable:
    """Last FSQ code of each training string, and who else holds each code."""

    def __init__(self, n_rows: int) -> None:
        self.last_code = torch.full((n_rows,), -1, dtype=torch.int64)  # (N,)
        self._rows_by_code: dict[int, set[int]] = {}

    def load_state(self, last_code: torch.Tensor) -> None:
        """Restore from a saved ``last_code`` tensor (rebuilds the reverse index)."""
        if last_code.shape != self.last_code.shape:
            raise ValueError(f"collision table has {last_code.numel()} rows, the trainer has {self.last_code.numel()}")
        self.last_code = last_code.to(torch.int64).clone()
        self._rows_by_code = {}
        for row, code in enumerate(self.last_code.tolist()):
            if code >= 0:
                self._rows_by_code.setdefault(code, set()).add(row)

    def _set(self, row: int, code: int) -> None:
        old = int(self.last_code[row])
        if old == code:
            return
        if old >= 0:
            holders = self._rows_by_code[old]
            holders.discard(row)
            if not holders:
                del self._rows_by_code[old]
        self._rows_by_code.setdefault(code, set()).add(row)
        self.last_code[row] = code

    def update(self, rows: Sequence[int], codes: Sequence[int]) -> None:
        for row, code in zip(rows, codes):
            self._set(int(row), int(code))

    def record_and_find_partners(self, rows: Sequence[int], codes: Sequence[int]) -> list[tuple[int, int]]:
        """Record ``rows`` at ``codes`` and return ``(position, partner_row)`` pairs.

        A position's partner is the lowest other row (the most frequent
        string: the trainer's table is sorted by count) last seen at the same
        code; at most one partner per position, each row once per call.
        """
        pairs: list[tuple[int, int]] = []
        seen: set[int] = set()
        for pos, (row, code) in enumerate(zip(rows, codes)):
            row, code = int(row), int(code)
            self._set(row, code)
            if row in seen:
                continue
            seen.add(row)
            others = self._rows_by_code[code]
            if len(others) > 1:
                pairs.append((pos, min(r for r in others if r != row)))
        return pairs


def separation_loss(bounded_a: torch.Tensor, bounded_b: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Hinge ``relu(margin - max_k |a_k - b_k|)^2`` per pair, ``(P, D), (P, D) -> (P,)``.

    ``bounded_*`` are FSQ latents in grid units (:meth:`FSQ.bound`, before
    rounding): two latents whose largest per-dimension gap is ≥ 1 can never
    round to the same cell.
    """
    gap = (bounded_a - bounded_b).abs().amax(dim=-1)  # (P,)
    return torch.relu(margin - gap).pow(2)
