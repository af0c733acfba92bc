"""The window cache: its mixture against a loop reference, the GPT's calls with it, calibration and training."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig
from microtransformer.models.window_cache import cache_log_probs, calibrate
from microtransformer.training import checkpoint as ckpt
from microtransformer.training.trainer import TrainConfig, Trainer

V = 40


def _reference(logits, hidden, ids, theta, lam):
    """The mixture of Grave et al. (2017) written position by position."""
    B, T, _ = logits.shape
    out = torch.empty(B, T, V, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            p = torch.softmax(logits[b, t].double(), -1)
            if t > 0:
                h = torch.nn.functional.normalize(hidden[b].double(), dim=-1)
                w = torch.softmax(theta * (h[:t] @ h[t]), -1)
                copy = torch.zeros(V, dtype=torch.float64)
                for j in range(t):
                    copy[ids[b, j + 1]] += w[j]
                p = (1 - lam) * p + lam * copy
            out[b, t] = p.log()
    return out


def test_the_mixture_is_grave_et_al_and_sums_to_one():
    g = torch.Generator().manual_seed(0)
    logits, hidden = torch.randn(2, 9, V, generator=g), torch.randn(2, 9, 6, generator=g)
    ids = torch.randint(0, V, (2, 9), generator=g)
    got = cache_log_probs(logits, hidden, ids, theta=7.0, lam=0.3)
    assert torch.allclose(got.double(), _reference(logits, hidden, ids, 7.0, 0.3), atol=1e-5)
    assert torch.allclose(got.exp().sum(-1), torch.ones(2, 9), atol=1e-5)
    alone = cache_log_probs(logits, hidden, ids, theta=7.0, lam=0.0)
    assert torch.allclose(alone, torch.log_softmax(logits, -1), atol=1e-6)


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=V, n_layer=2, n_head=2, n_embd=32, block_size=24, position="rotary", norm="rmsnorm",
                    value_embeds=True, **kw)
    return GPT(cfg).eval()


def test_the_gpt_mixes_it_in_eval_mode_only_and_every_call_agrees():
    model = _model(cache_theta=10.0, cache_lambda=0.3)
    x = torch.randint(0, V, (3, 20), generator=torch.Generator().manual_seed(1))
    full = model(x).logits
    alone = model(x, window_cache=False).logits
    assert not torch.allclose(full, alone, atol=1e-3) and torch.allclose(full.exp().sum(-1), torch.ones(3, 20), atol=1e-5)
    assert torch.equal(model.train()(x).logits, alone)  # the training loss is the model's own
    model.eval()
    cache = model.new_cache(3)  # a prompt, then a token at a time: the cache reads earlier positions from the KV cache
    steps = [model(x[:, :7], cache=cache).logits] + [model(x[:, t : t + 1], cache=cache).logits for t in range(7, 20)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    row = x[:1, 5:]  # left padding copies from no padded position
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), row], 1)
    mask = torch.cat([torch.zeros(1, 5), torch.ones(1, 15)], 1)
    assert torch.allclose(model(padded, attention_mask=mask).logits[:, 5:], model(row).logits, atol=1e-5)
    prompt = x[:, :5]  # past the 24-position window, where generation re-runs half of it
    cached = model.generate(prompt, max_new_tokens=30, do_sample=False)
    assert torch.equal(cached, model.generate(prompt, max_new_tokens=30, do_sample=False, use_cache=False))


def test_config_bounds_and_old_configs():
    with pytest.raises(ConfigError, match="cache_lambda"):
        GPTConfig(vocab_size=V, cache_lambda=1.0)
    with pytest.raises(ConfigError, match="cache_theta"):
        GPTConfig(vocab_size=V, cache_theta=-1.0)
    old = {k: v for k, v in GPTConfig(vocab_size=V).to_dict().items() if not k.startswith("cache_")}
    assert GPTConfig.from_dict(old).cache_lambda == 0.0  # configs saved before the cache load with it off


def test_calibration_turns_it_on_where_windows_repeat_and_off_where_they_do_not():
    model = _model()
    rng = np.random.default_rng(0)
    phrase = lambda: rng.permutation(V)[:6]  # noqa: E731
    repeats = np.concatenate([np.tile(phrase(), 4) for _ in range(30)])  # each 24-token window: one phrase 4 times
    on = calibrate(model, repeats, block_size=24)
    assert on.lam > 0 and on.nats < on.base_nats - 0.1
    fresh = np.concatenate([rng.permutation(V)[:25] for _ in range(30)])  # no token twice within a window
    off = calibrate(model, fresh, block_size=24)
    assert off.lam == 0.0 and math.isclose(off.nats, off.base_nats)
    assert model.config.cache_lambda == 0.0  # calibrate only measures


def _trainer(run_dir, val, **kw):
    rng = np.random.default_rng(0)
    train = np.concatenate([np.tile(rng.permutation(V)[:6], 4) for _ in range(200)])
    data = TokenArrayDataset({"train": train, "val": val}, 16, vocab_size=V)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, n_layer=1, n_head=2, n_embd=32, block_size=16))
    cfg = TrainConfig(max_steps=4, batch_size=4, eval_interval=2, eval_iters=1, device="cpu", precision="fp32",
                      window_cache=True, **kw)
    return Trainer(model, data, cfg, run_dir, show_progress=False), model


def test_the_trainer_sets_it_after_the_last_step_and_the_checkpoint_keeps_it(tmp_path):
    rng = np.random.default_rng(1)
    val = np.concatenate([np.tile(rng.permutation(V)[:4], 5) for _ in range(20)])
    trainer, model = _trainer(tmp_path / "run", val)
    trainer.fit(stop_at_step=2)
    assert model.config.cache_lambda == 0.0  # not before the last step
    trainer.fit()
    assert model.config.cache_lambda > 0 and model.config.cache_theta > 0
    loaded, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(tmp_path / "run", "last"))
    assert dataclasses.asdict(loaded.config) == dataclasses.asdict(model.config)
