"""Learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay (WSD), to ``min_ratio * lr``.

The formula is fixed by the spec (and matches the tutorial it replaces), for
step ``t`` (0-based), warmup ``W``, total ``T`` and floor ``m`` (default 0.1)::

    t <  W:  factor = (t + 1) / W
    t >= W:  factor = m + 0.5 * (1 - m) * (1 + cos(pi * (t - W) / (T - W)))

WSD (the schedule of nanochat and modded-nanogpt) holds the peak LR and
decays linearly to the floor over the last ``warmdown_ratio`` of the steps::

    t <  W:              factor = (t + 1) / W
    t <  T - D:          factor = 1
    otherwise:           factor = m + (1 - m) * shape((T - t) / D),   D = round(warmdown_ratio * T)

with ``shape(u) = u`` (linear, nanochat's) or ``1 - sqrt(1 - u)`` ("sqrt": the
cooldown of Hägele et al., 2024: below linear throughout, it falls fast at first and slowly at the end).

Why warmup: Adam's second-moment estimate is noisy in the first steps, and a
full learning rate then can blow up a transformer. Why cosine to a floor
rather than to zero: the last steps still learn something.

>>> cosine_lr_factor(0, warmup_steps=10, total_steps=100)
0.1
>>> cosine_lr_factor(10, warmup_steps=10, total_steps=100)
1.0
>>> round(cosine_lr_factor(100, warmup_steps=10, total_steps=100), 12)
0.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from microtransformer.errors import ConfigError

MIN_LR_RATIO = 0.1


def cosine_lr_factor(
    step: int, *, warmup_steps: int, total_steps: int, min_ratio: float = MIN_LR_RATIO,
    from_step: int = 0, from_progress: float = 0.0,
) -> float:
    """The multiplier of the base learning rate at ``step`` (see module docstring).

    Steps past ``total_steps`` stay at ``min_ratio`` (training that is resumed
    with more steps than planned keeps a sane LR instead of rising again).
    ``from_step > 0`` anchors a run whose length changed at that step, after
    its warmup (a time budget re-planned): from there the cosine's progress
    runs on from ``from_progress``, where the old length had it, to 1 at the
    new ``total_steps``, so the LR bends but does not jump.

    >>> round(cosine_lr_factor(50, warmup_steps=0, total_steps=100, min_ratio=0.0), 12)  # half way: half the LR
    0.5
    >>> round(cosine_lr_factor(125, warmup_steps=0, total_steps=200, min_ratio=0.0, from_step=50, from_progress=0.5), 12)
    0.146446609407
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0 if warmup_steps else min_ratio
    progress = cosine_progress(
        step, warmup_steps=warmup_steps, total_steps=total_steps, from_step=from_step, from_progress=from_progress
    )
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * progress))


def cosine_progress(
    step: int, *, warmup_steps: int, total_steps: int, from_step: int = 0, from_progress: float = 0.0
) -> float:
    """How far along its cosine (0 -> 1) a run is at ``step``: what :func:`cosine_lr_factor` takes the cosine of."""
    if step < warmup_steps or total_steps <= warmup_steps:
        return 0.0
    if 0 < from_step <= step and from_step < total_steps:
        return min(1.0, from_progress + (1.0 - from_progress) * (step - from_step) / (total_steps - from_step))
    return min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))


WARMDOWN_SHAPES = ("linear", "sqrt")


def wsd_lr_factor(
    step: int, *, warmup_steps: int, total_steps: int, warmdown_ratio: float, min_ratio: float = 0.0,
    shape: str = "linear",
) -> float:
    """Warmup-stable-decay multiplier at ``step`` (see module docstring); ``min_ratio`` past the end.

    >>> [round(wsd_lr_factor(t, warmup_steps=0, total_steps=10, warmdown_ratio=0.5), 2) for t in (0, 5, 6, 9, 10)]
    [1.0, 1.0, 0.8, 0.2, 0.0]
    >>> [round(wsd_lr_factor(t, warmup_steps=0, total_steps=10, warmdown_ratio=0.5, shape="sqrt"), 2) for t in (5, 6, 9)]
    [1.0, 0.55, 0.11]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    warmdown = round(warmdown_ratio * total_steps)
    if step < total_steps - warmdown:
        return 1.0
    if step >= total_steps:
        return min_ratio
    left = (total_steps - step) / warmdown  # share of the decay still ahead, 1 -> 0
    return min_ratio + (1.0 - min_ratio) * (left if shape == "linear" else 1.0 - math.sqrt(1.0 - left))


def wsd_replanned_ratio(step: int, *, total_steps: int, warmdown_ratio: float, new_total: int) -> float:
    """The ``warmdown_ratio`` for a WSD run moved from ``total_steps`` to ``new_total`` at ``step``.

    Inside the warmdown, the one that keeps :func:`wsd_lr_factor` at ``step``
    where it is (for either shape: the share of the decay still ahead is kept)
    and decays from there to the new end (the slope changes, the LR does not
    jump); before it (the LR is flat) or past the old end, ``warmdown_ratio``
    itself.

    >>> wsd_replanned_ratio(8, total_steps=10, warmdown_ratio=0.4, new_total=12)  # the factor at step 8 is 0.5
    0.6666666666666666
    >>> round(wsd_lr_factor(8, warmup_steps=0, total_steps=12, warmdown_ratio=0.6666666666666666), 2)
    0.5
    """
    warmdown = round(warmdown_ratio * total_steps)
    left = (total_steps - step) / warmdown if warmdown else 1.0  # share of the decay still ahead
    if left >= 1.0 or left <= 0.0:
        return warmdown_ratio
    return min(1.0, (new_total - step) / left / new_total)


SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class LRSchedule:
    """``lr_at(step)``: constant ``lr``, or warmup + ``kind`` ("cosine" or "wsd") when ``use_cosine``.

    >>> LRSchedule(lr=1e-3, warmup_steps=0, total_steps=10, use_cosine=False).lr_at(5)
    0.001
    """

    lr: float
    warmup_steps: int
    total_steps: int
    use_cosine: bool = True
    min_ratio: float = MIN_LR_RATIO
    kind: str = "cosine"
    warmdown_ratio: float = 0.0
    warmdown_shape: str = "linear"
    cosine_from_step: int = 0  # > 0: a cosine re-planned at this step, see cosine_lr_factor
    cosine_from_progress: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if self.warmup_steps < 0 or self.total_steps < 1:
            raise ConfigError(
                f"need warmup_steps >= 0 and max_steps >= 1, got warmup_steps={self.warmup_steps}, max_steps={self.total_steps}"
            )
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ConfigError(f"min_ratio must be in [0, 1], got {self.min_ratio}")
        if self.kind not in SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if not 0.0 <= self.warmdown_ratio <= 1.0:
            raise ConfigError(f"warmdown_ratio must be in [0, 1], got {self.warmdown_ratio}")
        if not (isinstance(self.cosine_from_step, int) and self.cosine_from_step >= 0 and 0.0 <= self.cosine_from_progress <= 1.0):
            raise ConfigError(
                "cosine_from_step must be an integer >= 0 and cosine_from_progress in [0, 1], got "
                f"{self.cosine_from_step!r} and {self.cosine_from_progress!r}"
            )
        if self.warmdown_shape not in WARMDOWN_SHAPES:
            raise ConfigError(f"warmdown_shape must be one of {', '.join(WARMDOWN_SHAPES)}, got {self.warmdown_shape!r}")

    def factor(self, step: int) -> float:
        """The multiplier of every group's base learning rate at ``step``."""
        if not self.use_cosine:
            return 1.0
        if self.kind == "wsd":
            return wsd_lr_factor(
                step, warmup_steps=self.warmup_steps, total_steps=self.total_steps,
                warmdown_ratio=self.warmdown_ratio, min_ratio=self.min_ratio, shape=self.warmdown_shape,
            )
        return cosine_lr_factor(
            step, warmup_steps=self.warmup_steps, total_steps=self.total_steps, min_ratio=self.min_ratio,
            from_step=self.cosine_from_step, from_progress=self.cosine_from_progress,
        )

    def lr_at(self, step: int) -> float:
        if not self.use_cosine:
            return float(self.lr)
        return self.lr * self.factor(step)
