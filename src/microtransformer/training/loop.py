"""Pieces every training loop shares: the fused AdamW, the Ctrl-C/SIGTERM stop flag, the progress bar.

The language-model :class:`~microtransformer.training.trainer.Trainer` and
the auto-encoder pre-training (:mod:`microtransformer.autoencoder.pretrain`)
build their loops from these, so both stop, save and report the same way.

>>> with StopFlag() as stop:  # doctest: +SKIP
...     while not stop.requested:
...         step()
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["StopFlag", "adamw", "progress_bar"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = ("SIGINT", "SIGTERM")


def adamw(
    groups: Sequence[dict[str, Any]], *, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.01
) -> torch.optim.AdamW:
    """AdamW, fused where torch supports it (CUDA; CPU since torch 2.4: ~2.5x faster step).

    ``weight_decay`` applies to the groups that do not set their own.
    """
    kwargs: dict[str, Any] = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
    try:
        return torch.optim.AdamW(list(groups), fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # older torch / unsupported device
        return torch.optim.AdamW(list(groups), **kwargs)


def progress_bar(*, total: int, initial: int, desc: str, enabled: bool) -> Any:
    """The tqdm bar of a training loop (steps), off when ``enabled`` is false."""
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)


class StopFlag:
    """First Ctrl-C or SIGTERM: finish the current step, save, stop. A second one: abort at once.

    SIGTERM is what ``kill``, job schedulers and container runtimes send; it
    gets the same clean stop as Ctrl-C so a run stopped that way can resume.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for name in _STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:  # pragma: no cover - platform without SIGTERM
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread: plain KeyboardInterrupt handling only
                break
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        logger.warning("%s: saving a checkpoint after this step (send it again to abort without saving)", what)

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
