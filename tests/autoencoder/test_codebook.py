"""Codebook analysis: frequencies, collisions, top-k coverage, both utilizations."""

from __future__ import annotations

from collections import Counter

import json

from microtransformer.autoencoder.codebook import analyze_codebook, encode_unique_chunks, format_table
from microtransformer.autoencoder.results import CodebookAnalysis


def test_analysis_figures(tiny_model, tiny_counts) -> None:
    held = Counter({b" the": 5, b"hello": 2, b" zzzz": 3})
    a = analyze_codebook(tiny_model, tiny_counts, ks=(2, 1000), heldout_counts=held, vocab_codes=None)
    s = a.summary
    assert s.unique_chunks == len(tiny_counts) and s.occurrences == sum(tiny_counts.values())
    assert s.distinct_codes == len(a.code_frequencies) <= len(tiny_counts)
    assert sum(a.code_frequencies) == s.occurrences
    assert a.code_frequencies == sorted(a.code_frequencies, reverse=True)
    assert s.grid_utilization == s.distinct_codes / 4_096_000
    assert s.exact_reconstruction_occurrence_rate == 1.0
    small, big = a.topk
    assert small.k == 2 and small.vocab_codes == 2
    # with every code kept, held-out coverage is exactly the share of known chunks: (5 + 2) / 10
    assert abs(big.coverage_heldout - 0.7) < 1e-9
    assert abs(big.fallback_rate_heldout - 0.3) < 1e-9
    assert big.vocab_codes_used_heldout == 2
    assert big.vocab_utilization == 2 / big.vocab_codes
    assert small.coverage_train <= big.coverage_train == 1.0
    saved = json.loads(json.dumps(a.to_json()))
    assert "grid_utilization" in saved["definitions"] and "vocab_utilization" in saved["definitions"]
    assert CodebookAnalysis.from_json(saved) == a  # one to_json/from_json pair
    assert "grid utilization" in format_table(a)


def test_collisions_are_counted(tiny_model, tiny_counts) -> None:
    codes, exact = encode_unique_chunks(tiny_model, list(tiny_counts))
    code = codes[0]
    # a fake chunk count table where two unseen chunks share the trained model's codes
    counts = Counter(tiny_counts)
    a = analyze_codebook(tiny_model, counts, ks=(10,), vocab_codes=[code])
    assert a.tokenizer is not None and a.tokenizer.vocab_codes == 1
    assert a.summary.codes_with_collisions == 0  # the tiny model separates its training chunks
    assert all(exact)


def test_single_bytes_are_always_one_token(tiny_model, tiny_counts) -> None:
    held = Counter({b",": 4, b" zzzz": 1})
    a = analyze_codebook(tiny_model, tiny_counts, ks=(1,), heldout_counts=held, vocab_codes=[])
    assert a.tokenizer is not None
    assert abs(a.tokenizer.coverage_heldout - 0.8) < 1e-9  # "," is a byte token, " zzzz" falls back
    assert a.tokenizer.vocab_codes_used_heldout == 0
