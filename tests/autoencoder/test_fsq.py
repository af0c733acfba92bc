"""FSQ: the grid, the index inverse pair and the straight-through gradient."""

from __future__ import annotations

import math

import pytest
import torch

from microtransformer.errors import ConfigError
from microtransformer.autoencoder.fsq import DESIGN_LEVELS, FSQ, FSQ_LEVEL_PRESETS, levels_from_preset, round_ste

SMALL_PRESETS = [name for name, lv in FSQ_LEVEL_PRESETS.items() if math.prod(lv) <= 2**16]


def test_presets_match_paper_table() -> None:
    assert FSQ_LEVEL_PRESETS["2^8"] == (8, 6, 5)
    assert FSQ_LEVEL_PRESETS["2^10"] == (8, 5, 5, 5)
    assert FSQ_LEVEL_PRESETS["2^12"] == (7, 5, 5, 5, 5)
    assert FSQ_LEVEL_PRESETS["2^14"] == (8, 8, 8, 6, 5)
    assert FSQ_LEVEL_PRESETS["2^16"] == (8, 8, 8, 5, 5, 5)
    assert DESIGN_LEVELS == (8, 8, 8, 8, 8, 5, 5, 5)
    for name, lv in FSQ_LEVEL_PRESETS.items():
        if name.startswith("2^"):
            bits = int(name[2:])
            # the paper's sets approximate 2^bits codes
            assert 0.7 * 2**bits <= math.prod(lv) <= 1.1 * 2**bits
    assert FSQ(DESIGN_LEVELS).codebook_size == 4_096_000
    assert levels_from_preset("2^10") == (8, 5, 5, 5)
    with pytest.raises(ConfigError):
        levels_from_preset("2^9")


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_every_index_round_trips(preset: str) -> None:
    fsq = FSQ(FSQ_LEVEL_PRESETS[preset])
    idx = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(idx)  # (N, D)
    assert codes.shape == (fsq.codebook_size, len(fsq.levels))
    assert torch.equal(fsq.codes_to_indices(codes), idx)
    # and codes -> indices -> codes
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(codes)), codes)
    # every code is distinct
    assert torch.unique(codes, dim=0).shape[0] == fsq.codebook_size


def test_design_levels_round_trip_sampled() -> None:
    fsq = FSQ(DESIGN_LEVELS)
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([torch.randint(0, fsq.codebook_size, (20_000,), generator=g), torch.tensor([0, fsq.codebook_size - 1])])
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(idx)), idx)


@pytest.mark.parametrize("levels", [(2,), (3,), (4,), (5,), (6,), (7,), (8,), (8, 5, 5, 5)])
def test_outputs_lie_on_grid_and_cover_all_levels(levels: tuple[int, ...]) -> None:
    fsq = FSQ(levels)
    z = torch.linspace(-12, 12, 20001).unsqueeze(-1).expand(-1, len(levels))  # (N, D)
    zhat, idx = fsq(z)
    for d, level in enumerate(levels):
        values = torch.unique(zhat[:, d])
        grid = torch.arange(level, dtype=torch.float32) - level // 2
        grid = grid / (level // 2)
        # even L gives exactly L distinct values (the offset is what makes this true)
        assert values.numel() == level, (level, values)
        assert torch.allclose(values, grid)
    assert zhat.min() >= -1 and zhat.max() <= 1
    assert torch.equal(idx, fsq.codes_to_indices(zhat))
    assert int(idx.min()) >= 0 and int(idx.max()) < fsq.codebook_size


def test_random_inputs_land_on_grid() -> None:
    fsq = FSQ(DESIGN_LEVELS)
    z = torch.randn(4, 7, len(DESIGN_LEVELS)) * 3  # (B, T, D)
    zhat, idx = fsq(z)
    assert zhat.shape == z.shape and idx.shape == (4, 7)
    half_width = torch.tensor([lv // 2 for lv in DESIGN_LEVELS], dtype=torch.float32)
    scaled = zhat * half_width
    assert torch.equal(scaled, torch.round(scaled))
    assert torch.equal(fsq.indices_to_codes(idx), zhat)


def test_zero_maps_to_zero_code() -> None:
    for levels in [DESIGN_LEVELS, (2, 3, 4), (8, 6, 5)]:
        fsq = FSQ(levels)
        zhat, idx = fsq(torch.zeros(3, len(levels)))
        assert torch.equal(zhat, torch.zeros_like(zhat))
        assert torch.equal(fsq.indices_to_codes(idx), zhat)


def test_straight_through_gradient_is_identity() -> None:
    x = torch.randn(50, requires_grad=True)
    y = round_ste(x * 3)
    assert torch.equal(y, torch.round(x.detach() * 3))
    g = torch.randn(50)
    y.backward(g)
    assert torch.allclose(x.grad, 3 * g)

    # through the whole quantizer the round is transparent: grad = d(bound)/dz / (L // 2)
    fsq = FSQ((8, 5))
    z = torch.randn(10, 2, requires_grad=True)
    zhat, _ = fsq(z)
    zhat.sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    (fsq.bound(z2) / fsq._half_width).sum().backward()
    assert torch.allclose(z.grad, z2.grad)


def test_quantizes_in_fp32_under_autocast() -> None:
    fsq = FSQ(DESIGN_LEVELS)
    z = torch.randn(16, len(DESIGN_LEVELS))
    ref, ref_idx = fsq(z)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        zhat, idx = fsq(z.bfloat16())
    assert zhat.dtype == torch.bfloat16
    # bf16 input loses precision, but the grid is exactly representable and indices are ints
    assert torch.equal(fsq.indices_to_codes(idx).bfloat16(), zhat)
    assert idx.dtype == torch.long and ref_idx.dtype == torch.long


def test_invalid_levels_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        FSQ([])
    with pytest.raises(ConfigError):
        FSQ([8, 1])
    with pytest.raises(ConfigError):
        FSQ([8, 5])(torch.zeros(3, 3))
