"""Reconstruction tests for the chunk auto-encoder and its tokenizer.

Two questions, kept apart on purpose:

* **network alone** — does ``decoder(encoder(chunk))`` give the chunk back?
  Measured on a fixed set of standard sentences and on the validation
  split, before any fallback: character (byte) accuracy, exact-chunk rate,
  perfect sentences, Levenshtein distance. This is what training improves.
* **after fallback** — with an exported tokenizer, chunks outside the
  vocabulary fall back to shorter vocabulary strings or bytes, so
  reconstruction is always perfect; what varies is the cost: bytes per
  token and the fallback rate.

``char_accuracy`` here is per byte and positional: byte ``i`` of the decoded
chunk equals byte ``i`` of the original (the training metric). The
Levenshtein distance is over bytes of the joined sentence, so an extra or
missing byte counts once instead of shifting everything after it.

>>> levenshtein(b"kitten", b"sitting")
3
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from microtransformer.autoencoder.chunking import chunk_text
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

if TYPE_CHECKING:
    from microtransformer.autoencoder.model import ChunkAutoEncoder
    from microtransformer.autoencoder.tokenizer import AutoEncoderTokenizer

__all__ = [
    "STANDARD_SENTENCES",
    "chunk_fallback_stats",
    "chunk_fallback_stats_text",
    "evaluate_model",
    "evaluate_sentences",
    "evaluate_tokenizer",
    "levenshtein",
]

logger = logging.getLogger(__name__)

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


def _positional_matches(orig: bytes, dec: bytes) -> int:
    return sum(1 for x, y in zip(orig, dec) if x == y)


def evaluate_sentences(model: ChunkAutoEncoder, sentences: Sequence[str] = STANDARD_SENTENCES) -> dict[str, Any]:
    """Network-alone reconstruction of each sentence, chunk by chunk."""
    max_len = model.config.max_chunk_len
    per: list[dict[str, Any]] = []
    tot_bytes = tot_match = tot_chunks = tot_exact = 0
    for s in sentences:
        chunks = chunk_text(s, max_chunk_len=max_len)
        decoded, _ = model.reconstruct(chunks) if chunks else ([], None)
        joined = b"".join(decoded)
        original = s.encode("utf-8")
        matches = sum(_positional_matches(c, d) for c, d in zip(chunks, decoded))
        exact = sum(c == d for c, d in zip(chunks, decoded))
        n_bytes = len(original)
        per.append(
            {
                "text": s,
                "decoded": joined.decode("utf-8", errors="replace"),
                "perfect": joined == original,
                "chunks": len(chunks),
                "exact_chunks": exact,
                "char_accuracy": matches / n_bytes if n_bytes else 1.0,
                "levenshtein": levenshtein(original, joined),
            }
        )
        tot_bytes += n_bytes
        tot_match += matches
        tot_chunks += len(chunks)
        tot_exact += exact
    n = max(len(per), 1)
    return {
        "sentences": per,
        "summary": {
            "sentences_total": len(per),
            "sentences_perfect": sum(p["perfect"] for p in per),
            "char_accuracy": tot_match / tot_bytes if tot_bytes else 1.0,
            "exact_chunk_rate": tot_exact / tot_chunks if tot_chunks else 1.0,
            "mean_levenshtein": sum(p["levenshtein"] for p in per) / n,
            "total_levenshtein": sum(p["levenshtein"] for p in per),
        },
    }


def evaluate_model(
    model: ChunkAutoEncoder,
    *,
    val_chunks: Sequence[bytes] = (),
    val_counts: Sequence[int] = (),
    sentences: Sequence[str] = STANDARD_SENTENCES,
    phase: str = "after",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Network-alone results as a JSON-able dict (sentences + occurrence-weighted val split)."""
    from microtransformer.autoencoder.model import evaluate_chunks

    result = evaluate_sentences(model, sentences)
    summary = result["summary"]
    if val_chunks:
        v = evaluate_chunks(model, list(val_chunks), list(val_counts) if val_counts else None)
        summary.update(
            {
                "val_char_accuracy": v["char_accuracy"],
                "val_exact_chunk_rate": v["exact_rate"],
                "val_loss": v["loss"],
                "val_distinct_codes": int(v["distinct_codes"]),
                "val_unique_chunks": int(v["chunks"]),
                "val_occurrences": int(sum(val_counts)) if val_counts else len(val_chunks),
            }
        )
    return {
        "phase": phase,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_config": model.config.to_dict(),
        "parameters": model.num_parameters(),
        **dict(extra or {}),
        **result,
    }


def evaluate_tokenizer(
    tok: AutoEncoderTokenizer,
    *,
    val_chunks: Sequence[bytes] = (),
    val_counts: Sequence[int] = (),
    texts: Mapping[str, str] | None = None,
    sentences: Sequence[str] = STANDARD_SENTENCES,
    phase: str = "final",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Network-alone results of the tokenizer's model plus the after-fallback figures.

    ``texts`` maps a name (e.g. ``"pride_and_prejudice"``) to held-out text
    whose bytes per token and fallback rate are reported too.
    """
    result = evaluate_model(tok.model, val_chunks=val_chunks, val_counts=val_counts, sentences=sentences, phase=phase, extra=extra)
    after: dict[str, Any] = {}
    perfect = 0
    n_bytes = n_tokens = 0
    for entry, s in zip(result["sentences"], sentences):
        ids = tok.encode(s)
        ok = tok.decode(ids) == s
        entry["tokens_after_fallback"] = len(ids)
        entry["perfect_after_fallback"] = ok
        perfect += ok
        n_bytes += len(s.encode("utf-8"))
        n_tokens += len(ids)
    after["sentences_perfect"] = perfect
    after["sentences_total"] = len(sentences)
    after["bytes_per_token_sentences"] = n_bytes / max(n_tokens, 1)
    if val_chunks:
        stats = chunk_fallback_stats(tok, val_chunks, val_counts or [1] * len(val_chunks))
        after.update({f"val_{k}": v for k, v in stats.items()})
    for name, text in (texts or {}).items():
        stats = chunk_fallback_stats_text(tok, text)
        after.update({f"{name}_{k}": v for k, v in stats.items()})
    result["summary"]["after_fallback"] = after
    result["tokenizer"] = {"vocab_size": tok.vocab_size, "n_codes": len(tok.codes), "fingerprint": tok.fingerprint}
    return result


def chunk_fallback_stats(tok: AutoEncoderTokenizer, chunks: Sequence[bytes], counts: Sequence[int]) -> dict[str, float]:
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
    return {
        "bytes_per_token": n_bytes / max(n_tokens, 1),
        "fallback_rate": fallback / multi if multi else 0.0,
        "bytes": n_bytes,
        "tokens": n_tokens,
    }


def chunk_fallback_stats_text(tok: AutoEncoderTokenizer, text: str) -> dict[str, float]:
    """:func:`chunk_fallback_stats` over the chunks of ``text``."""
    from collections import Counter

    counts = Counter(chunk_text(text, max_chunk_len=tok.max_chunk_len, pattern=tok.pattern or GPT4_SPLIT_PATTERN))
    chunks = list(counts)
    return chunk_fallback_stats(tok, chunks, [counts[c] for c in chunks])
