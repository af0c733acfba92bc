"""RMSNorm and ReLU² with hand-written backward passes: the same values, fewer passes over memory.

Why: in a small GPT on a CPU the elementwise work around the matmuls costs
about as much as the matmuls. Autograd's composition of ``F.rms_norm`` runs
separate passes for the square, mean, multiply and their backward, and under
autocast its fp32 output is then cast again for the next matmul;
``relu(x).square()`` keeps ``x`` and runs ``pow``'s backward plus a
threshold. Here each is one ``autograd.Function``:

- :func:`rms_norm` computes in fp32 (or the input's wider dtype) and returns
  ``out_dtype`` directly, so a norm that feeds a matmul under autocast hands
  it bf16 without a second cast pass;
- :func:`relu_squared` saves ``relu(x)`` and its backward is one multiply.

Under ``torch.compile`` on an accelerator both return the plain composition instead, which the compiler
fuses and differentiates itself: with the hand-written functions inside, compiled blocks gave wrong gradients
below the last MLP on a CUDA GPU with torch 2.11 (tests/training/test_cuda.py checks compiled gradients against
eager where a GPU is present). On the CPU they stay inside compiled code: the gradients match eager's there
(tests/models/test_gpt_options.py) and a compiled training step takes the same time either way.

Values equal ``F.rms_norm`` (same eps) and ``F.relu(x).square()``; tests compare
them and their gradients.

>>> x = torch.randn(2, 8)
>>> torch.allclose(rms_norm(x), F.rms_norm(x, (8,)), atol=1e-6)
True
>>> torch.equal(relu_squared(x), F.relu(x).square())
True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _plain(x: torch.Tensor) -> bool:
    """Whether to use the autograd composition: no gradient wanted, or compiled code off the CPU."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return True
    return torch.compiler.is_compiling() and x.device.type != "cpu"


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        eps = torch.finfo(x.dtype).eps  # F.rms_norm's default
        xa = x.to(_accumulate_dtype(x.dtype))
        inv = torch.rsqrt(xa.square().mean(-1, keepdim=True).add_(eps))  # (..., 1)
        ctx.save_for_backward(x, inv)
        return (xa * inv).to(out_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, inv = ctx.saved_tensors
        y = x.to(inv.dtype) * inv  # the normalised input, recomputed rather than stored
        dot = (grad * y).mean(-1, keepdim=True)  # (..., 1)
        return (grad - y * dot).mul_(inv).to(x.dtype), None


def rms_norm(x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps)`` over the last dimension, returned in ``out_dtype`` (default: ``x``'s)."""
    if _plain(x):
        return F.rms_norm(x, (x.size(-1),)).to(out_dtype or x.dtype)
    return _RMSNorm.apply(x, out_dtype or x.dtype)


class _ReLUSquared(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return (grad * r).mul_(2)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    """``relu(x) ** 2`` (So et al., 2021, "Primer")."""
    if _plain(x):
        return F.relu(x).square()
    return _ReLUSquared.apply(x)
