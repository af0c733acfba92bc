"""The output layer's logit bias (``head_bias``): started from the training counts, the model is the unigram model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig
from microtransformer.training.trainer import TrainConfig, Trainer


def small(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=16, block_size=16, head_bias=True, **kw))


@pytest.mark.parametrize("split", [0, 8])
def test_with_a_zero_output_layer_the_model_predicts_the_add_one_unigram(split: int) -> None:
    m = small(head_split=split, tie_embeddings=False)
    counts = np.random.default_rng(0).integers(0, 500, 64)
    m.set_token_counts(counts)
    with torch.no_grad():
        m.lm_head.weight.zero_()
        if split:
            m.head_class.normal_()  # ignored: zero below
            m.head_class.zero_()
    x = torch.randint(0, 64, (2, 16))
    lp = m.eval()(x).logits.float().log_softmax(-1)
    unigram = torch.as_tensor((counts + 1) / (counts + 1).sum(), dtype=torch.float32).log()
    torch.testing.assert_close(lp, unigram.expand_as(lp), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("split", [0, 8])
def test_the_loss_equals_the_log_probs_and_trains_the_bias(split: int) -> None:
    m = small(head_split=split)
    m.set_token_counts(np.arange(64))
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    y[0, :3] = -100
    loss = m.train()(x, targets=y).loss
    lp = m(x).logits.float().log_softmax(-1)
    keep = y != -100
    torch.testing.assert_close(loss, -lp[keep].gather(1, y[keep][:, None]).mean(), atol=1e-5, rtol=1e-5)
    loss.backward()
    assert m.head_bias.grad is not None and m.head_bias.grad.abs().sum() > 0
    assert any(p is m.head_bias for p in m.param_roles()["head"])  # the output layer's optimizer group


def test_the_trainer_starts_the_bias_from_the_training_ids_and_a_resumed_run_keeps_it(tmp_path) -> None:
    ids = np.tile(np.r_[np.full(30, 40), np.arange(64)], 40).astype(np.int32)  # id 40: 31 of every 94
    data = TokenArrayDataset({"train": ids, "val": ids[:500]}, 16, vocab_size=64)
    m = small()
    config = TrainConfig(max_steps=1, batch_size=2, eval_interval=10**9, eval_iters=1, device="cpu", precision="fp32")
    trainer = Trainer(m, data, config, tmp_path / "run", show_progress=False)
    counts = np.bincount(ids, minlength=64)
    torch.testing.assert_close(m.head_bias.detach(), torch.as_tensor(np.log(counts + 1.0), dtype=torch.float32))
    trainer.fit()
    other = TokenArrayDataset({"train": np.full(2000, 7, dtype=np.int32), "val": ids[:500]}, 16, vocab_size=64)
    resumed = Trainer.resume(tmp_path / "run", other, overrides={"max_steps": 2}, show_progress=False).raw_model
    torch.testing.assert_close(resumed.head_bias, m.head_bias)  # from the checkpoint, not the new split's counts


def test_head_bias_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="head_bias must be true or false"):
        GPTConfig(vocab_size=8, head_bias=1)


def test_under_bf16_autocast_the_bias_is_added_in_fp32_on_both_paths() -> None:
    m = small()
    m.set_token_counts(np.random.default_rng(1).integers(0, 50_000, 64))  # log counts near 10: coarse in bf16
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m.eval()(x).logits
        loss = m.train()(x, targets=y).loss
    assert logits.dtype == torch.float32
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), y.reshape(-1))
    torch.testing.assert_close(loss.detach(), ref.detach(), atol=1e-5, rtol=1e-5)
