"""Text generation: greedy, temperature, top-k, top-p (nucleus), streaming.

Text in, text out, over the models' own batched generation loop
(:meth:`model.generate <microtransformer.models.generation.GenerationMixin.generate>`):

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
>>> texts = generate(model, tok, ["ROMEO:", "JULIET:"], max_new_tokens=50)  # one batch  # doctest: +SKIP
>>> for piece in stream(model, tok, "ROMEO:", max_new_tokens=50):  # doctest: +SKIP
...     print(piece, end="", flush=True)
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from microtransformer.errors import ConfigError
from microtransformer.models.generation import generate_stream, sample_next_token

__all__ = [
    "SamplingConfig", "encode_prompt", "generate", "generate_ids", "sample_next_token", "stop_ids_for", "stream",
]


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
    config = _config(config, kwargs)
    stops = set(stop_ids) if config.stop_at_eos else set()
    for step in generate_stream(
        model,
        [int(i) for i in prompt_ids],
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        eos_token_id=sorted(stops),
        generator=_generator(model, config.seed),
        use_cache=config.use_cache,
    ):
        token = int(step[0])
        if token in stops:
            return
        yield token


def _config(config: SamplingConfig | None, kwargs: dict[str, Any]) -> SamplingConfig:
    if config is not None and kwargs:
        raise ConfigError("pass either a SamplingConfig or keyword settings, not both")
    return config or SamplingConfig(**kwargs)


def _generator(model: nn.Module, seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    generator = torch.Generator(device=next(model.parameters()).device)
    generator.manual_seed(seed)
    return generator


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
    tokens = generate_ids(model, ids, config, stop_ids=stop_ids_for(tokenizer), **kwargs)
    if hasattr(tokenizer, "decode_stream"):  # ours: knows what the last token leaves for the next (line breaks)
        chunks = tokenizer.decode_stream(tokens, skip_special_tokens=skip_special_tokens)
    else:
        chunks = (tokenizer.decode_bytes([t], skip_special_tokens=skip_special_tokens) for t in tokens)
    for chunk in chunks:
        piece = decoder.decode(chunk)
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def generate(
    model: nn.Module,
    tokenizer: Any,
    prompt: str | Sequence[str] = "",
    config: SamplingConfig | None = None,
    *,
    skip_special_tokens: bool = True,
    **kwargs: Any,
) -> Any:
    """The generated continuation of ``prompt`` (not included) as one string.

    A list of prompts is generated as one left-padded batch and gives a list
    of strings; each row stops at its own EOS/BOS.
    """
    if isinstance(prompt, str):
        return "".join(stream(model, tokenizer, prompt, config, skip_special_tokens=skip_special_tokens, **kwargs))
    config = _config(config, kwargs)
    rows = [encode_prompt(tokenizer, p) for p in prompt]
    if not rows:
        return []
    stops = sorted(stop_ids_for(tokenizer)) if config.stop_at_eos else []
    new = [
        step.tolist()
        for step in generate_stream(
            model,
            rows,  # ragged: left-padded inside
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            eos_token_id=stops,
            generator=_generator(model, config.seed),
            use_cache=config.use_cache,
        )
    ]
    texts = []
    for b in range(len(rows)):
        ids = []
        for step in new:
            if step[b] in stops:
                break
            ids.append(step[b])
        texts.append(tokenizer.decode(ids, skip_special_tokens=skip_special_tokens))
    return texts
