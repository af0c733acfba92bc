"""Finite Scalar Quantization (FSQ).

Mentzer, Minnen, Agustsson, Tschannen (2023), "Finite Scalar Quantization:
VQ-VAE Made Simple", https://arxiv.org/abs/2309.15505 (Appendix A.1 gives the
reference JAX code this module follows).

Why FSQ instead of a learned VQ codebook: each latent dimension ``i`` is
bounded and rounded to one of ``L_i`` values, so the codebook is the implicit
grid ``prod(L_i)`` — there is no codebook to collapse, no commitment loss, no
EMA updates, and an index is just a mixed-radix number. That makes the code an
integer token id with nothing learned in between.

Per dimension with ``L`` levels::

    half   = (L - 1) * (1 + eps) / 2
    offset = 0.5 if L is even else 0.0
    shift  = atanh(offset / half)
    bounded = tanh(z + shift) * half - offset     # in (-half - offset, half - offset)
    zhat   = round_ste(bounded) / (L // 2)        # on the grid, in [-1, 1]

The shift makes ``z = 0`` land exactly on ``bounded = 0`` (the zero code) and
the offset makes an even ``L`` produce ``L`` distinct integers
``-L/2 .. L/2 - 1``. The shortcut ``round(tanh(z) * (L - 1) / 2)`` yields only
``L - 1`` values for even ``L``; do not use it.

>>> fsq = FSQ(levels=(8, 5, 5, 5))
>>> fsq.codebook_size
1000
>>> codes = fsq.indices_to_codes(torch.arange(1000))
>>> bool((fsq.codes_to_indices(codes) == torch.arange(1000)).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from microtransformer.errors import ConfigError

__all__ = [
    "DESIGN_LEVELS",
    "FSQ",
    "FSQ_LEVEL_PRESETS",
    "levels_from_preset",
    "round_ste",
]

# Recommended level sets from the paper's Table 1, keyed by log2(codebook size).
FSQ_LEVEL_PRESETS: dict[str, tuple[int, ...]] = {
    "2^8": (8, 6, 5),
    "2^10": (8, 5, 5, 5),
    "2^12": (7, 5, 5, 5, 5),
    "2^14": (8, 8, 8, 6, 5),
    "2^16": (8, 8, 8, 5, 5, 5),
    # The auto-encoder's "design" preset: 8^5 * 5^3 = 4,096,000 codes, far more
    # than a vocabulary, so distinct chunks rarely have to share a code.
    "design": (8, 8, 8, 8, 8, 5, 5, 5),
}
DESIGN_LEVELS: tuple[int, ...] = FSQ_LEVEL_PRESETS["design"]


def levels_from_preset(name: str) -> tuple[int, ...]:
    """Level tuple for a preset name such as ``"2^12"`` or ``"design"``."""
    try:
        return FSQ_LEVEL_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown FSQ level preset {name!r}; choose one of {sorted(FSQ_LEVEL_PRESETS)} "
            "or pass explicit levels such as [8, 5, 5, 5]"
        ) from None


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer with a straight-through (identity) gradient.

    The forward value is ``round(z)``; the backward pass treats rounding as the
    identity so the encoder still receives a gradient through the quantizer.
    """
    return z + (torch.round(z) - z).detach()


class FSQ(nn.Module):
    """Finite scalar quantizer over the last dimension (``len(levels)`` wide).

    ``forward(z)`` returns ``(zhat, indices)`` where ``zhat`` has the shape of
    ``z`` and lies on the grid, and ``indices`` drops the last dimension. The
    quantization always runs in float32 with autocast disabled: under bf16 the
    ``tanh`` outputs near level boundaries would round to the wrong level.
    """

    def __init__(self, levels: Sequence[int], eps: float = 1e-3) -> None:
        super().__init__()
        levels = tuple(int(level) for level in levels)
        if not levels:
            raise ConfigError("FSQ needs at least one dimension; pass levels such as [8, 5, 5, 5]")
        if any(level < 2 for level in levels):
            raise ConfigError(f"every FSQ level must be >= 2, got {list(levels)}")
        if not (0.0 <= eps < 1.0):
            raise ConfigError(f"FSQ eps must be in [0, 1), got {eps}")
        self.levels: tuple[int, ...] = levels
        self.eps = float(eps)
        self.dim = len(levels)
        self.codebook_size = math.prod(levels)
        if self.codebook_size >= 2**62:
            raise ConfigError(f"FSQ codebook of {self.codebook_size} codes does not fit an int64 index")

        levels_t = torch.tensor(levels, dtype=torch.float64)
        half = (levels_t - 1) * (1 + self.eps) / 2  # (D,)
        offset = torch.where(torch.tensor(levels) % 2 == 0, 0.5, 0.0).to(torch.float64)  # (D,)
        shift = torch.atanh(offset / half)  # (D,)
        # Mixed-radix basis: index = sum_i digit_i * prod_{j<i} L_j.
        basis = [1]
        for level in levels[:-1]:
            basis.append(basis[-1] * level)
        # Non-persistent: derived from ``levels``, which the model config stores.
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        self.register_buffer("_half", half.float(), persistent=False)
        self.register_buffer("_offset", offset.float(), persistent=False)
        self.register_buffer("_shift", shift.float(), persistent=False)
        self.register_buffer("_half_width", torch.tensor([lv // 2 for lv in levels], dtype=torch.float32), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.long), persistent=False)

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}, codebook_size={self.codebook_size}, eps={self.eps}"

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash ``z`` (..., D) into ``(-half - offset, half - offset)`` per dimension."""
        return torch.tanh(z + self._shift) * self._half - self._offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Quantize ``z`` (..., D) to grid values in [-1, 1], straight-through gradient."""
        return round_ste(self.bound(z)) / self._half_width

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.shape[-1] != self.dim:
            raise ConfigError(f"FSQ expects a last dimension of {self.dim} (len(levels)), got shape {tuple(z.shape)}")
        orig_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            zhat = self.quantize(z.float())  # (..., D) float32
            indices = self.codes_to_indices(zhat)  # (...,)
        return zhat.to(orig_dtype), indices

    def codes_to_indices(self, zhat: torch.Tensor) -> torch.Tensor:
        """Grid codes (..., D) in [-1, 1] -> int64 indices (...,) in ``[0, codebook_size)``."""
        if zhat.shape[-1] != self.dim:
            raise ConfigError(f"codes must have last dimension {self.dim}, got shape {tuple(zhat.shape)}")
        digits = torch.round(zhat.float() * self._half_width + self._half_width).long()  # (..., D) in [0, L)
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`codes_to_indices`: int indices (...,) -> float32 codes (..., D)."""
        indices = indices.long().unsqueeze(-1)  # (..., 1)
        digits = torch.div(indices, self._basis, rounding_mode="floor") % self._levels  # (..., D)
        return (digits.float() - self._half_width) / self._half_width

    @property
    def implicit_codebook(self) -> torch.Tensor:
        """Every code on the grid, ``(codebook_size, D)``; only sensible for small grids."""
        return self.indices_to_codes(torch.arange(self.codebook_size, device=self._basis.device))
