"""The auto-encoder tokenizer's HTML report: reconstruction side by side, training curves, codebook plots.

Each part is included when its input is given: several
:class:`~microtransformer.autoencoder.results.ReconstructionResult` (before
vs after training vs a tokenizer), a run's
:class:`~microtransformer.autoencoder.results.PretrainHistory`, and a
:class:`~microtransformer.autoencoder.results.CodebookAnalysis`. One
self-contained file (:mod:`microtransformer.evaluation.report`).

>>> write_report("report.html", results={"before": before, "after": after})  # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from microtransformer.autoencoder.results import (
    CodebookAnalysis,
    PretrainHistory,
    ReconstructionResult,
)
from microtransformer.evaluation.report import (
    flatten,
    html_page,
    html_table,
    png_img,
    pyplot,
    write_html,
)
from microtransformer.io import PathLike

__all__ = ["build_report", "write_report"]


def _summary(r: ReconstructionResult) -> dict[str, object]:
    """The result's figures as ``name -> value`` rows (sentences listed apart)."""
    data = asdict(r)
    for key in ("sentences", "model_config", "created", "phase", "model_path"):
        data.pop(key)
    return flatten(data)


def _compare_table(results: Mapping[str, ReconstructionResult]) -> str:
    flat = {name: _summary(r) for name, r in results.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))
    return html_table(["metric", *results], ([k, *(flat[n].get(k, "") for n in results)] for k in keys))


def _sentences_table(results: Mapping[str, ReconstructionResult]) -> str:
    names = [n for n, r in results.items() if r.sentences]
    if not names:
        return ""
    rows = []
    for i, s in enumerate(results[names[0]].sentences):
        cells = [f"<code>{html.escape(s.text)}</code>"]
        for n in names:
            entries = results[n].sentences
            if i >= len(entries):
                cells.append("")
                continue
            e = entries[i]
            mark = "✔" if e.perfect else f"✘ (lev {e.levenshtein})"
            cells.append(f"<code>{html.escape(e.decoded)}</code><br>{mark}")
        rows.append(cells)
    return html_table(["sentence", *names], rows, raw=True)


def _curves(history: PretrainHistory) -> str:
    if not history.train and not history.evals:
        return ""
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(11, 3.8))
    if history.train:
        steps = [t.step for t in history.train]
        ax1.plot(steps, [t.loss for t in history.train], label="train loss")
        ax2.plot(steps, [t.char_accuracy for t in history.train], label="train char acc")
    if history.evals:
        es = [e.step for e in history.evals]
        if all(e.loss is not None for e in history.evals):
            ax1.plot(es, [e.loss for e in history.evals], "o-", label="val loss")
        ax2.plot(es, [e.char_accuracy for e in history.evals], "o-", label="val char acc")
        ax2.plot(es, [e.exact_chunk_rate for e in history.evals], "s--", label="val exact chunks")
    ax1.set_xlabel("step")
    ax1.set_yscale("log")
    ax1.set_title("reconstruction loss")
    ax2.set_xlabel("step")
    ax2.set_ylim(0, 1)
    ax2.set_title("accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    return png_img(fig, "training curves")


def _codebook_plots(analysis: CodebookAnalysis) -> str:
    freqs = analysis.code_frequencies
    if not freqs:
        return ""
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(11, 3.8))
    ax1.loglog(range(1, len(freqs) + 1), freqs)
    ax1.set_xlabel("code rank")
    ax1.set_ylabel("occurrences")
    ax1.set_title(f"code frequencies ({len(freqs):,} distinct codes)")
    ax1.grid(alpha=0.3)
    if analysis.topk:
        ks = [r.k for r in analysis.topk]
        ax2.semilogx(ks, [r.coverage_heldout for r in analysis.topk], "o-", label="coverage (held-out)")
        ax2.semilogx(ks, [r.vocab_utilization for r in analysis.topk], "s--", label="vocab utilization (held-out)")
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("vocabulary = top-k codes")
        ax2.legend()
        ax2.grid(alpha=0.3)
        ax2.set_title("pruned vocabulary")
    return png_img(fig, "code frequencies")


def _codebook_part(analysis: CodebookAnalysis) -> str:
    summary = asdict(analysis.summary)
    parts = ["<h2>Codebook</h2>", html_table(["metric", "value"], summary.items()), _codebook_plots(analysis)]
    if analysis.topk:
        rows = [asdict(r) for r in analysis.topk]
        parts.append(html_table(list(rows[0]), (r.values() for r in rows)))
    defs = analysis.DEFINITIONS
    parts.append("<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in defs.items()) + "</dl>")
    return "\n".join(p for p in parts if p)


def build_report(
    *,
    results: Mapping[str, ReconstructionResult] | None = None,
    history: PretrainHistory | None = None,
    codebook: CodebookAnalysis | None = None,
    title: str = "Auto-encoder tokenizer report",
) -> str:
    """The HTML text of a report (see module docstring for what goes in)."""
    parts = []
    if results:
        parts += [
            "<h2>Reconstruction: " + " vs ".join(html.escape(n) for n in results) + "</h2>",
            _compare_table(results),
            "<h3>Standard sentences (network alone)</h3>",
            _sentences_table(results),
        ]
    if history is not None:
        curves = _curves(history)
        if curves:
            last = max([t.step for t in history.train] + [e.step for e in history.evals])
            parts.append(
                f"<h2>Training curves (step {last})</h2>{curves}"
                "<p>Train figures are over batches sampled by count<sup>alpha</sup> (rare chunks over-represented); "
                "val figures are weighted by occurrence, as a tokenizer sees text.</p>"
            )
    if codebook is not None:
        parts.append(_codebook_part(codebook))
    return html_page(title, parts)


def write_report(path: PathLike, **kwargs: object) -> Path:
    """Build the report (:func:`build_report`'s arguments) and write it atomically; returns the path."""
    return write_html(path, build_report(**kwargs))  # type: ignore[arg-type]
