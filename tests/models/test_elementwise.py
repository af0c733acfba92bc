"""The hand-written RMSNorm and ReLU² equal autograd's composition, values and gradients, in every dtype used."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microtransformer.models.elementwise import relu_squared, rms_norm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_rms_norm_matches_f_rms_norm(dtype) -> None:
    torch.manual_seed(0)
    x = (torch.randn(3, 5, 16, dtype=dtype) * 3).requires_grad_()
    g = torch.randn(3, 5, 16, dtype=dtype)
    ours = rms_norm(x)
    ours.backward(g)
    ours_grad, x.grad = x.grad, None
    ref = F.rms_norm(x.float() if dtype == torch.bfloat16 else x, (16,), eps=torch.finfo(dtype).eps)
    ref.backward(g.to(ref.dtype))
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2}[dtype]
    assert ours.dtype == ours_grad.dtype == dtype
    torch.testing.assert_close(ours.to(ref.dtype), ref, atol=tol, rtol=tol)
    torch.testing.assert_close(ours_grad.to(ref.dtype), x.grad.to(ref.dtype), atol=tol, rtol=tol)
    with torch.no_grad():  # the no-grad path (evaluation, generation) gives the same values
        torch.testing.assert_close(rms_norm(x), ours, atol=tol, rtol=tol)


def test_rms_norm_returns_the_dtype_asked_for_and_its_gradient_in_the_input_dtype() -> None:
    x = torch.randn(4, 8, requires_grad=True)
    y = rms_norm(x, torch.bfloat16)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), F.rms_norm(x, (8,)).bfloat16().float())
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    assert float(x.grad.abs().max()) > 0


def test_rms_norm_gradient_passes_gradcheck() -> None:
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: rms_norm(t), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_relu_squared_matches_autograd_bit_for_bit(dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 48, dtype=dtype, requires_grad=True)
    g = torch.randn(64, 48, dtype=dtype)
    ours = relu_squared(x)
    ours.backward(g)
    ours_grad, x.grad = x.grad, None
    ref = F.relu(x).square()
    ref.backward(g)
    assert torch.equal(ours, ref) and torch.equal(ours_grad, x.grad)


def test_compiled_code_keeps_the_hand_written_functions_on_the_cpu_only(monkeypatch) -> None:
    """Inside ``torch.compile`` (simulated) a CPU tensor still goes through the autograd.Function; a tensor on any
    other device (a meta tensor stands in for a GPU) gets the plain composition."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    cpu = torch.randn(4, 8, requires_grad=True)
    other = torch.empty(4, 8, device="meta", requires_grad=True)
    for fn, node in ((rms_norm, "_RMSNormBackward"), (relu_squared, "_ReLUSquaredBackward")):
        assert fn(cpu).grad_fn.name() == node
        assert fn(other).grad_fn.name() != node
