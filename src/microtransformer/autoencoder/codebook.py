"""Codebook analysis of the chunk auto-encoder: how the FSQ grid is used.

For every unique chunk of a corpus the encoder gives a code; weighting each
chunk by its count gives code frequencies. From those:

* **distinct codes** and **collisions**: a code shared by several unique
  chunks can decode to at most one of them; the others need the fallback.
* **coverage when pruned to top-k**: keep the ``k`` codes most used by
  multi-byte chunks as the vocabulary; an occurrence is *covered* (one
  token) when its chunk is a single byte (a byte token) or its code is kept
  and the decoder reconstructs exactly that chunk. ``fallback_rate = 1 -
  coverage`` (over all chunk occurrences).

Two utilization figures, because "how much of the codebook is used" has two
honest answers:

* ``grid_utilization`` = distinct codes the corpus uses / the full FSQ grid
  (``prod(levels)``: 4,096,000 for the design's levels, 2**60 for the default
  config's). Small by design: the grid is far larger than any vocabulary so
  that chunks rarely collide.
* ``vocab_utilization`` = share of the pruned vocabulary's codes (top-k, or
  an exported tokenizer's codes) that the *held-out* text actually emits as
  tokens (code kept and reconstructing exactly) at least once. This is the
  figure the issue's "≥ 80 % of the pruned vocabulary used" refers to: dead
  vocabulary entries waste LM embedding rows. For an exported tokenizer
  whose vocabulary also holds sub-chunk pieces (used only inside the
  fallback), ``id_utilization`` counts every code id the tokenizer emits
  when it encodes the held-out text (``mtx autoencoder analyze`` on a
  tokenizer dir with ``--heldout_file``).

>>> stats = analyze_codebook(model, counts, ks=(1024, 4096), heldout_counts=held)  # doctest: +SKIP
>>> stats["summary"]["distinct_codes"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from microtransformer.autoencoder.model import ChunkAutoEncoder

__all__ = ["DEFAULT_KS", "analyze_codebook", "encode_unique_chunks", "format_table"]

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (1024, 4096, 8192, 16384, 32768)


def encode_unique_chunks(
    model: ChunkAutoEncoder, chunks: Sequence[bytes], *, batch_size: int = 4096, show_progress: bool = False
) -> tuple[list[int], list[bool]]:
    """Code of every chunk and whether the network reconstructs it exactly."""
    codes: list[int] = []
    exact: list[bool] = []
    model.eval()
    for i in tqdm(range(0, len(chunks), batch_size), desc="encoding chunks", unit="batch", disable=not show_progress):
        batch = list(chunks[i : i + batch_size])
        decoded, idx = model.reconstruct(batch, batch_size=batch_size)
        codes.extend(idx.tolist())
        exact.extend(d == c for d, c in zip(decoded, batch))
    return codes, exact


def _usage(
    vocab: set[int],
    code_of: Mapping[bytes, int],
    exact_of: Mapping[bytes, bool],
    counts: Mapping[bytes, int],
) -> tuple[float, int]:
    """(coverage of occurrences, number of vocab codes emitted at least once).

    A single-byte chunk is always one token (every vocabulary has the 256
    byte tokens), so it counts as covered and never uses a code.
    """
    total = sum(counts.values())
    covered = 0
    used: set[int] = set()
    for c, n in counts.items():
        if len(c) == 1:
            covered += n
            continue
        k = code_of[c]
        if k in vocab and exact_of[c]:
            covered += n
            used.add(k)
    return (covered / total if total else 0.0), len(used)


def analyze_codebook(
    model: ChunkAutoEncoder,
    chunk_counts: Mapping[bytes, int],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    heldout_counts: Mapping[bytes, int] | None = None,
    vocab_codes: Sequence[int] | None = None,
    show_progress: bool = False,
    top_n: int = 50,
) -> dict[str, Any]:
    """Code frequencies, collisions, top-k coverage and both utilizations (see module docstring).

    ``chunk_counts`` defines the frequencies and the top-k vocabularies
    (training text); ``heldout_counts`` (default: ``chunk_counts``) is where
    coverage and vocabulary utilization are measured. ``vocab_codes`` adds a
    row for an exported tokenizer's vocabulary.
    """
    held = heldout_counts if heldout_counts is not None else chunk_counts
    all_chunks = list(dict.fromkeys([*chunk_counts.keys(), *held.keys()]))
    codes, exact = encode_unique_chunks(model, all_chunks, show_progress=show_progress)
    code_of = dict(zip(all_chunks, codes))
    exact_of = dict(zip(all_chunks, exact))

    freq: Counter[int] = Counter()
    members: dict[int, list[bytes]] = defaultdict(list)
    for c, n in chunk_counts.items():
        freq[code_of[c]] += n
        members[code_of[c]].append(c)
    total = sum(chunk_counts.values())
    collided = {k: m for k, m in members.items() if len(m) > 1}
    ranked = [k for k, _ in freq.most_common()]
    # the top-k vocabularies rank codes by multi-byte occurrences: single bytes are byte tokens
    multi: Counter[int] = Counter()
    for c, n in chunk_counts.items():
        if len(c) > 1:
            multi[code_of[c]] += n
    vocab_ranked = [k for k, _ in multi.most_common()]
    exact_occ = sum(n for c, n in chunk_counts.items() if exact_of[c])

    rows = []
    for k in sorted(set(ks)):
        vocab = set(vocab_ranked[:k])
        cov_train, _ = _usage(vocab, code_of, exact_of, chunk_counts)
        cov_held, used = _usage(vocab, code_of, exact_of, held)
        rows.append(
            {
                "k": k,
                "vocab_codes": len(vocab),
                "coverage_train": cov_train,
                "coverage_heldout": cov_held,
                "fallback_rate_heldout": 1.0 - cov_held,
                "vocab_codes_used_heldout": used,
                "vocab_utilization": used / len(vocab) if vocab else 0.0,
            }
        )
    tokenizer_row = None
    if vocab_codes is not None:
        vocab = set(vocab_codes)
        cov_held, used = _usage(vocab, code_of, exact_of, held)
        tokenizer_row = {
            "vocab_codes": len(vocab),
            "coverage_heldout": cov_held,
            "fallback_rate_heldout": 1.0 - cov_held,
            "vocab_codes_used_heldout": used,
            "vocab_utilization": used / len(vocab) if vocab else 0.0,
        }

    top = []
    for k in ranked[:top_n]:
        chunks_k = sorted(members[k], key=lambda c: -chunk_counts[c])
        top.append(
            {
                "code": k,
                "occurrences": freq[k],
                "unique_chunks": len(chunks_k),
                "chunks": [c.decode("utf-8", errors="backslashreplace") for c in chunks_k[:5]],
            }
        )
    summary = {
        "codebook_size": model.codebook_size,
        "unique_chunks": len(chunk_counts),
        "occurrences": total,
        "distinct_codes": len(freq),
        "grid_utilization": len(freq) / model.codebook_size,
        "codes_with_collisions": len(collided),
        "chunks_in_collisions": sum(len(m) for m in collided.values()),
        "occurrence_share_in_collided_codes": sum(freq[k] for k in collided) / total if total else 0.0,
        "mean_unique_chunks_per_code": len(chunk_counts) / max(len(freq), 1),
        "max_unique_chunks_per_code": max((len(m) for m in members.values()), default=0),
        "exact_reconstruction_occurrence_rate": exact_occ / total if total else 0.0,
        "exact_reconstruction_unique_rate": sum(exact_of[c] for c in chunk_counts) / max(len(chunk_counts), 1),
        "heldout_occurrences": sum(held.values()),
    }
    return {
        "summary": summary,
        "topk": rows,
        "tokenizer": tokenizer_row,
        "code_frequencies": [freq[k] for k in ranked],  # descending, for rank-frequency plots
        "top_codes": top,
        "definitions": {
            "grid_utilization": "distinct codes used by the corpus chunks / prod(levels)",
            "vocab_utilization": "share of the pruned vocabulary's codes emitted at least once on held-out text "
            "(code kept and the decoder reconstructs that exact chunk)",
            "coverage": "share of chunk occurrences that are one token: a single byte, or a kept code that decodes "
            "to exactly that chunk",
            "fallback_rate": "1 - coverage",
        },
    }


def format_table(analysis: Mapping[str, Any]) -> str:
    """Plain-text table of an :func:`analyze_codebook` result (the CLI prints it)."""
    s = analysis["summary"]
    lines = [
        f"codebook size            {s['codebook_size']:>12,}",
        f"unique chunks            {s['unique_chunks']:>12,}  ({s['occurrences']:,} occurrences)",
        f"distinct codes           {s['distinct_codes']:>12,}  grid utilization {100 * s['grid_utilization']:.3f}%",
        f"codes with collisions    {s['codes_with_collisions']:>12,}  ({s['chunks_in_collisions']:,} chunks, "
        f"{100 * s['occurrence_share_in_collided_codes']:.2f}% of occurrences)",
        f"unique chunks per code   {s['mean_unique_chunks_per_code']:>12.3f}  (max {s['max_unique_chunks_per_code']})",
        f"exact reconstruction     {100 * s['exact_reconstruction_occurrence_rate']:>11.2f}%  of occurrences "
        f"({100 * s['exact_reconstruction_unique_rate']:.2f}% of unique chunks)",
        "",
        f"{'top-k':>8} {'coverage(train)':>16} {'coverage(held)':>15} {'fallback(held)':>15} {'vocab used(held)':>17}",
    ]
    for r in analysis["topk"]:
        lines.append(
            f"{r['k']:>8} {100 * r['coverage_train']:>15.2f}% {100 * r['coverage_heldout']:>14.2f}% "
            f"{100 * r['fallback_rate_heldout']:>14.2f}% {100 * r['vocab_utilization']:>16.2f}%"
        )
    t = analysis.get("tokenizer")
    if t:
        lines.append(
            f"{'tokenizer':>8} {'':>16} {100 * t['coverage_heldout']:>14.2f}% {100 * t['fallback_rate_heldout']:>14.2f}% "
            f"{100 * t['vocab_utilization']:>16.2f}%  ({t['vocab_codes']} codes)"
        )
        if "ids_used_heldout" in t:
            lines.append(
                f"tokenizer ids emitted on held-out text (fallback pieces included): {t['ids_used_heldout']:,} of "
                f"{t['vocab_codes']:,} codes = {100 * t['id_utilization']:.2f}%"
            )
    return "\n".join(lines)
