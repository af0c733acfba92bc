"""Codebook analysis of the chunk auto-encoder: how the FSQ grid is used.

For every unique chunk of a corpus the encoder gives a code; weighting each
chunk by its count gives code frequencies. From those:

* **distinct codes** and **collisions**: a code shared by several unique
  chunks can decode to at most one of them; the others need the fallback.
* **coverage when pruned to top-k**: keep the ``k`` codes most used by
  multi-byte chunks as the vocabulary; an occurrence is *covered* (one
  token) when its chunk is a single byte (a byte token) or its code is kept
  and the decoder reconstructs exactly that chunk. ``fallback_rate = 1 -
  coverage``.

Two utilization figures, because "how much of the codebook is used" has two
honest answers: ``grid_utilization`` (distinct codes used / the whole grid
``prod(levels)``; small by design, so that chunks rarely collide) and
``vocab_utilization`` (share of a pruned vocabulary's codes that held-out
text emits at least once: dead entries waste LM embedding rows). For an
exported tokenizer, whose vocabulary also holds sub-chunk pieces used only
inside the fallback, ``id_utilization`` counts every code id it emits on the
held-out text.

>>> analysis = analyze_codebook(model, counts, ks=(1024, 4096), heldout_counts=held)  # doctest: +SKIP
>>> analysis.summary.distinct_codes  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from tqdm.auto import tqdm

from microtransformer.autoencoder.model import ChunkAutoEncoder
from microtransformer.autoencoder.results import (
    CodebookAnalysis,
    CodebookSummary,
    TokenizerCoverage,
    TopCode,
    TopKRow,
)

__all__ = ["DEFAULT_KS", "analyze_codebook", "encode_unique_chunks", "format_table"]

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


def analyze_codebook(
    model: ChunkAutoEncoder,
    chunk_counts: Mapping[bytes, int],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    heldout_counts: Mapping[bytes, int] | None = None,
    vocab_codes: Sequence[int] | None = None,
    show_progress: bool = False,
    top_n: int = 50,
) -> CodebookAnalysis:
    """Code frequencies, collisions, top-k coverage and both utilizations (see module docstring).

    ``chunk_counts`` defines the frequencies and the top-k vocabularies
    (training text); ``heldout_counts`` (default: ``chunk_counts``) is where
    coverage and vocabulary utilization are measured. ``vocab_codes`` adds a
    row for an exported tokenizer's vocabulary.
    """
    held = heldout_counts if heldout_counts is not None else chunk_counts
    all_chunks = list(dict.fromkeys([*chunk_counts.keys(), *held.keys()]))
    codes, exact = encode_unique_chunks(model, all_chunks, show_progress=show_progress)
    usage = _CodeUsage(dict(zip(all_chunks, codes)), dict(zip(all_chunks, exact)), chunk_counts)
    topk = [usage.topk_row(k, held) for k in sorted(set(ks))]
    tokenizer = usage.tokenizer_row(set(vocab_codes), held) if vocab_codes is not None else None
    return CodebookAnalysis(
        summary=usage.summary(model.codebook_size, held),
        topk=topk,
        tokenizer=tokenizer,
        code_frequencies=[usage.freq[k] for k in usage.ranked],
        top_codes=usage.top_codes(top_n),
    )


class _CodeUsage:
    """Which code each chunk gets, how often each code is used, and which chunks share a code."""

    def __init__(self, code_of: Mapping[bytes, int], exact_of: Mapping[bytes, bool], chunk_counts: Mapping[bytes, int]) -> None:
        self.code_of, self.exact_of, self.counts = code_of, exact_of, chunk_counts
        self.freq: Counter[int] = Counter()
        self.members: dict[int, list[bytes]] = defaultdict(list)
        multi: Counter[int] = Counter()  # the top-k vocabularies rank codes by multi-byte occurrences
        for c, n in chunk_counts.items():
            self.freq[code_of[c]] += n
            self.members[code_of[c]].append(c)
            if len(c) > 1:
                multi[code_of[c]] += n
        self.ranked = [k for k, _ in self.freq.most_common()]
        self.vocab_ranked = [k for k, _ in multi.most_common()]

    def coverage(self, vocab: set[int], counts: Mapping[bytes, int]) -> tuple[float, int]:
        """(share of occurrences that are one token, vocab codes emitted at least once).

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
            k = self.code_of[c]
            if k in vocab and self.exact_of[c]:
                covered += n
                used.add(k)
        return (covered / total if total else 0.0), len(used)

    def topk_row(self, k: int, held: Mapping[bytes, int]) -> TopKRow:
        vocab = set(self.vocab_ranked[:k])
        cov_train, _ = self.coverage(vocab, self.counts)
        cov_held, used = self.coverage(vocab, held)
        return TopKRow(
            k=k, vocab_codes=len(vocab), coverage_train=cov_train, coverage_heldout=cov_held,
            fallback_rate_heldout=1.0 - cov_held, vocab_codes_used_heldout=used,
            vocab_utilization=used / len(vocab) if vocab else 0.0,
        )

    def tokenizer_row(self, vocab: set[int], held: Mapping[bytes, int]) -> TokenizerCoverage:
        cov_held, used = self.coverage(vocab, held)
        return TokenizerCoverage(
            vocab_codes=len(vocab), coverage_heldout=cov_held, fallback_rate_heldout=1.0 - cov_held,
            vocab_codes_used_heldout=used, vocab_utilization=used / len(vocab) if vocab else 0.0,
        )

    def summary(self, codebook_size: int, held: Mapping[bytes, int]) -> CodebookSummary:
        total = sum(self.counts.values())
        collided = {k: m for k, m in self.members.items() if len(m) > 1}
        exact_occ = sum(n for c, n in self.counts.items() if self.exact_of[c])
        return CodebookSummary(
            codebook_size=codebook_size,
            unique_chunks=len(self.counts),
            occurrences=total,
            distinct_codes=len(self.freq),
            grid_utilization=len(self.freq) / codebook_size,
            codes_with_collisions=len(collided),
            chunks_in_collisions=sum(len(m) for m in collided.values()),
            occurrence_share_in_collided_codes=sum(self.freq[k] for k in collided) / total if total else 0.0,
            mean_unique_chunks_per_code=len(self.counts) / max(len(self.freq), 1),
            max_unique_chunks_per_code=max((len(m) for m in self.members.values()), default=0),
            exact_reconstruction_occurrence_rate=exact_occ / total if total else 0.0,
            exact_reconstruction_unique_rate=sum(self.exact_of[c] for c in self.counts) / max(len(self.counts), 1),
            heldout_occurrences=sum(held.values()),
        )

    def top_codes(self, top_n: int) -> list[TopCode]:
        top = []
        for k in self.ranked[:top_n]:
            chunks_k = sorted(self.members[k], key=lambda c: -self.counts[c])
            top.append(
                TopCode(
                    code=k, occurrences=self.freq[k], unique_chunks=len(chunks_k),
                    chunks=[c.decode("utf-8", errors="backslashreplace") for c in chunks_k[:5]],
                )
            )
        return top


def format_table(analysis: CodebookAnalysis) -> str:
    """Plain-text table of an analysis (the CLI prints it)."""
    s = analysis.summary
    lines = [
        f"codebook size            {s.codebook_size:>12,}",
        f"unique chunks            {s.unique_chunks:>12,}  ({s.occurrences:,} occurrences)",
        f"distinct codes           {s.distinct_codes:>12,}  grid utilization {100 * s.grid_utilization:.3f}%",
        f"codes with collisions    {s.codes_with_collisions:>12,}  ({s.chunks_in_collisions:,} chunks, "
        f"{100 * s.occurrence_share_in_collided_codes:.2f}% of occurrences)",
        f"unique chunks per code   {s.mean_unique_chunks_per_code:>12.3f}  (max {s.max_unique_chunks_per_code})",
        f"exact reconstruction     {100 * s.exact_reconstruction_occurrence_rate:>11.2f}%  of occurrences "
        f"({100 * s.exact_reconstruction_unique_rate:.2f}% of unique chunks)",
        "",
        f"{'top-k':>8} {'coverage(train)':>16} {'coverage(held)':>15} {'fallback(held)':>15} {'vocab used(held)':>17}",
    ]
    for r in analysis.topk:
        lines.append(
            f"{r.k:>8} {100 * r.coverage_train:>15.2f}% {100 * r.coverage_heldout:>14.2f}% "
            f"{100 * r.fallback_rate_heldout:>14.2f}% {100 * r.vocab_utilization:>16.2f}%"
        )
    t = analysis.tokenizer
    if t:
        lines.append(
            f"{'tokenizer':>8} {'':>16} {100 * t.coverage_heldout:>14.2f}% {100 * t.fallback_rate_heldout:>14.2f}% "
            f"{100 * t.vocab_utilization:>16.2f}%  ({t.vocab_codes} codes)"
        )
        if t.ids_used_heldout is not None and t.id_utilization is not None:
            lines.append(
                f"tokenizer ids emitted on held-out text (fallback pieces included): {t.ids_used_heldout:,} of "
                f"{t.vocab_codes:,} codes = {100 * t.id_utilization:.2f}%"
            )
    return "\n".join(lines)
