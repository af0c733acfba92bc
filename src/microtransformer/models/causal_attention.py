"""Causal self-attention: torch's fused kernel, or query blocks of plain matmuls inside compiled CPU code.

Why: on a CPU, ``F.scaled_dot_product_attention``'s fused kernel runs bf16
no faster than fp32 and is a large share of a small GPT's training step
(docs/benchmarks.md has the profile).
Written as plain matmuls, a softmax and a mask, the same attention lets
``torch.compile`` hand the matmuls to the bf16 units and fuse the softmax
and its backward into single passes; splitting the queries into blocks of
:data:`QUERY_BLOCK` rows, each against only the keys at or before its last
row, skips most of the masked half of the score matrix. Eager code keeps the
fused kernel (there the plain form is slower), and so do other devices,
dropout and explicit masks.

The result is the same function (tests compare values and gradients with
``F.scaled_dot_product_attention(q, k, v, is_causal=True)``). The scores
are computed and soft-maxed in fp32, as in the fused kernel: under bf16
autocast a bf16 matmul would round them to 8 bits of mantissa first (about
1.5 times the kernel's gradient error), and compiled, the fp32 matmul costs
little more.
The probabilities then meet the values in the values' dtype.

>>> q, k, v = (torch.randn(1, 2, 300, 8) for _ in range(3))
>>> ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
>>> torch.allclose(blockwise_causal_attention(q, k, v, block=128), ref, atol=1e-5)
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUERY_BLOCK = 128  # rows of queries per block: each block's scores, (B, heads, 128, keys), stay small


def blockwise_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int) -> torch.Tensor:
    """Causal softmax attention of ``q``, ``k``, ``v`` ``(B, heads, T, head_dim)``, ``block`` query rows at a time:
    block ``i`` (rows ``s:e``) scores only keys ``0:e``, so the fully masked key blocks to its right are never
    computed. The softmax runs in fp32 (or float64 for float64 inputs)."""
    T = q.size(-2)
    scale = q.size(-1) ** -0.5
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    out = []
    with torch.autocast(q.device.type, enabled=False):  # the scores' matmul in fp32, as the fused kernel keeps them
        for s in range(0, T, block):
            e = min(s + block, T)
            scores = (q[..., s:e, :].to(acc) @ k[..., :e, :].to(acc).mT) * scale  # (B, nh, e - s, e)
            scores = scores.masked_fill(~causal[s:e, :e], float("-inf"))
            out.append(torch.softmax(scores, dim=-1).to(v.dtype) @ v[..., :e, :])
    return torch.cat(out, dim=-2)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)``; inside compiled CPU code
    without dropout, :func:`blockwise_causal_attention` (the same values, faster there)."""
    if dropout_p == 0.0 and q.device.type == "cpu" and torch.compiler.is_compiling():
        return blockwise_causal_attention(q, k, v, QUERY_BLOCK)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
