"""Which codes become the auto-encoder tokenizer's vocabulary.

The network gives every chunk a code; the vocabulary keeps only codes that
decode back to exactly the string that produced them (one string per code),
because only those make ``decode(encode(s)) == s`` hold without running the
network. Which verified strings to keep is the other half:
``strategy="compression"`` (default) keeps the substrings that encode the
training chunks in the fewest tokens with the tokenizer's greedy fallback;
``strategy="frequency"`` keeps the most frequent whole chunks, then
prefix/suffix *pieces* so an unknown word splits into a few tokens, not bytes.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from microtransformer.errors import ConfigError

if TYPE_CHECKING:  # torch stays out of import time
    from microtransformer.autoencoder.model import ChunkAutoEncoder

__all__ = [
    "STRATEGIES",
    "VocabularyReport",
    "build_vocabulary",
    "greedy_split",
    "piece_candidates",
    "piece_scores",
    "select_by_compression",
    "string_priorities",
    "substring_counts",
    "verify_strings",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocabularyReport:
    """How the vocabulary was filled: what was tried and why chunks were rejected."""

    requested: int
    accepted: int
    candidates_tried: int
    candidates_total: int
    rejected_mismatch: int  # the network did not reconstruct the chunk exactly
    rejected_collision: int  # the chunk's code already belongs to a more frequent chunk
    occurrence_coverage: float  # share of chunk occurrences whose chunk is in the vocabulary
    pieces_tried: int = 0  # sub-chunk pieces tried after the whole chunks ran out
    pieces_accepted: int = 0  # pieces the network reconstructs exactly, on a free code
    strategy: str = "frequency"  # how strings were chosen (see build_vocabulary)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def piece_scores(
    chunk_counts: Counter[bytes] | dict[bytes, int],
    accepted: set[bytes] | frozenset[bytes] = frozenset(),
    *,
    max_len: int,
) -> Counter[bytes]:
    """For every prefix/suffix (2 bytes up to one byte short of the chunk) of the chunks outside ``accepted``:
    the number of chunk occurrences that start or end with it.

    >>> piece_scores({b" walking": 3, b"ing": 1}, max_len=16)[b"ing"]
    3
    """
    score: Counter[bytes] = Counter()
    for chunk, n in chunk_counts.items():
        if chunk in accepted or not 3 <= len(chunk) <= max_len:
            continue
        for length in range(2, len(chunk)):
            score[chunk[:length]] += n
            score[chunk[-length:]] += n
    return score


def piece_candidates(
    chunk_counts: Counter[bytes] | dict[bytes, int],
    accepted: set[bytes] | frozenset[bytes] = frozenset(),
    *,
    max_len: int,
) -> list[bytes]:
    """Prefixes and suffixes of the chunks outside the vocabulary, most useful first.

    A piece's score (:func:`piece_scores`) is the number of chunk
    *occurrences* outside ``accepted`` that start or end with it: those are
    exactly the chunks the greedy fallback must split, so the score counts
    the times it could use the piece. Pieces already in ``chunk_counts`` are
    left out (they were candidates as whole chunks), and so are pieces that
    cut a UTF-8 character in two. Ties: longer first, then by bytes
    (deterministic).

    >>> piece_candidates({b" walking": 3, b" talking": 2, b" walk": 9}, {b" walk"}, max_len=16)[:3]
    [b'alking', b'lking', b'king']
    """
    score = piece_scores(chunk_counts, accepted, max_len=max_len)
    # ties: the longer piece first (it saves more tokens), then by bytes
    return sorted((p for p in score if p not in chunk_counts and _is_utf8_boundary(p)), key=lambda p: (-score[p], -len(p), p))


def _is_utf8_boundary(piece: bytes) -> bool:
    """Whether ``piece`` starts and ends on UTF-8 character boundaries (so a piece is text, not half a character)."""
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


STRATEGIES = ("compression", "frequency")
DEFAULT_MAX_STRINGS = 131072


def build_vocabulary(
    model: ChunkAutoEncoder,
    chunk_counts: Counter[bytes] | dict[bytes, int],
    n_codes: int,
    *,
    strategy: str = "compression",
    max_strings: int = DEFAULT_MAX_STRINGS,
    pieces: bool = True,
    piece_fraction: float = 0.0,
    max_pieces: int = 65536,
    batch_size: int = 4096,
    show_progress: bool = False,
) -> tuple[list[int], list[bytes], VocabularyReport]:
    """Up to ``n_codes`` verified strings with their codes: ``(codes, strings, report)``.

    ``strategy="compression"`` (default): the ``max_strings`` best
    substrings of the training chunks (:func:`string_priorities`) are
    verified by the network, best first (:func:`verify_strings`), and the
    verified ones are pruned to the ``n_codes`` that encode the training
    chunks in the fewest tokens (:func:`select_by_compression`).
    ``strategy="frequency"``: the most frequent whole chunks, then pieces
    (see :func:`_frequency_vocabulary`); the first strategy this tokenizer had.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown vocabulary strategy {strategy!r}; choose one of {STRATEGIES}")
    if n_codes < 0:
        raise ConfigError(f"n_codes must be >= 0, got {n_codes}")
    if strategy == "frequency":
        return _frequency_vocabulary(
            model, chunk_counts, n_codes, pieces=pieces, piece_fraction=piece_fraction, max_pieces=max_pieces,
            batch_size=batch_size, show_progress=show_progress,
        )
    max_len = model.config.max_chunk_len
    prio = string_priorities(chunk_counts, max_len=max_len, max_strings=max_strings)
    verified, stats = verify_strings(model, list(prio), batch_size=batch_size, show_progress=show_progress)
    strings = select_by_compression(verified, chunk_counts, n_codes)
    codes = [verified[x] for x in strings]
    total_occ = sum(chunk_counts.values())
    kept = set(strings)
    single = sum(n for c, n in chunk_counts.items() if len(c) == 1 or c in kept)
    n_pieces = sum(1 for x in strings if x not in chunk_counts)
    report = VocabularyReport(
        requested=n_codes,
        accepted=len(codes),
        candidates_tried=stats["tried"],
        candidates_total=len(prio),
        rejected_mismatch=stats["mismatch"],
        rejected_collision=stats["collision"],
        occurrence_coverage=single / total_occ if total_occ else 0.0,
        pieces_tried=sum(1 for x in prio if x not in chunk_counts),
        pieces_accepted=n_pieces,
        strategy=strategy,
    )
    logger.info(
        "vocabulary (%s): %d/%d codes from %d verified of %d candidate strings (%d not reconstructed, %d code "
        "collisions); %d are sub-chunk pieces; %.1f%% of chunk occurrences are single tokens",
        strategy, report.accepted, n_codes, len(verified), len(prio), report.rejected_mismatch, report.rejected_collision,
        n_pieces, 100 * report.occurrence_coverage,
    )
    return codes, strings, report


def _frequency_vocabulary(
    model: ChunkAutoEncoder,
    chunk_counts: Counter[bytes] | dict[bytes, int],
    n_codes: int,
    *,
    pieces: bool = True,
    piece_fraction: float = 0.0,
    max_pieces: int = 65536,
    batch_size: int = 4096,
    show_progress: bool = False,
) -> tuple[list[int], list[bytes], VocabularyReport]:
    """The ``n_codes`` most frequent multi-byte chunks the network reconstructs exactly (and pieces).

    Chunks are tried most frequent first (ties by bytes, so it is
    deterministic); a chunk is accepted when ``decode(encode(chunk)) ==
    chunk`` and its code is not taken yet. ``piece_fraction`` of the codes
    are kept for *pieces*: once whole chunks have filled the rest (or run
    out), ``pieces=True`` tries prefixes/suffixes of the chunks left out
    (:func:`piece_candidates`, the ``max_pieces`` best) under the same
    check, so that the fallback splits unknown words into pieces rather
    than bytes; codes the pieces leave free go back to whole chunks.
    Pieces only pass the check if pre-training sampled them
    (``PretrainConfig.piece_share``). Called through :func:`build_vocabulary`, which checks ``n_codes``.
    """
    if not 0.0 <= piece_fraction <= 1.0:
        raise ConfigError(f"piece_fraction must be in [0, 1] (share of the codes kept for pieces), got {piece_fraction}")
    max_len = model.config.max_chunk_len
    candidates = sorted((c for c in chunk_counts if 2 <= len(c) <= max_len), key=lambda c: (-chunk_counts[c], c))
    total_occ = sum(chunk_counts.values())
    codes: list[int] = []
    chunks: list[bytes] = []
    taken: set[int] = set()
    stats = {"mismatch": 0, "collision": 0, "tried": 0}

    def try_all(strings: list[bytes], limit: int) -> int:
        """Verify ``strings`` in order until ``limit`` codes are taken; returns how many were tried."""
        got, st = verify_strings(model, strings, batch_size=batch_size, taken=taken, limit=limit - len(codes), show_progress=show_progress)
        codes.extend(got.values())
        chunks.extend(got)
        for k in stats:
            stats[k] += st[k]
        return st["tried"]

    n_pieces_target = round(piece_fraction * n_codes) if pieces else 0
    used = try_all(candidates, n_codes - n_pieces_target)
    tried_whole, n_whole = used, len(codes)
    if pieces and len(codes) < n_codes:
        try_all(piece_candidates(chunk_counts, set(chunks), max_len=max_len)[:max_pieces], n_codes)
    n_pieces = len(codes) - n_whole
    pieces_tried = stats["tried"] - tried_whole
    if len(codes) < n_codes:  # codes the pieces left free: back to whole chunks
        tried_whole += try_all(candidates[used:], n_codes)
    covered = sum(chunk_counts.get(c, 0) for c in chunks) + sum(n for c, n in chunk_counts.items() if len(c) == 1)
    report = VocabularyReport(
        requested=n_codes,
        accepted=len(codes),
        candidates_tried=tried_whole,
        candidates_total=len(candidates),
        rejected_mismatch=stats["mismatch"],
        rejected_collision=stats["collision"],
        occurrence_coverage=covered / total_occ if total_occ else 0.0,
        pieces_tried=pieces_tried,
        pieces_accepted=n_pieces,
        strategy="frequency",
    )
    logger.info(
        "vocabulary: %d/%d codes accepted after trying %d of %d chunks and %d pieces (%d not reconstructed, "
        "%d code collisions; %d pieces accepted); %.1f%% of chunk occurrences are single tokens",
        report.accepted, n_codes, tried_whole, len(candidates), report.pieces_tried, report.rejected_mismatch,
        report.rejected_collision, report.pieces_accepted, 100 * report.occurrence_coverage,
    )
    return codes, chunks, report


# ------------------------------------------------------------------ compression-driven selection
def greedy_split(chunk: bytes, table: dict[bytes, int] | set[bytes] | frozenset[bytes], *, skip_whole: bool = False) -> list[bytes]:
    """The tokenizer's fallback: longest vocabulary string at each position, else one byte.

    ``skip_whole`` splits ``chunk`` as if it were not in ``table`` itself
    (what removing it from the vocabulary would cost).

    >>> greedy_split(b" walking", {b" walk", b"ing", b"in"})
    [b' walk', b'ing']
    """
    out: list[bytes] = []
    pos, n = 0, len(chunk)
    while pos < n:
        top = n - pos - (1 if skip_whole and pos == 0 else 0)
        for length in range(top, 1, -1):
            piece = chunk[pos : pos + length]
            if piece in table:
                out.append(piece)
                pos += length
                break
        else:
            out.append(chunk[pos : pos + 1])
            pos += 1
    return out


def substring_counts(chunk_counts: Counter[bytes] | dict[bytes, int], *, max_len: int) -> Counter[bytes]:
    """For every substring of 2+ bytes (whole UTF-8 characters) of the chunks: the chunk occurrences containing it.

    >>> substring_counts({b" walking": 3, b"king": 2}, max_len=16)[b"king"]
    5
    """
    counts: Counter[bytes] = Counter()
    for chunk, n in chunk_counts.items():
        size = len(chunk)
        if not 2 <= size <= max_len:
            continue
        for sub in {chunk[i:j] for i in range(size - 1) for j in range(i + 2, size + 1)}:
            counts[sub] += n
    return Counter({sub: n for sub, n in counts.items() if _is_utf8_boundary(sub)})


def string_priorities(chunk_counts: Counter[bytes] | dict[bytes, int], *, max_len: int, max_strings: int) -> dict[bytes, int]:
    """The ``max_strings`` candidate vocabulary strings, best first: ``(len - 1) * occurrences`` as a substring.

    ``(len - 1) * n`` bounds the tokens a string can save over single bytes.
    Candidates are any substrings, not only whole chunks and their
    prefixes/suffixes: with a perfect network they compress the training
    books best (``docs/benchmarks.md``, how the vocabulary strategy was
    chosen). Ties by bytes (deterministic).
    """
    subs = substring_counts(chunk_counts, max_len=max_len)
    ranked = sorted(subs, key=lambda x: (-(len(x) - 1) * subs[x], x))[:max_strings]
    return {x: (len(x) - 1) * subs[x] for x in ranked}


def verify_strings(
    model: ChunkAutoEncoder,
    strings: list[bytes],
    *,
    batch_size: int = 4096,
    taken: set[int] | None = None,
    limit: int | None = None,
    show_progress: bool = False,
) -> tuple[dict[bytes, int], dict[str, int]]:
    """``{string: code}`` for the strings the network reconstructs exactly, one string per code.

    ``strings`` go in priority order: when two reconstruct exactly on the
    same code (the decoder can only give one of them back, so only one can
    be verified — the first), the later one is dropped as a collision.
    ``taken`` holds codes already given away (updated in place); ``limit``
    stops after that many strings are verified.
    """
    model.eval()
    verified: dict[bytes, int] = {}
    taken = set() if taken is None else taken
    stats = {"tried": 0, "mismatch": 0, "collision": 0}
    for start in tqdm(range(0, len(strings), batch_size), desc="verifying strings", unit="batch", disable=not show_progress):
        if limit is not None and len(verified) >= limit:
            break
        batch = strings[start : start + batch_size]
        decoded, indices = model.reconstruct(batch, batch_size=batch_size)
        for s, dec, code in zip(batch, decoded, indices.tolist()):
            if limit is not None and len(verified) >= limit:
                break
            stats["tried"] += 1
            if dec != s:
                stats["mismatch"] += 1
            elif code in taken:
                stats["collision"] += 1
            else:
                taken.add(code)
                verified[s] = code
    return verified, stats


def select_by_compression(
    candidates: dict[bytes, int] | set[bytes], chunk_counts: Counter[bytes] | dict[bytes, int], n_keep: int, *, prune_share: float = 0.2
) -> list[bytes]:
    """The ``n_keep`` candidates that encode the training chunks in the fewest tokens (most used first).

    Start from every candidate and prune in rounds, like a unigram
    tokenizer's trainer: encode each unique chunk with the tokenizer's own
    greedy fallback (:func:`greedy_split`), count how many tokens each entry
    saves (its uses times the extra tokens its own split would need), drop
    the least useful ``prune_share`` (unused ones first) and repeat. Why
    not "most frequent chunks": those leave every rare word to bytes, while
    kept pieces let it cost two or three tokens (figures in ``docs/benchmarks.md``).
    """
    chunks = [(c, n) for c, n in chunk_counts.items() if len(c) >= 2]
    table = set(candidates)
    while True:
        usage: Counter[bytes] = Counter()
        for chunk, n in chunks:
            for piece in greedy_split(chunk, table):
                if len(piece) > 1:
                    usage[piece] += n
        excess = len(table) - n_keep
        if excess <= 0:
            break
        cost = {e: usage[e] * (len(greedy_split(e, table, skip_whole=True)) - 1) if usage[e] else 0 for e in table}
        n_drop = min(excess, max(sum(1 for e in table if not usage[e]), math.ceil(prune_share * len(table))))
        for e in sorted(table, key=lambda e: (cost[e], usage[e], len(e), e))[:n_drop]:
            table.discard(e)
    return sorted(table, key=lambda e: (-usage[e], e))
