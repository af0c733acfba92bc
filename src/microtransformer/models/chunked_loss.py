"""Output layer + optional logit soft-cap + cross-entropy, a block of rows at a time.

Why: on a CPU the training step of a small GPT is dominated not by its
matmuls but by elementwise passes over the ``(B*T, vocab)`` logits (cast,
soft-cap, log-softmax and their backward): tens of MB each, far larger than
the caches. Computing the loss for ``chunk`` rows at a time keeps each
block of logits in cache, and the backward recomputes a block's logits
instead of storing them all. The result is the same mean cross-entropy as
``F.cross_entropy(cap * tanh(h @ W.T / cap), targets, ignore_index=-100)``
(tests compare values and gradients).

>>> h, w = torch.randn(6, 8, requires_grad=True), torch.randn(10, 8, requires_grad=True)
>>> t = torch.tensor([1, 2, 3, -100, 4, 5])
>>> loss = chunked_cross_entropy(h, w, t, vocab_size=10, chunk=4)
>>> ref = F.cross_entropy(h @ w.T, t, ignore_index=-100)
>>> bool(torch.allclose(loss, ref, atol=1e-5))
True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from microtransformer.models.outputs import IGNORE_INDEX

DEFAULT_CHUNK = 256  # rows per block: 256 x 4096 fp32 logits = 4 MB, about one core's L2


def _softmax_dtype(h: torch.Tensor) -> torch.dtype:
    return torch.float64 if h.dtype == torch.float64 else torch.float32


def _matmul_dtype(h: torch.Tensor) -> torch.dtype:
    device = h.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


class _ChunkedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab_size: int, cap: float, chunk: int) -> torch.Tensor:
        dtype = _matmul_dtype(h)
        hc = h.to(dtype)
        wc = weight[:vocab_size].to(dtype)  # padding rows are never scored
        valid = targets != IGNORE_INDEX
        safe = torch.where(valid, targets, 0)
        acc = _softmax_dtype(h)
        lse = torch.empty(h.size(0), dtype=acc, device=h.device)
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        with torch.autocast(h.device.type, enabled=False):
            for s in range(0, h.size(0), chunk):
                z = (hc[s : s + chunk] @ wc.T).to(acc)  # (n, V)
                if cap > 0:
                    z = torch.tanh(z.div_(cap)).mul_(cap)
                lse[s : s + chunk] = torch.logsumexp(z, dim=-1)
                picked = z.gather(1, safe[s : s + chunk, None]).squeeze(1)
                total += ((lse[s : s + chunk] - picked) * valid[s : s + chunk]).sum(dtype=torch.float64)
        n_valid = valid.sum()
        ctx.save_for_backward(hc, wc, safe, valid, lse)
        ctx.meta = (h.dtype, weight.shape, weight.dtype, cap, chunk, n_valid)
        return (total / n_valid).to(acc)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        hc, wc, safe, valid, lse = ctx.saved_tensors
        h_dtype, w_shape, w_dtype, cap, chunk, n_valid = ctx.meta
        acc = lse.dtype
        scale = grad.to(acc) / n_valid
        dh = torch.empty(hc.shape, dtype=h_dtype, device=hc.device)
        dw = torch.zeros((wc.size(0), wc.size(1)), dtype=acc, device=hc.device)
        with torch.autocast(hc.device.type, enabled=False):
            for s in range(0, hc.size(0), chunk):
                rows = hc[s : s + chunk]
                z = (rows @ wc.T).to(acc)  # (n, V), recomputed
                if cap > 0:
                    t = torch.tanh(z.div_(cap))
                    z = t * cap
                p = torch.exp(z - lse[s : s + chunk, None])  # softmax
                p.scatter_add_(1, safe[s : s + chunk, None], torch.full_like(p[:, :1], -1.0))
                p.mul_((valid[s : s + chunk, None] * scale).to(acc))
                if cap > 0:
                    p.mul_(1 - t * t)  # d(cap * tanh(u / cap)) / du
                g = p.to(hc.dtype)
                dh[s : s + chunk] = (g @ wc).to(h_dtype)
                dw += (g.T @ rows).to(acc)
        dweight = torch.zeros(w_shape, dtype=w_dtype, device=hc.device)
        dweight[: wc.size(0)] = dw.to(w_dtype)
        return dh, dweight, None, None, None, None


def chunked_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, vocab_size: int, cap: float = 0.0, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Mean cross-entropy of ``softcap(h @ weight[:vocab_size].T)`` against ``targets`` (``-100`` ignored).

    ``h`` ``(N, C)``, ``weight`` ``(V_padded, C)``, ``targets`` ``(N,)``.
    Under autocast the matmuls run in the autocast dtype, the softmax in fp32.
    """
    return _ChunkedCE.apply(h, weight, targets, vocab_size, float(cap), chunk)
