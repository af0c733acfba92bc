"""Output layer (+ an optional bias) + optional logit soft-cap + cross-entropy, a block of rows at a time.

Why: on a CPU the training step of a small GPT is dominated not by its
matmuls but by elementwise passes over the ``(B*T, vocab)`` logits (cast,
soft-cap, log-softmax and their backward): tens of MB each, far larger than
the caches. Computing the loss for ``chunk`` rows at a time keeps each
block of logits in cache; while a block is there, the forward also turns it
into the block's gradient (softmax minus one-hot, scaled, through the
soft-cap) and stores that in the matmul dtype (bf16 under autocast: half
the bytes of fp32 logits), so the backward is two large matmuls with no
second pass over the logits. The result is the same mean cross-entropy as
``F.cross_entropy(cap * tanh(h @ W.T / cap), targets, ignore_index=-100)``
(tests compare values and gradients).

Memory is reused rather than allocated: in fp32 each block's logits are
computed straight into its rows of the stored gradient (no copy), and the
stored gradient, ``(B*T, vocab)``, goes back to a one-slot spare after its
backward for the next step's forward. A fresh buffer that size each step
costs the CPU a page fault per 4 KB on first touch, which slowed the block
copies and matmuls (docs/benchmarks.md).
A buffer belongs to one graph at a time (taken from the spare in the forward,
given back in the backward), so a second forward before a backward gets a
fresh one.

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


#: the spare logit-gradient buffer, what the last backward gave back (one at a time: a run's shape rarely
#: changes, and each can be 100s of MB)
_spare: list[torch.Tensor] = []


def _take_buffer(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The spare buffer if it has this shape, dtype and device (then no longer spare), else a new one."""
    if _spare and (tuple(_spare[0].shape), _spare[0].dtype, _spare[0].device) == (shape, dtype, device):
        return _spare.pop()
    return torch.empty(shape, dtype=dtype, device=device)


def _give_back(buf: torch.Tensor) -> None:
    """Keep ``buf`` as the spare, in place of any other."""
    _spare[:] = [buf]


def _matmul_dtype(h: torch.Tensor) -> torch.dtype:
    device = h.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


class _ChunkedCE(torch.autograd.Function):
    """Forward computes, block by block, the loss and (when a gradient is wanted) the gradient of the
    logits, while the block is in cache; backward is then two large matmuls with the stored gradient."""

    @staticmethod
    def forward(
        ctx: Any, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
        vocab_size: int, cap: float, chunk: int, want_grad: bool,
    ) -> torch.Tensor:
        dtype = _matmul_dtype(h)
        hc = h.to(dtype)
        wc = weight[:vocab_size].to(dtype)  # padding rows are never scored
        bc = None if bias is None else bias[:vocab_size].to(_softmax_dtype(h))  # added in the softmax dtype
        valid = targets != IGNORE_INDEX
        safe = torch.where(valid, targets, 0)
        n_valid = valid.sum()
        acc = _softmax_dtype(h)
        weights = (valid / n_valid.clamp(min=1)).to(acc)  # each scored row's share of the mean
        dz = _take_buffer((h.size(0), wc.size(0)), dtype, h.device) if want_grad else None
        in_place = dz is not None and dtype == acc  # each block's logits computed in its rows of dz
        block = None if in_place else torch.empty((min(chunk, h.size(0)), wc.size(0)), dtype=dtype, device=h.device)
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        with torch.autocast(h.device.type, enabled=False):
            for s in range(0, h.size(0), chunk):
                rows = slice(s, s + chunk)
                n = min(chunk, h.size(0) - s)
                out = dz[rows] if in_place else block[:n]  # type: ignore[index]
                z = torch.mm(hc[rows], wc.T, out=out).to(acc)  # (n, V); a copy only when the matmul dtype is not acc
                if bc is not None:
                    z.add_(bc)
                t = None
                if cap > 0:
                    t = torch.tanh(z.div_(cap))
                    z = torch.mul(t, cap, out=z)
                picked = z.gather(1, safe[rows, None]).squeeze(1)
                top = z.amax(dim=-1, keepdim=True)
                e = z.sub_(top).exp_()  # in place: z is not needed again
                norm = e.sum(dim=-1, keepdim=True)
                lse = top.squeeze(1) + norm.squeeze(1).log()
                total += ((lse - picked) * valid[rows]).sum(dtype=torch.float64)
                if dz is not None:
                    g = e.mul_(weights[rows, None] / norm)  # softmax x row weight
                    g.scatter_add_(1, safe[rows, None], -weights[rows, None])  # minus the one-hot target
                    if t is not None:
                        g.mul_(t.mul_(t).neg_().add_(1))  # d(cap * tanh(u / cap)) / du = 1 - tanh^2
                    if not in_place:
                        dz[rows] = g
        ctx.save_for_backward(hc, wc, dz)
        ctx.meta = (h.dtype, weight.shape, weight.dtype, None if bias is None else (bias.shape, bias.dtype))
        return (total / n_valid).to(acc)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        hc, wc, dz = ctx.saved_tensors
        if dz is None:
            raise RuntimeError("chunked_cross_entropy was called without gradients enabled; it cannot be differentiated")
        h_dtype, w_shape, w_dtype, b_meta = ctx.meta
        with torch.autocast(hc.device.type, enabled=False):
            dh = (dz @ wc).to(h_dtype) * grad.to(h_dtype)
            dw = (dz.T @ hc).to(w_dtype) * grad.to(w_dtype)
        _give_back(dz)  # the next step's forward writes it again
        dweight = torch.zeros(w_shape, dtype=w_dtype, device=hc.device)
        dweight[: wc.size(0)] = dw
        dbias = None
        if b_meta is not None:
            dbias = torch.zeros(b_meta[0], dtype=b_meta[1], device=hc.device)
            dbias[: wc.size(0)] = dz.sum(0, dtype=torch.float32).to(b_meta[1]) * grad.to(b_meta[1])
        return dh, dweight, dbias, None, None, None, None, None


def chunked_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, vocab_size: int, cap: float = 0.0,
    chunk: int = DEFAULT_CHUNK, bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``softcap(h @ weight[:vocab_size].T + bias[:vocab_size])`` against ``targets`` (``-100``
    ignored; no ``bias``: none).

    ``h`` ``(N, C)``, ``weight`` ``(V_padded, C)``, ``bias`` ``(>= vocab_size,)``, ``targets`` ``(N,)``.
    Under autocast the matmuls run in the autocast dtype, the softmax in fp32.
    """
    want_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))
    return _ChunkedCE.apply(h, weight, bias, targets, vocab_size, float(cap), chunk, want_grad)
