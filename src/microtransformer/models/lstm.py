"""The classic recurrent language model: embedding -> LSTM -> linear.

Why keep it next to the GPT: it is the baseline every tutorial starts from
("SimpleLM"), and comparing it with a transformer of the same parameter count
on the same tokenizer is one of the cheapest experiments there is. It has the
same interface as :class:`~microtransformer.models.gpt.GPT` (``forward(idx,
targets, cache=..., last_only=...)``, ``new_cache``, ``optimizer_groups``) so
the trainer and the sampler do not care which one they drive.

The generation cache of an LSTM is just its hidden state ``(h, c)``; unlike
the GPT there is no context limit, ``block_size`` only sets the length of
training windows.

>>> model = LSTMLanguageModel(LSTMConfig(vocab_size=50, n_embd=16, n_hidden=32))
>>> logits, _ = model(torch.zeros(2, 5, dtype=torch.long))
>>> tuple(logits.shape)  # (B, T, vocab_size)
(2, 5, 50)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from microtransformer.config import JSONConfig
from microtransformer.errors import ConfigError
from microtransformer.models.gpt import _check_positive_int, _decay_groups


@dataclass(frozen=True)
class LSTMConfig(JSONConfig):
    """Hyper-parameters of :class:`LSTMLanguageModel` (JSON in checkpoints)."""

    vocab_size: int
    n_embd: int = 128
    n_hidden: int = 256
    n_layer: int = 1
    block_size: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_embd", "n_hidden", "n_layer", "block_size"):
            _check_positive_int(name, getattr(self, name))
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")


class LSTMState:
    """Mutable generation cache: the LSTM's ``(h, c)``, each ``(n_layer, B, n_hidden)``."""

    def __init__(self) -> None:
        self.hc: tuple[torch.Tensor, torch.Tensor] | None = None
        self.pos = 0

    def reset(self) -> None:
        self.hc = None
        self.pos = 0


class LSTMLanguageModel(nn.Module):
    """Embedding -> (multi-layer) LSTM -> linear head over the vocabulary."""

    kind = "lstm"

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.n_embd,
            config.n_hidden,
            num_layers=config.n_layer,
            batch_first=True,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
        )
        self.head = nn.Linear(config.n_hidden, config.vocab_size)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def context_limit(self) -> int | None:
        return None  # the recurrent state carries any length of context

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embedding.weight.numel()
        return n

    def new_cache(self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> LSTMState:
        return LSTMState()

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: LSTMState | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, T, vocab_size)`` and the mean cross-entropy if ``targets`` is given."""
        x = self.drop(self.embedding(idx))  # (B, T, E)
        hc = cache.hc if cache is not None else None
        out, new_hc = self.lstm(x, hc)  # (B, T, H)
        if cache is not None:
            cache.hc = new_hc
            cache.pos += idx.size(1)
        out = self.drop(out)
        if last_only and targets is None:
            out = out[:, -1:, :]  # (B, 1, H)
        logits = self.head(out)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay weight matrices only, never biases (see ``GPT.optimizer_groups``)."""
        return _decay_groups(self, weight_decay)
