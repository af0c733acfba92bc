"""Blockwise causal attention equals torch's fused kernel; compiled CPU code takes it, everything else the kernel."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from microtransformer.models import causal_attention as ca


def qkv(T: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(2 * torch.randn(2, 3, T, 8, generator=g, dtype=dtype)).requires_grad_() for _ in range(3)]


def value_and_grads(fn, q, k, v) -> list[torch.Tensor]:
    out = fn(q, k, v)
    g = torch.Generator().manual_seed(1)
    out.backward(torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype))  # the same upstream in any dtype
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    return [out.detach(), *grads]


@pytest.mark.parametrize(("T", "block"), [(1, 4), (7, 4), (8, 4), (13, 4), (13, 13), (13, 64), (300, 128)])
def test_blockwise_equals_the_fused_kernel_in_value_and_gradients(T: int, block: int) -> None:
    q, k, v = qkv(T)
    ref = value_and_grads(lambda *t: F.scaled_dot_product_attention(*t, is_causal=True), q, k, v)
    got = value_and_grads(lambda *t: ca.blockwise_causal_attention(*t, block=block), q, k, v)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=name)


def test_a_query_sees_no_later_key() -> None:
    q, k, v = (t.detach() for t in qkv(10))
    base = ca.blockwise_causal_attention(q, k, v, 3)
    k2, v2 = k.clone(), v.clone()
    k2[..., 6:, :] += 5.0
    v2[..., 6:, :] -= 5.0
    moved = (ca.blockwise_causal_attention(q, k2, v2, block=3) - base).abs().amax(dim=(0, 1, 3))  # (T,)
    assert moved[:6].max() == 0 and moved[6:].min() > 0


def test_eager_code_uses_the_fused_kernel_and_compiled_cpu_code_the_blocks(monkeypatch) -> None:
    q, k, v = (t.detach().float() for t in qkv(300))
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(ca.causal_attention(q, k, v), fused)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert torch.equal(ca.causal_attention(q, k, v), ca.blockwise_causal_attention(q, k, v, ca.QUERY_BLOCK))
    torch.manual_seed(0)
    with_dropout = ca.causal_attention(q, k, v, dropout_p=0.5)  # dropout keeps the kernel
    torch.manual_seed(0)
    assert torch.equal(with_dropout, F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, is_causal=True))


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_attention_matches_the_fused_kernel() -> None:
    """A real ``torch.compile`` (the suite otherwise runs with compilation disabled), 3 query blocks, fp32."""
    import torch._dynamo

    q, k, v = (t.detach().float().requires_grad_() for t in qkv(300))
    ref = value_and_grads(lambda *t: F.scaled_dot_product_attention(*t, is_causal=True), q, k, v)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(disable=False, suppress_errors=False):
        compiled = torch.compile(ca.causal_attention, dynamic=False)
        got = value_and_grads(compiled, q, k, v)
    torch._dynamo.reset()
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)  # fp32; gradients up to ~20 here


def test_under_bf16_autocast_the_scores_stay_fp32_and_err_no_more_than_the_fused_kernel() -> None:
    q, k, v = qkv(512, seed=3)
    ref = value_and_grads(lambda *t: F.scaled_dot_product_attention(*t, is_causal=True), q, k, v)  # float64

    def error(fn) -> float:
        low = [t.detach().to(torch.bfloat16).requires_grad_() for t in (q, k, v)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = value_and_grads(fn, *low)
        return max(float((a.double() - b).norm() / b.norm()) for a, b in zip(got, ref))

    fused = error(lambda *t: F.scaled_dot_product_attention(*t, is_causal=True))
    blocks = error(lambda *t: ca.blockwise_causal_attention(*t, 128))
    assert blocks < 1.25 * fused, (blocks, fused)  # bf16 scores err ~1.4x the kernel here
