"""The cosine schedule is exactly the formula in the spec."""

from __future__ import annotations

import math

import pytest

from microtransformer.errors import ConfigError
from microtransformer.training.schedule import LRSchedule, cosine_lr_factor


def reference(t: int, W: int, T: int, m: float = 0.1) -> float:
    if t < W:
        return (t + 1) / W
    return m + 0.5 * (1 - m) * (1 + math.cos(math.pi * (t - W) / (T - W)))


@pytest.mark.parametrize("W,T", [(1, 10), (10, 100), (100, 5000)])
def test_factor_matches_formula(W, T):
    for t in range(T):
        assert cosine_lr_factor(t, warmup_steps=W, total_steps=T) == pytest.approx(reference(t, W, T), abs=1e-15)


def test_endpoints_and_constant():
    assert cosine_lr_factor(0, warmup_steps=4, total_steps=10) == 0.25
    assert cosine_lr_factor(4, warmup_steps=4, total_steps=10) == 1.0
    assert cosine_lr_factor(10, warmup_steps=4, total_steps=10) == pytest.approx(0.1)
    assert cosine_lr_factor(50, warmup_steps=4, total_steps=10) == pytest.approx(0.1)  # past the end: floor
    assert LRSchedule(2e-3, 4, 10, use_cosine=False).lr_at(0) == 2e-3
    assert LRSchedule(2e-3, 4, 10).lr_at(4) == 2e-3


def test_bad_schedule():
    with pytest.raises(ConfigError):
        LRSchedule(-1.0, 0, 10)
    with pytest.raises(ConfigError):
        LRSchedule(1e-3, 0, 0)
