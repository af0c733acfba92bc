"""Pure-Python byte-level BPE: the exactness oracle for the rustbpe engine.

The fast tokenizer trains with rustbpe (Rust) and encodes with tiktoken. Both
are opaque, so this module re-implements the same algorithm in readable
Python, and the tests assert that the two produce *identical merges and ids*:
a slow reference beside the fast path (minbpe's "our ids equal tiktoken's" test).

Algorithm (Sennrich et al. 2016, "Neural Machine Translation of Rare Words
with Subword Units", at the byte level of GPT-2; split pattern of GPT-4):

1. Split every document with the regex pattern and count the unique pieces.
2. Each chunk starts as its UTF-8 bytes (ids 0..255).
3. Repeatedly merge the most frequent adjacent pair (counted over all
   positions, overlapping, weighted by chunk count) into a new id
   ``256 + i``; ties go to the lowest ``(left, right)`` pair, as in rustbpe.

Training is incremental rather than minbpe's recount-everything loop: only
the chunks that contain the merged pair are touched (``pair -> chunk
indices``), and the best pair comes from a heap with lazy refresh. That turns
minutes into seconds on a megabyte of text while staying easy to audit
against the naive loop kept in the tests.

>>> merges = train_merges(count_pieces(["hello hello world"]), 258)
>>> bpe = ReferenceBPE(merges)
>>> bpe.decode_bytes(bpe.encode_ordinary("hello"))
b'hello'
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import regex
from tqdm.auto import tqdm

from microtransformer.errors import ConfigError
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

logger = logging.getLogger(__name__)

Pair = tuple[int, int]
TieBreak = Literal["lowest", "first"]

_N_BYTES = 256
_TIE_BREAKS = ("lowest", "first")
_DEFAULT_CACHE_SIZE = 65_536


def count_pieces(texts: Iterable[str], pattern: str = GPT4_SPLIT_PATTERN) -> dict[str, int]:
    """Split each document with ``pattern`` and count the unique pieces (regex matches).

    "Pieces", not "chunks": in this package a chunk is the auto-encoder's
    byte string of at most ``max_chunk_len`` bytes (:mod:`microtransformer.autoencoder.chunking`).

    Every item is its own document: texts are never joined, so no chunk can
    straddle two documents. The returned dict keeps first-appearance order,
    which ``tie_break="first"`` (minbpe's rule) depends on.

    >>> count_pieces(["hi hi", "hi"])
    {'hi': 2, ' hi': 1}
    """
    compiled = regex.compile(pattern)
    counts: dict[str, int] = {}
    for text in texts:
        for chunk in compiled.findall(text):
            counts[chunk] = counts.get(chunk, 0) + 1
    return counts


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace non-overlapping occurrences of ``pair`` left to right.

    ``[a, a, a]`` with ``(a, a)`` gives ``[X, a]``: the greedy left-to-right
    scan is what both minbpe and rustbpe do.
    """
    left, right = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == left and ids[i + 1] == right:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_merges(
    chunk_counts: Mapping[str, int],
    vocab_size: int,
    *,
    tie_break: TieBreak = "lowest",
    progress: bool = False,
) -> list[Pair]:
    """Learn BPE merges from chunk counts; merge ``i`` creates id ``256 + i``.

    ``tie_break="lowest"`` picks, among pairs of equal count, the lowest
    ``(left, right)`` tuple (rustbpe's rule); ``"first"`` picks the pair whose
    first occurrence in the current chunk sequences comes first (minbpe's
    ``max(stats, key=stats.get)``; chunk order is the mapping's order).

    Training stops early, returning fewer merges, once no adjacent pair is
    left (the corpus is fully merged); the caller decides whether to warn.

    >>> train_merges({"aaa": 1}, 300)  # "aaa" -> [X, a] -> [Y]; then nothing is left
    [(97, 97), (256, 97)]
    """
    if not isinstance(vocab_size, int) or vocab_size < _N_BYTES:
        raise ConfigError(
            f"vocab_size must be an integer >= {_N_BYTES} (the 256 byte tokens), got {vocab_size!r}; "
            f"pass e.g. vocab_size={_N_BYTES + 256} to learn 256 merges"
        )
    if tie_break not in _TIE_BREAKS:
        raise ConfigError(f"tie_break must be one of {_TIE_BREAKS}, got {tie_break!r}")

    words: list[list[int]] = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    weights: list[int] = list(chunk_counts.values())
    if any(w < 0 for w in weights):
        raise ConfigError("chunk counts must be >= 0; build them with count_pieces(texts)")

    # Pair statistics over all positions, weighted by chunk count, and the
    # exact set of chunks in which each pair currently occurs.
    pair_counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for idx, (word, weight) in enumerate(zip(words, weights)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + weight
            where.setdefault(pair, set()).add(idx)

    # Max-heap by count, then lowest pair, as a min-heap of (-count, l, r).
    # Entries may be stale (count too high): see _pop_best.
    heap: list[tuple[int, int, int]] = [(-c, p[0], p[1]) for p, c in pair_counts.items() if c > 0]
    heapq.heapify(heap)

    n_merges = vocab_size - _N_BYTES
    merges: list[Pair] = []
    with tqdm(total=n_merges, desc="reference BPE merges", disable=not progress) as bar:
        for i in range(n_merges):
            best = _pop_best(heap, pair_counts, where, words, tie_break)
            if best is None:
                logger.debug("no pairs left after %d of %d merges; stopping early", i, n_merges)
                break
            new_id = _N_BYTES + i
            _apply_merge(best, new_id, words, weights, pair_counts, where, heap)
            merges.append(best)
            bar.update(1)
    return merges


def _pop_best(
    heap: list[tuple[int, int, int]],
    pair_counts: dict[Pair, int],
    where: dict[Pair, set[int]],
    words: list[list[int]],
    tie_break: TieBreak,
) -> Pair | None:
    """Pop the pair to merge next, or None when no pair is left.

    Lazy refresh is exact because a pair's count never grows after the step
    that created it: merging ``(a, b) -> X`` only removes old adjacencies and
    adds pairs that contain ``X``. So a stale entry always over-states its
    pair; when the top entry is current it is the true maximum.
    """
    top = _pop_valid(heap, pair_counts)
    if top is None or tie_break == "lowest":
        return top
    # "first": gather every pair tied at the top count, pick the one whose
    # first occurrence (chunk index, position) is earliest, push the rest back.
    count = pair_counts[top]
    tied = [top]
    while heap and -heap[0][0] >= count:
        other = _pop_valid(heap, pair_counts)
        if other is None:
            break
        if pair_counts[other] < count:  # popped a refreshed, now-lower entry
            heapq.heappush(heap, (-pair_counts[other], other[0], other[1]))
            break
        tied.append(other)
    if len(tied) == 1:
        return top
    best = min(tied, key=lambda p: _first_occurrence(p, where, words))
    for pair in tied:
        if pair != best:
            heapq.heappush(heap, (-count, pair[0], pair[1]))
    return best


def _pop_valid(heap: list[tuple[int, int, int]], pair_counts: dict[Pair, int]) -> Pair | None:
    """Pop entries until one whose stored count is current; re-push stale ones."""
    while heap:
        neg, left, right = heapq.heappop(heap)
        pair = (left, right)
        current = pair_counts.get(pair, 0)
        if current == -neg:
            return pair
        if current > 0:
            heapq.heappush(heap, (-current, left, right))
    return None


def _first_occurrence(pair: Pair, where: dict[Pair, set[int]], words: list[list[int]]) -> tuple[int, int]:
    """(chunk index, position) of the first occurrence of ``pair``."""
    idx = min(where[pair])
    word = words[idx]
    for pos in range(len(word) - 1):
        if (word[pos], word[pos + 1]) == pair:
            return idx, pos
    raise AssertionError(f"pair {pair} indexed in chunk {idx} but not found")  # internal invariant


def _apply_merge(
    pair: Pair,
    new_id: int,
    words: list[list[int]],
    weights: list[int],
    pair_counts: dict[Pair, int],
    where: dict[Pair, set[int]],
    heap: list[tuple[int, int, int]],
) -> None:
    """Merge ``pair`` in every chunk that holds it and update the statistics."""
    grown: set[Pair] = set()
    for idx in where.pop(pair):
        old = words[idx]
        new = merge_pair(old, pair, new_id)
        words[idx] = new
        weight = weights[idx]
        old_pairs = list(zip(old, old[1:]))
        new_pairs = list(zip(new, new[1:]))
        for p in old_pairs:
            pair_counts[p] -= weight
        for p in new_pairs:
            pair_counts[p] = pair_counts.get(p, 0) + weight
            if new_id in p:
                grown.add(p)
        old_set, new_set = set(old_pairs), set(new_pairs)
        for p in old_set - new_set:
            if p != pair:
                where[p].discard(idx)
        for p in new_set - old_set:
            where.setdefault(p, set()).add(idx)
    pair_counts.pop(pair, None)  # every occurrence was merged: count is 0
    # Pairs without new_id only lost counts (lazy refresh handles them);
    # pairs with new_id are new and get their final count pushed once.
    for p in grown:
        heapq.heappush(heap, (-pair_counts[p], p[0], p[1]))


class ReferenceBPE:
    """Encode/decode with an ordered merge list, minbpe style.

    Each regex chunk is encoded independently by repeatedly merging the
    adjacent pair with the lowest merge rank. It is slow but obviously
    correct, which is its job: tests compare it with tiktoken on ranks
    exported from rustbpe.

    >>> bpe = ReferenceBPE([(104, 105)])  # "hi" -> 256
    >>> bpe.encode_ordinary("hi hi")
    [256, 32, 256]
    >>> bpe.vocab[256]
    b'hi'
    """

    def __init__(
        self,
        merges: Sequence[tuple[int, int]],
        pattern: str = GPT4_SPLIT_PATTERN,
        *,
        cache_size: int = _DEFAULT_CACHE_SIZE,
    ) -> None:
        self.merges: list[Pair] = [(int(a), int(b)) for a, b in merges]
        self.pattern = pattern
        self._compiled = regex.compile(pattern)
        self.ranks: dict[Pair, int] = {}
        self.vocab: list[bytes] = [bytes([b]) for b in range(_N_BYTES)]
        for i, (left, right) in enumerate(self.merges):
            new_id = _N_BYTES + i
            if not (0 <= left < new_id and 0 <= right < new_id):
                raise ConfigError(
                    f"merge {i} = ({left}, {right}) refers to an id that does not exist yet "
                    f"(ids must be < {new_id}); merges must be listed in training order"
                )
            self.ranks[(left, right)] = new_id
            self.vocab.append(self.vocab[left] + self.vocab[right])
        self._cache_size = cache_size
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes plus one per merge."""
        return len(self.vocab)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with no special-token handling."""
        ids: list[int] = []
        for chunk in self._compiled.findall(text):
            cached = self._cache.get(chunk)
            if cached is None:
                cached = self._encode_chunk(chunk.encode("utf-8"))
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()  # bounded memory; a simple reset beats LRU bookkeeping here
                self._cache[chunk] = cached
            ids.extend(cached)
        return ids

    def _encode_chunk(self, data: bytes) -> list[int]:
        ids = list(data)
        inf = float("inf")
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, inf))
            new_id = self.ranks.get(pair)
            if new_id is None:
                break
            ids = merge_pair(ids, pair, new_id)
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenate the bytes of each id (may be invalid UTF-8 mid-character)."""
        vocab = self.vocab
        n = len(vocab)
        parts: list[bytes] = []
        for i in ids:
            if not 0 <= i < n:
                raise ConfigError(f"cannot decode token id {i!r}: ids must be in [0, {n}) for this vocabulary")
            parts.append(vocab[i])
        return b"".join(parts)
