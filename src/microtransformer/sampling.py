"""Text generation: greedy, temperature, top-k, top-p (nucleus), streaming.

Two loops produce the same tokens:

- the fast path runs the prompt once and then one token per step, reusing
  the model's cache (GPT: keys/values; LSTM: hidden state);
- the slow reference (``use_cache=False``) appends each token and reruns the
  whole (cropped) sequence, as the tutorials do. ``tests/test_sampling.py``
  checks the two agree token for token under greedy decoding.

Safety rails: ``top_k`` larger than the vocabulary is clamped (the classic
"selected index k out of range" crash cannot happen), padding ids of the
GPT's padded vocab are never candidates, and streamed text is decoded from
bytes with an incremental UTF-8 decoder, so a character split across two
tokens is held back until it is complete instead of printing U+FFFD.

Generation stops at EOS, and also at BOS: token shards put one BOS before
every document, so a model that emits BOS has finished its document.

>>> text = generate(model, tok, "ROMEO:", max_new_tokens=50, temperature=0.8, top_k=80)  # doctest: +SKIP
>>> for piece in stream(model, tok, "ROMEO:", max_new_tokens=50):  # doctest: +SKIP
...     print(piece, end="", flush=True)
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from microtransformer.errors import ConfigError


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; ``temperature == 0`` means greedy (argmax).

    ``top_k`` keeps the k most likely tokens (clamped to the vocab size);
    ``top_p`` keeps the smallest set whose probability mass reaches p.
    """

    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    use_cache: bool = True
    stop_at_eos: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top_k must be a positive integer (or omitted), got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` ``(B, V)``; returns ``(B,)`` int64."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature  # (B, V)
    if top_k is not None:
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


def _model_vocab(model: nn.Module) -> int:
    return int(model.config.vocab_size)  # type: ignore[union-attr]


@torch.no_grad()
def generate_ids(
    model: nn.Module,
    prompt_ids: Iterable[int],
    config: SamplingConfig | None = None,
    *,
    stop_ids: Iterable[int] = (),
    **kwargs: Any,
) -> Iterator[int]:
    """Yield new token ids one at a time (the prompt is not repeated).

    ``kwargs`` are :class:`SamplingConfig` fields, for convenience:
    ``generate_ids(model, [1, 2], max_new_tokens=5, temperature=0)``.
    A token in ``stop_ids`` ends generation and is not yielded.
    """
    if config is not None and kwargs:
        raise ConfigError("pass either a SamplingConfig or keyword settings, not both")
    config = config or SamplingConfig(**kwargs)
    ids = [int(i) for i in prompt_ids]
    if not ids:
        raise ConfigError("generation needs at least one prompt token; pass a prompt (or a tokenizer with BOS)")
    vocab = _model_vocab(model)
    if min(ids) < 0 or max(ids) >= vocab:
        raise ConfigError(f"prompt ids must be in [0, {vocab}); was the prompt encoded with another tokenizer?")
    stops = set(stop_ids) if config.stop_at_eos else set()
    p = next(model.parameters())
    device = p.device
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed)
    limit: int | None = model.context_limit  # type: ignore[assignment]
    was_training = model.training
    model.eval()
    try:
        cache = None
        if config.use_cache:
            cache = model.new_cache(1)  # type: ignore[operator]
            context = ids[-limit:] if limit else ids
            logits, _ = model(torch.tensor([context], device=device), cache=cache, last_only=True)
        for _ in range(config.max_new_tokens):
            if not config.use_cache:
                context = ids[-limit:] if limit else ids
                logits, _ = model(torch.tensor([context], device=device), last_only=True)  # (1, 1, V')
            nxt = int(
                sample_next_token(
                    logits[:, -1, :vocab],
                    temperature=config.temperature,
                    top_k=config.top_k,
                    top_p=config.top_p,
                    generator=generator,
                )[0]
            )
            if nxt in stops:
                return
            ids.append(nxt)
            yield nxt
            if config.use_cache:
                if limit is not None and cache.pos >= limit:  # type: ignore[union-attr]
                    # the window is full: re-run the last half of it and continue from there
                    cache.reset()  # type: ignore[union-attr]
                    logits, _ = model(torch.tensor([ids[-(limit // 2 or 1) :]], device=device), cache=cache, last_only=True)
                else:
                    logits, _ = model(torch.tensor([[nxt]], device=device), cache=cache, last_only=True)
    finally:
        if was_training:
            model.train()


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """BOS (when the tokenizer has one) + the prompt as ordinary text.

    BOS first because shards start every document with BOS: the model has
    learned what follows it. Special-token strings typed in the prompt are
    plain text (no injection).
    """
    ids = tokenizer.encode(prompt) if prompt else []
    if tokenizer.bos_id is not None:
        ids = [tokenizer.bos_id, *ids]
    elif not ids and tokenizer.eos_id is not None:
        ids = [tokenizer.eos_id]
    if not ids:
        raise ConfigError("the prompt is empty and the tokenizer has no BOS/EOS token to start from; pass --prompt")
    return ids


def stop_ids_for(tokenizer: Any) -> set[int]:
    return {i for i in (tokenizer.eos_id, tokenizer.bos_id) if i is not None}


def stream(
    model: nn.Module,
    tokenizer: Any,
    prompt: str = "",
    config: SamplingConfig | None = None,
    *,
    skip_special_tokens: bool = True,
    **kwargs: Any,
) -> Iterator[str]:
    """Yield text pieces as tokens are generated; never a U+FFFD for a split character.

    Bytes are fed to an incremental UTF-8 decoder, which holds back an
    incomplete multi-byte sequence until the next token completes it. Only
    truly invalid bytes (a model can emit them) become U+FFFD.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    ids = encode_prompt(tokenizer, prompt)
    for token in generate_ids(model, ids, config, stop_ids=stop_ids_for(tokenizer), **kwargs):
        piece = decoder.decode(tokenizer.decode_bytes([token], skip_special_tokens=skip_special_tokens))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def generate(
    model: nn.Module,
    tokenizer: Any,
    prompt: str = "",
    config: SamplingConfig | None = None,
    *,
    skip_special_tokens: bool = True,
    **kwargs: Any,
) -> str:
    """The generated continuation of ``prompt`` as one string (the prompt itself not included)."""
    return "".join(stream(model, tokenizer, prompt, config, skip_special_tokens=skip_special_tokens, **kwargs))
