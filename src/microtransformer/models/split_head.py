"""A two-level output layer: the most frequent tokens, and one class for all the others (``head_split``).

With ``k = head_split`` and the vocabulary ordered by how often each token
occurs in the training text (``order``, most frequent first)::

    p(w) = softmax(h @ [W[order[:k]]; c].T)[w]                                   w among the k most frequent
    p(w) = softmax(h @ [W[order[:k]]; c].T)[k] * softmax(h @ W[order[k:]].T)[w]  otherwise

``W`` is the output layer's usual ``(vocab, C)`` matrix and ``c`` one more row
of it, the class of the rarer tokens. It is an exact distribution over the
vocabulary (evaluation, sampling, the window cache and Hugging Face style
``labels`` read its full log-probabilities), not a sampled approximation:
class-based softmax (Goodman, 2001) with adaptive softmax's frequency split
(Grave et al., 2017), every row at the model's full width.

Why: on a CPU the output layer of a small model is a large share of its step
(a 4,096-token vocabulary at width 128 costs as much as four blocks), while
its 1,024 most frequent tokens are about 80 % of book text. Training then
computes ``k + 1`` logits at every position and the other ``vocab - k`` only
at the positions whose target is one of them.

>>> import torch
>>> h, W, c = torch.randn(5, 8), torch.randn(6, 8), torch.randn(1, 8)
>>> order = torch.tensor([3, 0, 5, 1, 2, 4])
>>> lp = split_log_probs(h, W, c, order, k=2)
>>> bool(torch.allclose(lp.exp().sum(-1), torch.ones(5)))
True
>>> y = torch.tensor([3, 4, 0, 2, -100])
>>> nll = split_cross_entropy(h, W, c, order, y, k=2)
>>> bool(torch.isclose(nll, -lp[:4].gather(1, y[:4, None]).mean()))
True
"""

from __future__ import annotations

import numpy as np
import torch

from microtransformer.models.chunked_loss import chunked_cross_entropy
from microtransformer.models.outputs import IGNORE_INDEX


def count_vector(counts: np.ndarray | torch.Tensor | list[int], vocab_size: int) -> torch.Tensor:
    """``counts`` as a float64 ``(vocab_size,)`` tensor: ids past them count 0, counts past ``vocab_size`` are dropped.

    >>> count_vector([2, 5], 3).tolist()
    [2.0, 5.0, 0.0]
    """
    c = torch.zeros(vocab_size, dtype=torch.float64)
    given = torch.as_tensor(np.asarray(counts, dtype=np.float64))[:vocab_size]
    c[: len(given)] = given
    return c


def frequency_order(counts: np.ndarray | torch.Tensor | list[int], vocab_size: int, k: int = 0) -> tuple[torch.Tensor, float]:
    """``(vocab_size,)`` token ids by falling count (ties: lower id first; ids past ``counts`` count 0), and the
    share of the counts outside the first ``k`` of them.

    >>> order, rest = frequency_order(np.array([5, 9, 0, 9]), 5, k=2)
    >>> order.tolist(), round(rest, 3)
    ([1, 3, 0, 2, 4], 0.217)
    """
    c = count_vector(counts, vocab_size)
    order = torch.sort(-c, stable=True).indices
    return order, float(c[order[k:]].sum() / max(float(c.sum()), 1.0))


def _head_rows(weight: torch.Tensor, class_row: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """``(k + 1, C)``: the ``k`` most frequent tokens' rows, then the class row."""
    return torch.cat([weight[order[:k]], class_row.to(weight.dtype)])


def _level_biases(bias: torch.Tensor | None, order: torch.Tensor, k: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``bias`` ``(V + 1,)`` (by id, then the class's) as the first level's ``(k + 1,)`` and the rest's ``(V - k,)``."""
    if bias is None:
        return None, None
    return torch.cat([bias[order[:k]], bias[-1:]]), bias[order[k:]]


def split_log_probs(
    h: torch.Tensor, weight: torch.Tensor, class_row: torch.Tensor, order: torch.Tensor, *, k: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probabilities ``(..., V)`` in id order (fp32) of the two-level layer for hidden states ``h`` ``(..., C)``.

    ``weight`` ``(>= V, C)``: the output rows by id (padding rows past ``V = len(order)`` are not used);
    ``class_row`` ``(1, C)``; ``order`` ``(V,)``: every id once, most frequent first; ``bias`` ``(V + 1,)``, optional:
    each id's logit bias, then the class's.
    """
    first_bias, rest_bias = _level_biases(bias, order, k)
    head = (h @ _head_rows(weight, class_row, order, k).T).float()  # (..., k+1)
    rest = (h @ weight[order[k:]].T).float()  # (..., V-k)
    if bias is not None:
        head, rest = head + first_bias.float(), rest + rest_bias.float()
    head = head.log_softmax(-1)
    rest = rest.log_softmax(-1) + head[..., k:]
    out = torch.empty(*h.shape[:-1], len(order), dtype=torch.float32, device=h.device)
    out[..., order] = torch.cat([head[..., :k], rest], -1)
    return out


def split_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    class_row: torch.Tensor,
    order: torch.Tensor,
    targets: torch.Tensor,
    *,
    k: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean negative log-likelihood (fp32) of ``targets`` ``(N,)`` (``-100`` ignored) under the two-level layer,
    for ``h`` ``(N, C)``: the rarer tokens' logits only at the positions whose target is one of them (``bias`` as
    for :func:`split_log_probs`).

    Each level is a :func:`chunked_cross_entropy` (its logits a block of rows at a time, their gradient made while
    the block is in cache): the first over every scored position with a rarer target scored as the class, the
    second over the rarer targets' positions; their sum over positions is the two-level loss.
    """
    rank = torch.empty_like(order)  # order's inverse: each id's place in it
    rank[order] = torch.arange(len(order), device=order.device)
    keep = targets != IGNORE_INDEX
    r = rank[targets.clamp(min=0)]  # (N,): each target's place in the order
    first_bias, rest_bias = _level_biases(bias, order, k)
    first = chunked_cross_entropy(h, _head_rows(weight, class_row, order, k), torch.where(keep, r.clamp(max=k), IGNORE_INDEX),
                                  vocab_size=k + 1, bias=first_bias)
    rare = torch.nonzero(keep & (r >= k)).squeeze(1)  # (M,)
    if not rare.numel():
        return first
    second = chunked_cross_entropy(h[rare], weight[order[k:]], r[rare] - k, vocab_size=len(order) - k, bias=rest_bias)
    return first + second * (rare.numel() / keep.sum())
