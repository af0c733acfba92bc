"""What a language model returns, and how its loss reads ``targets`` and ``labels``.

Both models return a :class:`CausalLMOutput`, a ``NamedTuple``, so every
calling style the ecosystem uses works on the same object:

>>> out = CausalLMOutput(logits=torch.zeros(1, 3, 5), loss=None)
>>> logits, loss = out            # nanoGPT: ``logits, loss = model(idx, targets)``
>>> out[0].shape                  # tutorials: ``outputs[0][:, -1, :]``
torch.Size([1, 3, 5])
>>> out.logits is out[0]          # Hugging Face: ``model(**batch).logits``
True

Two ways to ask for a loss, with different meanings:

- ``targets`` (nanoGPT): already shifted, ``targets[:, t]`` is the token that
  follows ``input_ids[:, t]``; what :meth:`get_batch` returns.
- ``labels`` (Hugging Face causal LM): aligned with ``input_ids`` (usually a
  copy of it); the model shifts them, so ``logits[:, t]`` is scored against
  ``labels[:, t + 1]``.

Either way positions whose label is ``-100`` (:data:`IGNORE_INDEX`, PyTorch's
``cross_entropy`` default and HF's convention) are left out of the mean;
no other id is special.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from microtransformer.errors import ConfigError

IGNORE_INDEX = -100


class CausalLMOutput(NamedTuple):
    """``logits`` ``(B, T, vocab_size)`` (``(B, 1, vocab_size)`` with ``last_only``; None with ``loss_only``) and the mean loss or None."""

    logits: torch.Tensor | None
    loss: torch.Tensor | None = None


def loss_targets(
    length: int, *, targets: torch.Tensor | None = None, labels: torch.Tensor | None = None, shape: tuple[int, ...]
) -> tuple[slice, torch.Tensor] | None:
    """Which positions are scored and against what: ``(positions, targets)``, or None without labels.

    ``targets`` are already shifted; ``labels`` are shifted here (see the
    module docstring). Passing both is an error: they mean different things.
    ``shape`` is ``input_ids``'s ``(B, T)``, for the shape check.
    """
    if targets is not None and labels is not None:
        raise ConfigError(
            "pass either targets (already shifted, nanoGPT style) or labels (same positions as input_ids, "
            "Hugging Face style), not both"
        )
    given = targets if targets is not None else labels
    if given is None:
        return None
    if tuple(given.shape) != tuple(shape):
        raise ConfigError(f"labels/targets of shape {tuple(given.shape)} do not match input_ids of shape {tuple(shape)}")
    if labels is not None:
        return slice(0, length - 1), labels[:, 1:]  # (B, T-1)
    return slice(0, length), given


def causal_lm_loss(
    logits: torch.Tensor, *, targets: torch.Tensor | None = None, labels: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Mean cross-entropy (fp32) over positions whose label is not ``-100``; None without labels.

    See :func:`loss_targets` for ``targets`` versus ``labels``.
    """
    scored = loss_targets(logits.size(1), targets=targets, labels=labels, shape=tuple(logits.shape[:-1]))
    if scored is None:
        return None
    positions, y = scored
    logits = logits[:, positions, :]  # (B, T or T-1, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE_INDEX)


def key_padding_mask(attention_mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor | None:
    """``attention_mask`` ``(B, length)`` as bool, or None when it masks nothing (the fast path).

    ``length`` counts every position the model attends to: cached ones
    included. Raises :class:`ConfigError` on a wrong shape.
    """
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != (batch, length):
        raise ConfigError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but the model sees {batch} sequences of "
            f"{length} positions (cached positions included)"
        )
    mask = attention_mask.to(torch.bool)
    return None if bool(mask.all()) else mask


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token: ``[0, 0, 1, 2]`` for mask ``[0, 1, 1, 1]``.

    With left padding, a sequence then gets the same position embeddings as
    when it is alone; padding positions get 0 (their outputs are never used).
    """
    return (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
