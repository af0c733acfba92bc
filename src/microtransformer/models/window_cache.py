"""A continuous cache over the context window: the tokens that followed positions like this one earlier in it.

At inference the model's next-token distribution is mixed with one over the
tokens that followed earlier positions of the same context, each weighted by
how alike its final hidden state is to the current one (Grave et al., 2017,
"Improving neural language models with a continuous cache")::

    p(w) = (1 - lam) * p_model(w) + lam * sum over j < t with x[j+1] = w of softmax_j(theta * cos(h_t, h_j))

Why: a model that has read its training books several times predicts their
words from memory, while a new text repeats its own (its names above all)
within a window; the cache copies them. It has no weights, only ``theta`` and
``lam``, which :func:`calibrate` picks on validation text the model did not
train on, and the model applies it in eval mode only (the training loss stays
the model's own).

>>> import torch
>>> h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # position 2 is like position 0
>>> p = cache_log_probs(torch.zeros(1, 3, 8), h, torch.tensor([[5, 6, 7]]), theta=50.0, lam=0.5).exp()
>>> round(p[0, 2, 6].item(), 3)  # 6 followed position 0: about half the mass, plus half the model's 1/8
0.562
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

#: the grid :func:`calibrate` searches (lam = 0 is always a candidate: the cache stays off when it does not help)
THETAS: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0)
LAMBDAS: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.08)
#: how many validation tokens :func:`calibrate` reads at most (two knobs need no more; the cost stays bounded)
MAX_TOKENS = 1 << 16


def cache_log_probs(
    logits: torch.Tensor,
    hidden: torch.Tensor,
    ids: torch.Tensor,
    *,
    theta: float,
    lam: float,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probabilities ``(B, T, V)`` of the model + cache mixture for the last ``T`` of ``S`` positions.

    ``logits`` ``(B, T, V)``: the model's, for those positions; ``hidden`` ``(B, S, C)`` and ``ids`` ``(B, S)``:
    the final hidden states and input ids of every position so far (earlier ones from a KV cache); ``key_mask``
    ``(B, S)``: False for padding. A position with no earlier one to copy from keeps the model's distribution.
    """
    B, T, V = logits.shape
    att, has = _attention(hidden, ids, T, theta, key_mask)  # (B, T, S-1), (B, T, 1)
    S = ids.size(1)
    copy = torch.zeros(B, T, V, device=logits.device).scatter_add_(-1, ids[:, None, 1:].expand(B, T, S - 1), att)
    return _mixture(torch.softmax(logits.float(), dim=-1), copy, has, lam)


def _mixture(p_model: torch.Tensor, p_copy: torch.Tensor, has: torch.Tensor, lam: float) -> torch.Tensor:
    """``log((1 - lam) p_model + lam p_copy)`` where there is an earlier position (``has`` 1), else ``log p_model``."""
    p = p_model * (1.0 - lam * has) + lam * p_copy
    return p.clamp_min(torch.finfo(torch.float32).tiny).log()


def _attention(
    hidden: torch.Tensor, ids: torch.Tensor, T: int, theta: float, key_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cache's weights ``(B, T, S-1)`` over the earlier positions ``j`` (whose next token ``ids[:, j+1]`` is
    known) for the last ``T`` positions, and ``(B, T, 1)``: 1 where there is any earlier position, else 0."""
    B, S = ids.shape
    h = F.normalize(hidden.float(), dim=-1)  # (B, S, C)
    q, k = h[:, S - T :], h[:, : S - 1]  # queries (B, T, C); keys (B, S-1, C)
    rows = torch.arange(S - T, S, device=ids.device)  # (T,): each query's position
    valid = (torch.arange(S - 1, device=ids.device)[None, :] < rows[:, None]).expand(B, T, S - 1)  # j < t
    if key_mask is not None:
        valid = valid & key_mask[:, None, : S - 1].to(torch.bool)
    with torch.autocast(ids.device.type, enabled=False):  # fp32: theta sharpens any rounding of the cosines
        scores = (theta * (q @ k.transpose(1, 2))).masked_fill(~valid, float("-inf"))  # (B, T, S-1)
    att = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with nothing valid: all zero
    return att, valid.any(-1, keepdim=True).float()


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` chose: ``theta`` and ``lam`` (0 = off) and the validation bits per token with
    (``nats``) and without (``base_nats``) the cache, in nats per scored token."""

    theta: float
    lam: float
    nats: float
    base_nats: float


@torch.no_grad()
def calibrate(
    model: torch.nn.Module,
    ids: Any,
    *,
    block_size: int,
    batch_size: int = 16,
    max_tokens: int = MAX_TOKENS,
    thetas: Sequence[float] = THETAS,
    lambdas: Sequence[float] = LAMBDAS,
    autocast: Callable[[], Any] | None = None,
) -> Calibration:
    """The ``theta`` and ``lam`` with the lowest loss on ``ids`` (validation text; its first ``max_tokens``;
    an array or anything sliced into one), scored as the evaluation does:
    windows of ``block_size`` tokens, each target once; ``autocast``: a context for the forward passes, as
    :func:`~microtransformer.evaluation.downstream.heldout_bits_per_byte` takes. ``lam = 0`` when no setting
    beats the model alone."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = np.asarray(ids[:max_tokens], dtype=np.int64)
    starts = list(range(0, max(len(ids) - 1, 0), block_size))
    totals = torch.zeros(len(thetas), len(lambdas) + 1, dtype=torch.float64)
    count = 0
    hidden: dict[str, torch.Tensor] = {}
    hook = model.transformer.ln_f.register_forward_hook(lambda m, i, o: hidden.__setitem__("h", o))  # type: ignore[union-attr]
    lams = (0.0, *lambdas)
    try:
        for i in range(0, len(starts), batch_size):
            group = [s for s in starts[i : i + batch_size] if len(ids) - s >= 2]
            width = min(block_size + 1, min(len(ids) - s for s in group))
            rows = torch.from_numpy(np.stack([ids[s : s + width] for s in group])).to(device)
            x, y = rows[:, :-1], rows[:, 1:]
            with (autocast or contextlib.nullcontext)():
                logits = model(x, window_cache=False).logits.float()  # the model alone; its hidden states hooked
            p_model = torch.softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1).double()  # (B, T)
            same = (x[:, None, 1:] == y[:, :, None]).double()  # (B, T, T-1): position j was followed by y_t
            for a, theta in enumerate(thetas):
                att, has = _attention(hidden["h"], x, x.size(1), theta, None)
                p_copy = (att.double() * same).sum(-1)  # (B, T): the cache's probability of each target
                for b, lam in enumerate(lams):  # the mixture at the targets only
                    totals[a, b] -= _mixture(p_model, p_copy, has.squeeze(-1).double(), lam).sum().cpu()
            count += y.numel()
    finally:
        hook.remove()
        model.train(was_training)
    a, b = divmod(int(torch.argmin(totals)), totals.size(1))
    base = float(totals[0, 0]) / max(count, 1)
    best = float(totals[a, b]) / max(count, 1)
    choice = Calibration(float(thetas[a]), float(lams[b]), best, base)
    logger.info("window cache: theta %g, lambda %g on %d validation tokens (%.4f -> %.4f nats per token)",
                choice.theta, choice.lam, count, base, best)
    return choice

