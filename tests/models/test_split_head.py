"""The two-level output layer (``head_split``): an exact distribution, its loss, its order and its cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.models import GPT, GPTConfig
from microtransformer.models.split_head import frequency_order, split_cross_entropy, split_log_probs
from microtransformer.training.trainer import TrainConfig, Trainer


def brute_force(h: torch.Tensor, W: torch.Tensor, c: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """The definition, token by token: p(w) = P(level one)[w], or P(level one)[class] * P(rest)[w]."""
    first = torch.softmax(torch.cat([h @ W[order[:k]].T, h @ c.T], -1), -1)
    rest = torch.softmax(h @ W[order[k:]].T, -1)
    p = torch.empty(h.size(0), len(order))
    for place, w in enumerate(order.tolist()):
        p[:, w] = first[:, place] if place < k else first[:, k] * rest[:, place - k]
    return p.log()


@settings(max_examples=25, deadline=None)
@given(vocab=st.integers(2, 40), k_share=st.floats(0.01, 0.99), seed=st.integers(0, 2**16))
def test_log_probs_are_the_definition_and_sum_to_one(vocab: int, k_share: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k = min(vocab - 1, max(1, int(k_share * vocab)))
    h, W, c = torch.randn(6, 8, generator=g), torch.randn(vocab + 3, 8, generator=g), torch.randn(1, 8, generator=g)
    order = torch.randperm(vocab, generator=g)
    lp = split_log_probs(h, W, c, order, k=k)  # padding rows past vocab are not read
    assert lp.shape == (6, vocab)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(6))
    torch.testing.assert_close(lp, brute_force(h, W[:vocab], c, order, k), atol=1e-5, rtol=1e-5)


def test_the_loss_and_its_gradients_equal_the_full_log_probs_and_skip_ignored_targets() -> None:
    torch.manual_seed(0)
    V, k = 50, 12
    h = torch.randn(40, 16, requires_grad=True)
    W, c = torch.randn(V, 16, requires_grad=True), torch.randn(1, 16, requires_grad=True)
    order = torch.randperm(V)
    y = torch.randint(0, V, (40,))
    y[::7] = -100
    assert (y >= 0).sum() > 0 and any(order.tolist().index(t) >= k for t in y[y >= 0].tolist())  # rare targets too
    loss = split_cross_entropy(h, W, c, order, y, k=k)
    grads = torch.autograd.grad(loss, (h, W, c))
    keep = y != -100
    ref = -split_log_probs(h, W, c, order, k=k)[keep].gather(1, y[keep, None]).mean()
    ref_grads = torch.autograd.grad(ref, (h, W, c))
    torch.testing.assert_close(loss, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_frequency_order_and_the_rare_share() -> None:
    order, rare = frequency_order([3, 0, 7, 3], 6, k=2)
    assert order.tolist() == [2, 0, 3, 1, 4, 5]  # ties by id; ids past the counts count 0
    assert rare == pytest.approx(3 / 13)


def small(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=16, block_size=16, head_split=8, **kw))


def test_the_output_layer_costs_the_first_level_and_the_rest_at_its_share() -> None:
    plain = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=16, block_size=16))
    m = small()
    m.set_head_order(np.r_[np.full(8, 100), np.full(56, 1)])  # the rest: 56 of 856 counts
    rows = 8 + 1 + 56 * 56 / 856  # the first level and the class row at every position, the rest at its share
    assert m.flops_per_token() == pytest.approx(plain.flops_per_token() - 6 * 16 * (64 - rows), abs=6)
    assert m.head_class in m.param_roles()["head"]


def test_the_trainer_orders_the_layer_by_the_training_ids_and_a_resumed_run_keeps_it(tmp_path) -> None:
    ids = np.tile(np.r_[np.full(30, 40), np.arange(64)], 40).astype(np.int32)  # id 40 the most frequent by far
    data = TokenArrayDataset({"train": ids, "val": ids[:500]}, 16, vocab_size=64)
    m = small()
    config = TrainConfig(max_steps=2, batch_size=2, eval_interval=10**9, eval_iters=1, device="cpu", precision="fp32")
    Trainer(m, data, config, tmp_path / "run", show_progress=False).fit()
    assert m.head_order[0].item() == 40 and sorted(m.head_order.tolist()) == list(range(64))
    other = TokenArrayDataset({"train": np.full(2000, 7, dtype=np.int32), "val": ids[:500]}, 16, vocab_size=64)
    resumed = Trainer.resume(tmp_path / "run", other, overrides={"max_steps": 3}, show_progress=False)
    again = resumed.raw_model  # the order and its share come from the checkpoint, not from the new split's counts
    assert torch.equal(again.head_order, m.head_order) and float(again.head_rare_share) == float(m.head_rare_share)
    x = torch.from_numpy(ids[:16].astype(np.int64))[None]
    torch.testing.assert_close(again.eval()(x).logits, m.eval()(x).logits)


def test_set_head_order_needs_the_option() -> None:
    from microtransformer.errors import ConfigError

    with pytest.raises(ConfigError, match="head_split > 0"):
        GPT(GPTConfig(vocab_size=8, n_layer=1, n_head=1, n_embd=8, block_size=4)).set_head_order([1] * 8)
