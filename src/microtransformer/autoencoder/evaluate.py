"""Reconstruction tests for the chunk auto-encoder and its tokenizer.

Two questions, kept apart on purpose:

* **network alone**: does ``decoder(encoder(chunk))`` give the chunk back?
  On standard sentences and on the validation split, before any fallback:
  char (byte) accuracy, exact-chunk rate, perfect sentences, Levenshtein
  distance. This is what training improves.
* **after fallback**: an exported tokenizer is lossless by construction
  (chunks outside its vocabulary fall back to shorter strings or bytes), so
  what varies is the cost: bytes per token and the fallback rate.

``char_accuracy`` is per byte and positional (byte ``i`` of the decoded
chunk equals byte ``i`` of the original, the training metric); the
Levenshtein distance is over the bytes of the joined sentence.

>>> levenshtein(b"kitten", b"sitting")
3
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from microtransformer.autoencoder.chunking import chunk_text
from microtransformer.autoencoder.model import (
    END_ID,
    N_SYMBOLS,
    ChunkAutoEncoder,
    chunks_to_tensor,
)
from microtransformer.autoencoder.results import (
    AfterFallback,
    FallbackStats,
    ReconstructionResult,
    SentenceResult,
    TokenizerInfo,
    ValidationResult,
)


class CodeTokenizer(Protocol):
    """What the after-fallback figures read of a tokenizer (the ``autoencoder`` engine has it all)."""

    model: ChunkAutoEncoder
    codes: list[int]
    max_chunk_len: int
    pattern: str | None
    vocab_size: int
    fingerprint: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def encode_chunk(self, chunk: bytes) -> list[int]: ...

__all__ = [
    "STANDARD_SENTENCES",
    "chunk_fallback_stats",
    "evaluate_chunks",
    "evaluate_model",
    "evaluate_sentences",
    "evaluate_tokenizer",
    "levenshtein",
]

STANDARD_SENTENCES: tuple[str, ...] = (
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "123 test",
    "Hello, world! How are you today?",
    "It is a truth universally acknowledged.",
    "To be, or not to be: that is the question.",
    "She said: \"Don't stop -- keep going!\"",
    "Numbers like 3.14159, 2024 and 42% matter.",
    "(parentheses) [brackets] {braces} <angles>",
    "def add(a, b):\n    return a + b",
    "Line one\nLine two\tand a tab.",
    "naïve café, résumé, Zürich",
    "東京 and Москва and 🙂",
    "I am Sam. Sam I am.",
    "The end of the chapter; the beginning of another.",
)


def levenshtein(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Edit distance (insertions, deletions, substitutions), O(len(a) * len(b))."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@torch.no_grad()
def evaluate_chunks(
    model: ChunkAutoEncoder,
    chunks: Sequence[bytes],
    weights: Sequence[float] | None = None,
    batch_size: int = 2048,
) -> ValidationResult:
    """Network-alone reconstruction of ``chunks``, each weighted (e.g. by its count).

    ``loss`` is the weighted mean cross-entropy per position,
    ``char_accuracy`` weighted over real bytes, ``exact_chunk_rate`` the
    weighted share of chunks decoded exactly (every byte and the END after
    them). Runs in eval mode and restores the mode after.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    w_all = torch.ones(len(chunks)) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    byte_c = byte_t = exact = loss_sum = w_sum = 0.0
    codes = []
    for i in range(0, len(chunks), batch_size):
        x = chunks_to_tensor(chunks[i : i + batch_size], model.config.max_chunk_len).to(device)  # (b, T)
        w = w_all[i : i + batch_size].to(device)  # (b,)
        out = model(x)
        pred = out.logits.argmax(-1)  # (b, T)
        is_byte = x != END_ID
        lengths = is_byte.sum(-1, keepdim=True)
        must = torch.arange(x.shape[1], device=device).unsqueeze(0) <= lengths  # bytes + the first END
        correct = pred == x
        per_loss = F.cross_entropy(out.logits.reshape(-1, N_SYMBOLS).float(), x.reshape(-1), reduction="none")
        loss_sum += float((per_loss.view(x.shape).mean(-1).double() * w).sum())
        byte_c += float(((correct & is_byte).sum(-1).double() * w).sum())
        byte_t += float((is_byte.sum(-1).double() * w).sum())
        exact += float(((correct | ~must).all(-1).double() * w).sum())
        w_sum += float(w.sum())
        codes.append(out.indices.cpu())
    model.train(was_training)
    return ValidationResult(
        char_accuracy=byte_c / max(byte_t, 1e-12),
        exact_chunk_rate=exact / max(w_sum, 1e-12),
        loss=loss_sum / max(w_sum, 1e-12),
        distinct_codes=int(torch.unique(torch.cat(codes)).numel()) if codes else 0,
        unique_chunks=len(chunks),
        occurrences=int(sum(weights)) if weights is not None else len(chunks),
    )


def evaluate_sentences(model: ChunkAutoEncoder, sentences: Sequence[str] = STANDARD_SENTENCES) -> list[SentenceResult]:
    """Network-alone reconstruction of each sentence, chunk by chunk (with the model's own chunking)."""
    return [_sentence(model, s)[0] for s in sentences]


def _sentence(model: ChunkAutoEncoder, s: str) -> tuple[SentenceResult, int]:
    """One sentence's result and its number of positionally matching bytes."""
    chunks = chunk_text(s, max_chunk_len=model.config.max_chunk_len, pattern=model.config.pattern)
    decoded, _ = model.reconstruct(chunks) if chunks else ([], None)
    joined, original = b"".join(decoded), s.encode("utf-8")
    matches = sum(sum(1 for x, y in zip(c, d) if x == y) for c, d in zip(chunks, decoded))
    result = SentenceResult(
        text=s, decoded=joined.decode("utf-8", errors="replace"), perfect=joined == original, chunks=len(chunks),
        exact_chunks=sum(c == d for c, d in zip(chunks, decoded)),
        char_accuracy=matches / len(original) if original else 1.0, levenshtein=levenshtein(original, joined),
    )
    return result, matches


def evaluate_model(
    model: ChunkAutoEncoder,
    *,
    val_chunks: Sequence[bytes] = (),
    val_counts: Sequence[int] = (),
    sentences: Sequence[str] = STANDARD_SENTENCES,
    phase: str = "after",
    model_path: str = "",
) -> ReconstructionResult:
    """Network-alone results: the sentences, and the occurrence-weighted validation split when given."""
    scored = [_sentence(model, s) for s in sentences]
    per = [p for p, _ in scored]
    n_bytes = sum(len(s.encode("utf-8")) for s in sentences)
    matches = sum(m for _, m in scored)
    n_chunks = sum(p.chunks for p in per)
    val = evaluate_chunks(model, list(val_chunks), list(val_counts) if val_counts else None) if val_chunks else None
    return ReconstructionResult(
        phase=phase,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        model_config=model.config.to_dict(),
        parameters=model.num_params(),
        sentences=per,
        sentences_total=len(per),
        sentences_perfect=sum(p.perfect for p in per),
        char_accuracy=matches / n_bytes if n_bytes else 1.0,
        exact_chunk_rate=sum(p.exact_chunks for p in per) / n_chunks if n_chunks else 1.0,
        mean_levenshtein=sum(p.levenshtein for p in per) / max(len(per), 1),
        total_levenshtein=sum(p.levenshtein for p in per),
        val=val,
        model_path=model_path,
    )


def evaluate_tokenizer(
    tok: CodeTokenizer,
    *,
    val_chunks: Sequence[bytes] = (),
    val_counts: Sequence[int] = (),
    texts: Mapping[str, str] | None = None,
    sentences: Sequence[str] = STANDARD_SENTENCES,
    phase: str = "final",
    model_path: str = "",
) -> ReconstructionResult:
    """:func:`evaluate_model` of the tokenizer's network plus the after-fallback figures.

    ``texts`` maps a name (e.g. ``"pride_and_prejudice"``) to held-out text
    whose bytes per token and fallback rate are reported too.
    """
    result = evaluate_model(tok.model, val_chunks=val_chunks, val_counts=val_counts, sentences=sentences, phase=phase, model_path=model_path)
    n_bytes = n_tokens = 0
    for entry, s in zip(result.sentences, sentences):
        ids = tok.encode(s)
        entry.tokens_after_fallback, entry.perfect_after_fallback = len(ids), tok.decode(ids) == s
        n_bytes += len(s.encode("utf-8"))
        n_tokens += len(ids)
    result.after_fallback = AfterFallback(
        sentences_perfect=sum(bool(e.perfect_after_fallback) for e in result.sentences),
        sentences_total=len(sentences),
        bytes_per_token_sentences=n_bytes / max(n_tokens, 1),
        val=chunk_fallback_stats(tok, val_chunks, val_counts or [1] * len(val_chunks)) if val_chunks else None,
        texts={name: chunk_fallback_stats(tok, *_counted_chunks(tok, text)) for name, text in (texts or {}).items()},
    )
    result.tokenizer = TokenizerInfo(vocab_size=tok.vocab_size, n_codes=len(tok.codes), fingerprint=tok.fingerprint)
    return result


def chunk_fallback_stats(tok: CodeTokenizer, chunks: Sequence[bytes], counts: Sequence[int]) -> FallbackStats:
    """Bytes per token and fallback rate over weighted chunks.

    The fallback rate is the share of multi-byte chunk occurrences that do
    not become one vocabulary token (single-byte chunks are byte tokens by
    design, not a fallback).
    """
    n_bytes = n_tokens = multi = fallback = 0
    for c, n in zip(chunks, counts):
        k = len(tok.encode_chunk(c))
        n_bytes += n * len(c)
        n_tokens += n * k
        if len(c) > 1:
            multi += n
            fallback += n * (k != 1)
    return FallbackStats(
        bytes_per_token=n_bytes / max(n_tokens, 1), fallback_rate=fallback / multi if multi else 0.0, bytes=n_bytes, tokens=n_tokens
    )


def _counted_chunks(tok: CodeTokenizer, text: str) -> tuple[list[bytes], list[int]]:
    """The chunks of ``text`` (the tokenizer's chunking) with their counts."""
    counts = Counter(chunk_text(text, max_chunk_len=tok.max_chunk_len, pattern=tok.pattern))
    chunks = list(counts)
    return chunks, [counts[c] for c in chunks]
