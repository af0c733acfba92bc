"""What a tokenizer does to text, measured: compression, vocabulary use, token lengths, speed, exact round trip.

These are the figures of the tokenizer alone (no model, no torch), each on
text the tokenizer never trained on:

- **bytes per token** (UTF-8 bytes of the text / tokens) and **tokens per word**
  (tokens / whitespace-separated words): how much text one model position holds;
- **vocabulary share used**: distinct ordinary ids in the encoding / ordinary
  vocabulary (ids a model must still embed and predict but never sees here);
- **token-length distribution**: held-out token *occurrences* by their length in
  bytes (1 .. 16, then ">16");
- **encode MB/s**: one ``encode`` call per paragraph, and one ``encode_batch``
  call over all paragraphs with a given number of threads, timed interleaved
  across tokenizers (:func:`encode_speeds`) so load that drifts hits all alike;
- **exact round trip** on the held-out documents and on :data:`ADVERSARIAL_CASES`.

Round trip means ``decode(encode(s)) == s`` *and* ``decode_bytes(encode(s))`` is
exactly ``s.encode("utf-8")``, with special-token text in ``s`` encoded as
ordinary text (the default) and coming back unchanged. One exception, stated
rather than hidden: a lone UTF-16 surrogate (``"\\ud83d"``) has no UTF-8 form,
so no tokenizer that works on UTF-8 can give it back; every engine encodes it
as U+FFFD (as tiktoken does), and for such strings the expected result is
``s`` with each lone surrogate replaced by U+FFFD.

>>> checks = adversarial_checks(tok)  # doctest: +SKIP
>>> all(c.passed for c in checks)  # doctest: +SKIP
True
"""

from __future__ import annotations

import gc
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from microtransformer.tokenization.base import (
    MicroTransformerTokenizer,
    replace_surrogates,
)

__all__ = [
    "ADVERSARIAL_CASES",
    "MAX_HIST_LEN",
    "ROUND_TRIP_DEFINITION",
    "RoundTripCheck",
    "TextStats",
    "adversarial_checks",
    "encode_speeds",
    "paragraphs",
    "round_trip_check",
    "text_stats",
    "timed",
]

#: Strings that break careless tokenizers; each must round-trip exactly (see the module docstring).
ADVERSARIAL_CASES: dict[str, str] = {
    "emoji": "ok 🙂 👍🏽 👨‍👩‍👧‍👦 🇯🇵 ❤️ 🫠",
    "CJK": "東京は日本の首都です。中文字符测试，한국어 텍스트",
    "combining marks": "cafe\u0301 vs caf\u00e9, n\u0303, Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307lgo",
    "CRLF": "line one\r\nline two\r\n\r\nold mac\rend\r\n",
    "NUL and controls": "a\x00b\x00\x00c \x1b[31mred\x1b[0m \x7f\x08\x0c",
    "lone surrogates": "high \ud83d alone, low \ude00 alone, reversed \ude00\ud83d, pair \ud83d\ude00",
    "odd whitespace": "  \t\t x\u00a0y\u2009z\u200b\ufeff \u2581w\u2581 \u3000end \n\n\n",
    "right-to-left": "العربية עברית \u202eevil\u202c mixed",
    "long runs": "a" * 600 + " " + "1234567890" * 40 + " " + "=" * 300,
    "astral and noncharacters": "\U0001d54f\U0001f600\U000e0001\U0010fffd \uffff\ufffe \ufffd",
}
#: Special-token spellings of other libraries, typed as text: they must stay text.
FOREIGN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "[CLS]", "[SEP]", "<s>", "</s>", "<unk>", "<pad>", "<mask>")

ROUND_TRIP_DEFINITION = (
    "decode(encode(s)) == s and decode_bytes(encode(s)) == s.encode('utf-8'), special-token text encoded as "
    "ordinary text; a lone UTF-16 surrogate has no UTF-8 form, so it is expected back as U+FFFD (as in tiktoken)"
)
MAX_HIST_LEN = 16  # token lengths above this share the last bucket (">16")


@dataclass(frozen=True)
class RoundTripCheck:
    """One round-trip check: its name, whether it passed, and what happened."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_difference(got: str, want: str) -> str:
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return f"differs at character {i}: got {got[max(0, i - 10):i + 10]!r}, expected {want[max(0, i - 10):i + 10]!r}"


def round_trip_check(tok: MicroTransformerTokenizer, name: str, text: str, ids: Sequence[int] | None = None) -> RoundTripCheck:
    """``decode(encode(text))`` against ``text`` (lone surrogates expected as U+FFFD), and the exact bytes."""
    ids = tok.encode(text) if ids is None else ids
    want = replace_surrogates(text)
    got = tok.decode(ids)
    if got != want:
        return RoundTripCheck(name, False, _first_difference(got, want))
    if tok.decode_bytes(ids) != want.encode("utf-8"):
        return RoundTripCheck(name, False, "decode_bytes differs from the UTF-8 bytes of the text")
    special = set(ids) & tok.special_ids
    if special:
        return RoundTripCheck(name, False, f"special-token ids {sorted(special)} came from ordinary text")
    surrogates = want.count("\ufffd") - text.count("\ufffd")  # lone surrogates replaced (a valid pair joins)
    note = f"; {surrogates} lone surrogate(s) came back as U+FFFD" if surrogates else ""
    return RoundTripCheck(name, True, f"{len(want.encode('utf-8'))} bytes, {len(ids)} tokens{note}")


def _special_allowed_check(tok: MicroTransformerTokenizer) -> RoundTripCheck:
    """The tokenizer's own special tokens, parsed (``allowed_special="all"``): one id each, decoded back as text."""
    name = "special tokens (allowed)"
    specials = tok.special_tokens
    if not specials:
        return RoundTripCheck(name, True, "the tokenizer has no special tokens")
    text = " ".join(specials)
    ids = tok.encode(text, allowed_special="all")
    missing = [t for t, i in specials.items() if i not in ids]
    if missing:
        return RoundTripCheck(name, False, f"not encoded as their ids: {missing}")
    got = tok.decode(ids)
    if got != text:
        return RoundTripCheck(name, False, _first_difference(got, text))
    return RoundTripCheck(name, True, f"{len(specials)} special tokens, one id each")


def adversarial_checks(tok: MicroTransformerTokenizer) -> list[RoundTripCheck]:
    """Round trip of every :data:`ADVERSARIAL_CASES` string, special-token text as text, and specials allowed."""
    checks = [round_trip_check(tok, name, text) for name, text in ADVERSARIAL_CASES.items()]
    as_text = " ".join([*tok.special_tokens, *FOREIGN_SPECIALS])
    checks.append(round_trip_check(tok, "special-token text (ordinary)", as_text))
    checks.append(_special_allowed_check(tok))
    return checks


@dataclass(frozen=True)
class TextStats:
    """Compression and vocabulary figures of one tokenizer on one text (see the module docstring)."""

    bytes: int
    tokens: int
    words: int
    bytes_per_token: float
    tokens_per_word: float
    distinct_ids: int
    vocab_share_used: float
    single_byte_share: float
    length_histogram: dict[str, int]  # "1".."16", ">16" -> token occurrences

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_WORD = re.compile(r"\S+")


def text_stats(tok: MicroTransformerTokenizer, docs: Sequence[str], ids_list: Sequence[Sequence[int]]) -> TextStats:
    """Figures of ``tok`` on ``docs``, given their ids (``tok.encode_batch(docs)``)."""
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    words = sum(len(_WORD.findall(d)) for d in docs)
    flat = np.fromiter((i for ids in ids_list for i in ids), dtype=np.int64)
    lengths = tok.token_bytes()[flat] if flat.size else np.zeros(0, dtype=np.int64)
    counts = np.bincount(np.minimum(lengths, MAX_HIST_LEN + 1), minlength=MAX_HIST_LEN + 2)
    hist = {str(k): int(counts[k]) for k in range(1, MAX_HIST_LEN + 1)}
    hist[f">{MAX_HIST_LEN}"] = int(counts[MAX_HIST_LEN + 1])
    ordinary = np.unique(flat[flat < tok.n_ordinary]) if flat.size else flat
    return TextStats(
        bytes=n_bytes,
        tokens=int(flat.size),
        words=words,
        bytes_per_token=n_bytes / max(int(flat.size), 1),
        tokens_per_word=int(flat.size) / max(words, 1),
        distinct_ids=int(ordinary.size),
        vocab_share_used=int(ordinary.size) / max(tok.n_ordinary, 1),
        single_byte_share=int(counts[1]) / max(int(flat.size), 1),
        length_histogram=hist,
    )


def paragraphs(docs: Sequence[str]) -> list[str]:
    """``docs`` cut after every blank line (they join back to the documents exactly): the unit of encode timing."""
    return [p for d in docs for p in re.split(r"(?<=\n\n)(?=[^\n])", d) if p]


def timed(fn: Callable[[], Any]) -> float:
    """Seconds of one call; like ``timeit``, the garbage collector is paused and its output freed off the clock.

    With the collector running, its full passes over the growing output lists
    cost ~25 % of an encode and fire at points that depend on allocation
    history, not on the code under test; pausing it compares the code.
    """
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    finally:
        gc.enable()
    del out
    return seconds


def encode_speeds(
    tokenizers: Mapping[str, MicroTransformerTokenizer], texts: Sequence[str], *, threads: int, repeats: int = 3
) -> dict[str, dict[str, float]]:
    """Median MB/s of ``encode`` (one call per text) and ``encode_batch`` (one call, ``threads``) per tokenizer.

    Rounds interleave the tokenizers (round r: every tokenizer once, in turn),
    after one untimed warm-up each, so a neighbour's load that comes and goes
    is spread over all of them instead of landing on one.
    """
    texts = list(texts)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    for tok in tokenizers.values():  # warm-up: caches, thread pools, lazy tables
        tok.encode_batch(texts[:64], num_threads=threads)
    single: dict[str, list[float]] = {name: [] for name in tokenizers}
    batch: dict[str, list[float]] = {name: [] for name in tokenizers}
    for _ in range(repeats):
        for name, tok in tokenizers.items():
            single[name].append(timed(lambda tok=tok: [tok.encode(t) for t in texts]))
            batch[name].append(timed(lambda tok=tok: tok.encode_batch(texts, num_threads=threads)))
    return {
        name: {
            "single_mb_s": mb / max(statistics.median(single[name]), 1e-9),
            "batch_mb_s": mb / max(statistics.median(batch[name]), 1e-9),
            "mb": mb,
            "threads": threads,
            "repeats": repeats,
        }
        for name in tokenizers
    }
