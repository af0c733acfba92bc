"""LSTMLanguageModel: shapes, state cache == full forward, overfitting."""

from __future__ import annotations

import pytest
import torch

from microtransformer.errors import ConfigError
from microtransformer.models import LSTMConfig, LSTMLanguageModel, build_model



def test_config_validation():
    with pytest.raises(ConfigError):
        LSTMConfig(vocab_size=10, n_hidden=0)
    with pytest.raises(ConfigError, match="unknown"):
        LSTMConfig.from_dict({"vocab_size": 10, "hidden": 3})


def test_state_cache_matches_full_forward():
    torch.manual_seed(0)
    model = build_model("lstm", LSTMConfig(vocab_size=40, n_embd=16, n_hidden=24, n_layer=2)).eval()
    x = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        full, _ = model(x)
        cache = model.new_cache(2)
        a, _ = model(x[:, :5], cache=cache)
        b, _ = model(x[:, 5:], cache=cache)
        last, _ = model(x, last_only=True)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    torch.testing.assert_close(last, full[:, -1:])
    assert model.context_limit is None


def test_tiny_lstm_overfits_a_small_text():
    """Same memorisation task and threshold as the GPT test (loss < 0.1 nats)."""
    torch.manual_seed(0)
    data = torch.randint(0, 30, (1, 65))
    x, y = data[:, :-1], data[:, 1:]
    model = LSTMLanguageModel(LSTMConfig(vocab_size=30, n_embd=32, n_hidden=64))
    opt = torch.optim.AdamW(model.optimizer_groups(0.0), lr=1e-2)
    for _ in range(200):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
