"""The chunked output layer + soft-cap + cross-entropy equals the plain computation, value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microtransformer.models.chunked_loss import chunked_cross_entropy


def reference(h, w, t, vocab, cap, b=None):
    z = h @ w[:vocab].T + (0 if b is None else b[:vocab])
    if cap:
        z = cap * torch.tanh(z / cap)
    return F.cross_entropy(z, t, ignore_index=-100)


@pytest.mark.parametrize("cap", [0.0, 3.0])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_value_and_gradients_equal_the_plain_loss(cap, chunk) -> None:
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(64, 16, dtype=torch.float64, requires_grad=True)  # 50 real rows + 14 padding rows
    t = torch.randint(0, 50, (37,))
    t[[0, 5, 36]] = -100
    loss = chunked_cross_entropy(h, w, t, vocab_size=50, cap=cap, chunk=chunk)
    gh, gw = torch.autograd.grad(loss, (h, w))
    ref = reference(h, w, t, 50, cap)
    rh, rw = torch.autograd.grad(ref, (h, w))
    torch.testing.assert_close(loss.double(), ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gw, rw)
    assert torch.count_nonzero(gw[50:]) == 0  # padding rows are never scored


@pytest.mark.parametrize("cap", [0.0, 3.0])
def test_a_bias_is_added_to_the_logits_and_gets_its_gradient(cap) -> None:
    torch.manual_seed(2)
    h = torch.randn(21, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(40, 8, dtype=torch.float64, requires_grad=True)  # 30 real rows + padding
    b = torch.randn(40, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 30, (21,))
    t[3] = -100
    loss = chunked_cross_entropy(h, w, t, vocab_size=30, cap=cap, chunk=8, bias=b)
    ref = reference(h, w, t, 30, cap, b)
    torch.testing.assert_close(loss.double(), ref, atol=1e-6, rtol=1e-6)
    for a, r in zip(torch.autograd.grad(loss, (h, w, b)), torch.autograd.grad(ref, (h, w, b))):
        torch.testing.assert_close(a, r)
    gb = torch.autograd.grad(chunked_cross_entropy(h, w, t, vocab_size=30, cap=cap, bias=b), b)[0]
    assert torch.count_nonzero(gb[30:]) == 0  # padding ids are never scored
    assert torch.autograd.gradcheck(lambda c: chunked_cross_entropy(h.detach(), w.detach(), t, vocab_size=30, cap=cap, chunk=4,
                                                                     bias=c), (b,))


def test_gradcheck_and_bf16_autocast() -> None:
    torch.manual_seed(1)
    h = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, -100, 3, 5])
    assert torch.autograd.gradcheck(lambda a, b: chunked_cross_entropy(a, b, t, vocab_size=6, cap=2.0, chunk=2), (h, w))
    h32, w32 = h.float().detach().requires_grad_(), w.float().detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = chunked_cross_entropy(h32, w32, t, vocab_size=6, cap=2.0)
    loss.backward()
    assert loss.dtype == torch.float32 and h32.grad.dtype == torch.float32 and w32.grad.dtype == torch.float32
    assert float(loss.detach()) == pytest.approx(float(reference(h, w, t, 6, 2.0).detach()), rel=2e-2)


def test_upstream_gradient_scales_and_no_grad_gives_the_same_value() -> None:
    """The logits' gradient is computed in the forward, for an upstream gradient of one: backward must scale it
    (a loss weighted by 3, as gradient accumulation or a mixed objective does), and a forward without
    gradients (evaluation) must give the same value."""
    torch.manual_seed(2)
    h = torch.randn(9, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 11, (9,))
    gh, gw = torch.autograd.grad(3.0 * chunked_cross_entropy(h, w, t, vocab_size=11, cap=2.0, chunk=4), (h, w))
    rh, rw = torch.autograd.grad(3.0 * reference(h, w, t, 11, 2.0), (h, w))
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gw, rw)
    with torch.no_grad():
        value = chunked_cross_entropy(h, w, t, vocab_size=11, cap=2.0, chunk=4)
    assert not value.requires_grad
    torch.testing.assert_close(value, reference(h, w, t, 11, 2.0).detach())


def test_the_logit_gradient_buffer_is_reused_and_never_shared() -> None:
    from microtransformer.models import chunked_loss

    torch.manual_seed(0)
    h, w = torch.randn(12, 8, requires_grad=True), torch.randn(11, 8, requires_grad=True)
    t = torch.randint(0, 11, (12,))
    first = torch.autograd.grad(chunked_cross_entropy(h, w, t, vocab_size=11, chunk=5), (h, w))
    spare = chunked_loss._spare[0]  # given back by that backward
    again = torch.autograd.grad(chunked_cross_entropy(h, w, t, vocab_size=11, chunk=5), (h, w))
    assert len(chunked_loss._spare) == 1 and chunked_loss._spare[0] is spare  # the same buffer, taken and given back
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # two graphs alive at once: the second forward gets its own buffer, both gradients stay right
    h2 = torch.randn(12, 8, requires_grad=True)
    a = chunked_cross_entropy(h, w, t, vocab_size=11, chunk=5)
    b = chunked_cross_entropy(h2, w, t, vocab_size=11, chunk=5)
    gb = torch.autograd.grad(b, h2)[0]
    ga = torch.autograd.grad(a, h)[0]
    assert torch.allclose(ga, first[0])
    assert torch.allclose(gb, torch.autograd.grad(F.cross_entropy(h2 @ w.T, t), h2)[0], atol=1e-6)
    # a retained graph whose buffer a later forward wrote: autograd refuses the stale gradient
    c = chunked_cross_entropy(h, w, t, vocab_size=11, chunk=5)
    c.backward(retain_graph=True)
    chunked_cross_entropy(h2, w, t, vocab_size=11, chunk=5).backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.backward()
