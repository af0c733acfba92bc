"""The classic recurrent language model: embedding -> LSTM -> linear.

Why keep it next to the GPT: it is the baseline every tutorial starts from
("SimpleLM"), and comparing it with a transformer of the same parameter count
on the same tokenizer is one of the cheapest experiments there is. It has the
same interface as :class:`~microtransformer.models.gpt.GPT` (``forward(input_ids,
targets, attention_mask=..., labels=..., cache=..., last_only=...)``,
``generate``, ``new_cache``, ``optimizer_groups``) so the trainer and the
sampler do not care which one they drive.

With an ``attention_mask``, padding never enters the recurrent state: each
row is shifted so its tokens start at column 0, run as a packed sequence,
and shifted back, so a left- or right-padded row gives the logits it gives
alone.

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

from microtransformer.config import JSONConfig
from microtransformer.errors import ConfigError
from microtransformer.models.generation import GenerationMixin
from microtransformer.models.gpt import _check_positive_int, _decay_groups
from microtransformer.models.outputs import CausalLMOutput, causal_lm_loss, key_padding_mask


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


class LSTMLanguageModel(GenerationMixin, nn.Module):
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
    def block_size(self) -> int:
        """Length of training windows (the state itself carries any length of context)."""
        return self.config.block_size

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
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: LSTMState | None = None,
        last_only: bool = False,
        loss_only: bool = False,
    ) -> CausalLMOutput:
        """Logits ``(B, T, vocab_size)`` and the loss; arguments as in :meth:`GPT.forward`.

        ``targets`` are already shifted, ``labels`` are shifted here, ``-100``
        is ignored. ``attention_mask`` (with a cache: covering the cached
        positions too; only the new ones matter, the past is in the state)
        must hold each row's tokens in one run (left or right padding).
        """
        B, T = input_ids.shape  # (B, T)
        start = cache.pos if cache is not None else 0
        mask = key_padding_mask(attention_mask, B, start + T)
        if mask is not None:  # only the new positions matter: the past is in the state
            mask = key_padding_mask(mask[:, start:], B, T)
        x = self.drop(self.embedding(input_ids))  # (B, T, E)
        hc = cache.hc if cache is not None else None
        if mask is None:
            out, new_hc = self.lstm(x, hc)  # (B, T, H)
        else:
            out, new_hc = self._run_padded(x, hc, mask)  # (B, T, H)
        if cache is not None:
            cache.hc = new_hc
            cache.pos += T
        out = self.drop(out)
        if last_only and targets is None and labels is None:
            out = out[:, -1:, :]  # (B, 1, H)
        logits = self.head(out)  # (B, T, V)
        loss = causal_lm_loss(logits, targets=targets, labels=labels)
        if loss_only and loss is not None:
            return CausalLMOutput(None, loss)  # the same contract as GPT's
        return CausalLMOutput(logits, loss)

    def _run_padded(
        self, x: torch.Tensor, hc: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The LSTM over the real tokens of each row only (``mask`` ``(B, T)`` bool, one run of ones per row)."""
        B, T, E = x.shape
        t = torch.arange(T, device=x.device)
        lengths = mask.sum(1)  # (B,)
        first = torch.where(lengths > 0, mask.long().argmax(1), 0)  # (B,)
        expected = (t >= first[:, None]) & (t < (first + lengths)[:, None])  # (B, T)
        if not torch.equal(expected, mask):
            raise ConfigError(
                "the LSTM needs each row's tokens in one run (left or right padding); this attention_mask has gaps"
            )
        src = (first[:, None] + t).clamp(max=T - 1)  # (B, T): left-aligned column -> source column
        aligned = x.gather(1, src[..., None].expand(B, T, E))  # (B, T, E), real tokens first
        packed = nn.utils.rnn.pack_padded_sequence(
            aligned, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, (h, c) = self.lstm(packed, hc)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, H)
        back = (t - first[:, None]).clamp(min=0)  # (B, T): source column -> left-aligned column
        out = out.gather(1, back[..., None].expand(B, T, out.size(-1)))  # (B, T, H)
        if hc is not None and bool((lengths == 0).any()):
            # a row with no new token keeps its state (packing needs length >= 1)
            keep = (lengths == 0)[None, :, None]  # (1, B, 1)
            h, c = torch.where(keep, hc[0], h), torch.where(keep, hc[1], c)
        return out, (h, c)

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay weight matrices only, never biases (see ``GPT.optimizer_groups``)."""
        return _decay_groups(self, weight_decay)
