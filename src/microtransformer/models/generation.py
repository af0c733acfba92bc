"""Batched generation for every model: ``model.generate(input_ids, max_new_tokens=...)``.

One loop serves the GPT (KV cache) and the LSTM (hidden state), any batch
size, and both the fast path and the slow reference:

- the fast path runs the prompts once, then one token per step, reusing the
  model's cache; when a GPT's context window is full it re-runs the last half
  of the window and continues (a sliding window);
- the reference (``use_cache=False``) re-runs every row's whole (cropped)
  context at every step, as the tutorials do. The tests check that both give
  the same tokens under greedy decoding, and that a batch gives each row what
  that row gives alone.

Prompts of different lengths are left-padded inside (whatever padding the
caller used: only ``attention_mask`` says which ids are real) so every row's
next token sits in the last column. A row stops at its first
``eos_token_id``; after that it is filled with ``pad_token_id`` (or the eos
id) while the other rows go on, and the loop ends when every row has
stopped.

>>> out = model.generate(enc["input_ids"], attention_mask=enc["attention_mask"],
...                      max_new_tokens=50, temperature=0.8, top_k=80)  # doctest: +SKIP
>>> out.shape  # (B, T + new tokens)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn

from microtransformer.errors import ConfigError

TokenIds = torch.Tensor | Sequence[int] | Sequence[Sequence[int]]


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` ``(B, V)``; returns ``(B,)`` int64.

    ``temperature == 0`` is greedy; ``top_k`` (clamped to ``V``; 0 or None:
    off) keeps the k most likely tokens; ``top_p`` keeps the smallest set
    whose probability reaches p (the top token always stays).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature  # (B, V)
    if top_k:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass *before* it already reaches top_p (the top token always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def check_sampling_settings(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    """Typed errors for settings that cannot work (shared by every generation entry point)."""
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise ConfigError(f"top_k must be an integer >= 0 (0 or None: no top-k), got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")


def _rows(input_ids: TokenIds, attention_mask: TokenIds | None) -> list[list[int]]:
    """The real token ids of every prompt row (padding dropped), as Python lists."""
    ids = input_ids.tolist() if isinstance(input_ids, torch.Tensor) else list(input_ids)
    if ids and not isinstance(ids[0], (list, tuple)):
        ids = [ids]  # one prompt
    ids = [[int(i) for i in row] for row in ids]
    if attention_mask is None:
        return ids
    mask = attention_mask.tolist() if isinstance(attention_mask, torch.Tensor) else list(attention_mask)
    if mask and not isinstance(mask[0], (list, tuple)):
        mask = [mask]
    if [len(r) for r in mask] != [len(r) for r in ids]:
        raise ConfigError("attention_mask must have the shape of input_ids")
    return [[i for i, m in zip(row, mrow) if m] for row, mrow in zip(ids, mask)]


def _left_padded(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, T)`` ids left-padded with 0 and their mask (None when no row is padded)."""
    T = max(len(r) for r in rows)
    if all(len(r) == T for r in rows):
        return torch.tensor(rows, dtype=torch.long, device=device), None
    ids = torch.tensor([[0] * (T - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def _forward_last(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None, cache: Any) -> torch.Tensor:
    """Last-position logits ``(B, 1, V)``; ``attention_mask`` passed only when something is padded."""
    kwargs: dict[str, Any] = {"cache": cache, "last_only": True}
    if mask is not None:
        kwargs["attention_mask"] = mask
    return model(ids, **kwargs)[0]


@torch.no_grad()
def generate_stream(
    model: nn.Module,
    input_ids: TokenIds,
    *,
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    do_sample: bool = True,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    attention_mask: TokenIds | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, ``(B,)`` int64, one step at a time.

    ``input_ids``: ``(B, T)`` with ``attention_mask`` marking real tokens
    (either padding side), one prompt ``(T,)``, or a list of id lists of any
    lengths. ``temperature=0`` or ``do_sample=False`` is greedy; ``top_k``
    (0/None: off) and ``top_p`` restrict sampling; ``generator`` makes it
    repeatable. A row that emits one of ``eos_token_id`` (an id or a list)
    is done: from the next step on it yields ``pad_token_id`` (default: the
    eos id); the stream ends once every row is done or after
    ``max_new_tokens`` steps. ``use_cache=False`` is the full-recompute
    reference.

    Works for any module with the models' interface:
    ``forward(ids, cache=, last_only=, attention_mask=)``,
    ``new_cache(batch_size)``, ``context_limit`` and ``config.vocab_size``.
    """
    check_sampling_settings(max_new_tokens, temperature, top_k, top_p)
    rows = _rows(input_ids, attention_mask)
    vocab = int(model.config.vocab_size)  # type: ignore[union-attr]
    if not rows or any(not r for r in rows):
        raise ConfigError("generation needs at least one prompt token per row; pass a prompt (or start from BOS)")
    if min(min(r) for r in rows) < 0 or max(max(r) for r in rows) >= vocab:
        raise ConfigError(f"prompt ids must be in [0, {vocab}); was the prompt encoded with another tokenizer?")
    if eos_token_id is None:
        stops: list[int] = []
    elif isinstance(eos_token_id, int):
        stops = [eos_token_id]
    else:
        stops = [int(i) for i in eos_token_id]
    fill = pad_token_id if pad_token_id is not None else (stops[0] if stops else None)
    if fill is not None and not 0 <= fill < vocab:
        raise ConfigError(f"pad_token_id {fill} is outside the vocabulary [0, {vocab}): finished rows are fed to the model")
    greedy = temperature == 0 or not do_sample
    device = next(model.parameters()).device
    limit: int | None = model.context_limit  # type: ignore[assignment]
    B = len(rows)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(stops, dtype=torch.long, device=device)

    def crop(keep: int | None) -> list[list[int]]:
        return [r[-keep:] for r in rows] if keep else rows

    was_training = model.training
    model.eval()
    try:
        cache: Any = None
        mask: torch.Tensor | None = None
        logits: torch.Tensor | None = None
        if use_cache and max_new_tokens > 0:
            cache = model.new_cache(B)  # type: ignore[operator]
            ids, mask = _left_padded(crop(limit), device)
            logits = _forward_last(model, ids, mask, cache)
        for _ in range(max_new_tokens):
            if not use_cache:
                ids, mask = _left_padded(crop(limit), device)
                logits = _forward_last(model, ids, mask, None)  # (B, 1, V)
            assert logits is not None
            nxt = sample_next_token(
                logits[:, -1, :vocab],
                temperature=0 if greedy else temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
            )  # (B,)
            if fill is not None:
                nxt = torch.where(done, torch.full_like(nxt, fill), nxt)
            yield nxt
            for r, token in zip(rows, nxt.tolist()):
                r.append(token)
            if stops:
                done |= torch.isin(nxt, stop_ids)
                if bool(done.all()):
                    return
            if use_cache:
                if limit is not None and cache.pos >= limit:
                    # the window is full: re-run the last half of it and continue from there
                    cache = model.new_cache(B)  # type: ignore[operator]
                    ids, mask = _left_padded(crop(limit // 2 or 1), device)
                    logits = _forward_last(model, ids, mask, cache)
                else:
                    if mask is not None:
                        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)  # (B, T+1)
                    logits = _forward_last(model, nxt[:, None], mask, cache)
    finally:
        if was_training:
            model.train()


class GenerationMixin:
    """``generate`` for :class:`~microtransformer.models.GPT` and :class:`~microtransformer.models.LSTMLanguageModel`."""

    def generate(self, input_ids: TokenIds, max_new_tokens: int = 20, **settings: Any) -> torch.Tensor:
        """The prompts followed by up to ``max_new_tokens`` new tokens: ``(B, T + n)`` int64.

        ``input_ids`` ``(B, T)`` (or one prompt as ``(T,)`` / a list of ids),
        padded on either side when ``attention_mask`` says where the padding
        is; the returned tensor starts with ``input_ids`` exactly as given.
        ``settings`` are the keywords of :func:`generate_stream`:
        ``temperature`` (0: greedy), ``do_sample`` (False: greedy), ``top_k``,
        ``top_p``, ``eos_token_id`` (an id or a list; a row stops there and
        keeps the eos), ``pad_token_id`` (fills stopped rows; default: the
        eos id), ``attention_mask``, ``generator`` (repeatable sampling),
        ``use_cache``. ``n`` is the number of steps until every row stopped,
        at most ``max_new_tokens``.

        >>> model.generate(torch.tensor([[bos]]), max_new_tokens=5, do_sample=False).shape  # doctest: +SKIP
        torch.Size([1, 6])
        """
        steps = list(generate_stream(self, input_ids, max_new_tokens=max_new_tokens, **settings))  # type: ignore[arg-type]
        device = next(self.parameters()).device  # type: ignore[attr-defined]
        try:
            prompt = torch.as_tensor(input_ids, dtype=torch.long, device=device)
        except ValueError as exc:
            raise ConfigError(
                "prompts of different lengths: pad them (tok(texts, padding=True, return_tensors='pt')) "
                "and pass attention_mask"
            ) from exc
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0)  # (1, T)
        if not steps:
            return prompt
        return torch.cat([prompt, torch.stack(steps, dim=1)], dim=1)  # (B, T + n)
