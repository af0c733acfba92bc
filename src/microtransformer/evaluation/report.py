"""HTML reports for the auto-encoder tokenizer: tables and embedded matplotlib PNGs.

One self-contained ``.html`` file (PNG images inlined as base64, no external
assets), so a report can be attached to an issue or opened offline. The
plots use matplotlib's Agg backend, chosen explicitly so report generation
works on headless machines and never opens a window.

Contents, each included when its input is given:

* before vs after: the summary metrics of several ``eval`` results side by side;
* training curves: loss and char accuracy from ``training_state.json``
  (train history and validation evaluations);
* code frequencies: rank-frequency plot and top-k coverage from an
  ``analyze`` result.

>>> write_report("report.html", results={"before": before, "after": after})  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from microtransformer.io import PathLike, atomic_write_text

__all__ = ["build_report", "png_img", "pyplot", "write_report"]

logger = logging.getLogger(__name__)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (headless; imported on first use, never by the package)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_img(fig: Any, alt: str = "plot") -> str:
    """An ``<img>`` tag holding ``fig`` as a base64 PNG (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode("ascii") + '">'


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, (list, tuple)):
            out[f"{prefix}{k}"] = v
    return out


def _compare_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    flat = {name: _flatten(r.get("summary", {})) for name, r in results.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in results)
    rows = []
    for k in keys:
        cells = "".join(f"<td>{_fmt(flat[n].get(k, ''))}</td>" for n in results)
        rows.append(f"<tr><th>{html.escape(k)}</th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _sentences_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    names = [n for n, r in results.items() if r.get("sentences")]
    if not names:
        return ""
    first = results[names[0]]["sentences"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, s in enumerate(first):
        cells = []
        for n in names:
            entries = results[n]["sentences"]
            if i >= len(entries):
                cells.append("<td></td>")
                continue
            e = entries[i]
            mark = "✔" if e["perfect"] else f"✘ (lev {e['levenshtein']})"
            cells.append(f"<td><code>{html.escape(e['decoded'])}</code><br>{mark}</td>")
        rows.append(f"<tr><td><code>{html.escape(s['text'])}</code></td>{''.join(cells)}</tr>")
    return f"<table><tr><th>sentence</th>{head}</tr>{''.join(rows)}</table>"


def _curves(state: Mapping[str, Any]) -> str:
    history = state.get("history") or []
    evals = state.get("evals") or []
    if not history and not evals:
        return ""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    if history:
        steps = [h["step"] for h in history]
        ax1.plot(steps, [h["loss"] for h in history], label="train loss")
        ax2.plot(steps, [h["char_accuracy"] for h in history], label="train char acc")
    if evals:
        es = [e["step"] for e in evals]
        ax1.plot(es, [e["val_loss"] for e in evals], "o-", label="val loss")
        ax2.plot(es, [e["val_char_accuracy"] for e in evals], "o-", label="val char acc")
        ax2.plot(es, [e["val_exact_rate"] for e in evals], "s--", label="val exact chunks")
    ax1.set_xlabel("step")
    ax1.set_yscale("log")
    ax1.set_title("reconstruction loss")
    ax2.set_xlabel("step")
    ax2.set_ylim(0, 1)
    ax2.set_title("accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    return png_img(fig)


def _codebook_plots(analysis: Mapping[str, Any]) -> str:
    freqs = analysis.get("code_frequencies") or []
    if not freqs:
        return ""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax1.loglog(range(1, len(freqs) + 1), freqs)
    ax1.set_xlabel("code rank")
    ax1.set_ylabel("occurrences")
    ax1.set_title(f"code frequencies ({len(freqs):,} distinct codes)")
    ax1.grid(alpha=0.3)
    rows = analysis.get("topk") or []
    if rows:
        ks = [r["k"] for r in rows]
        ax2.semilogx(ks, [r["coverage_heldout"] for r in rows], "o-", label="coverage (held-out)")
        ax2.semilogx(ks, [r["vocab_utilization"] for r in rows], "s--", label="vocab utilization (held-out)")
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("vocabulary = top-k codes")
        ax2.legend()
        ax2.grid(alpha=0.3)
        ax2.set_title("pruned vocabulary")
    return png_img(fig)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{white-space:pre-wrap}img{max-width:100%}"""


def build_report(
    *,
    results: Mapping[str, Mapping[str, Any]] | None = None,
    training_state: Mapping[str, Any] | None = None,
    codebook: Mapping[str, Any] | None = None,
    title: str = "Auto-encoder tokenizer report",
) -> str:
    """The HTML text of a report (see module docstring for what goes in)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    if results:
        parts.append("<h2>Reconstruction: " + " vs ".join(html.escape(n) for n in results) + "</h2>")
        parts.append(_compare_table(results))
        parts.append("<h3>Standard sentences (network alone)</h3>")
        parts.append(_sentences_table(results))
    if training_state:
        curves = _curves(training_state)
        if curves:
            parts.append(
                f"<h2>Training curves (step {training_state.get('step', '?')})</h2>{curves}"
                "<p>Train figures are over batches sampled by count<sup>alpha</sup> (rare chunks over-represented); "
                "val figures are weighted by occurrence, as a tokenizer sees text.</p>"
            )
    if codebook:
        parts.append("<h2>Codebook</h2>")
        parts.append(_compare_table({"value": {"summary": codebook.get("summary", {})}}))
        plots = _codebook_plots(codebook)
        if plots:
            parts.append(plots)
        rows = codebook.get("topk") or []
        if rows:
            head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        defs = codebook.get("definitions") or {}
        if defs:
            parts.append("<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in defs.items()) + "</dl>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_report(path: PathLike, **kwargs: Any) -> Path:
    """Build the report and write it atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, build_report(**kwargs))
    logger.info("wrote report %s", path)
    return path
