"""The tokenizer comparison as one self-contained HTML page: the table, the plots, the checks, the samples.

Plots are matplotlib PNGs inlined as base64 (:func:`.report.png_img`), so the
file has no external assets and opens offline. Contents, top to bottom: the
command line and the machine; the data; the verdict and the summary table
(best first); bytes per token and downstream bits per byte against vocabulary
size, one line per engine; held-out bits per byte over training time, one
line per tokenizer; token-length histograms; every round-trip check; extra
samples; greedy samples; the settings; how each figure is measured.

>>> write_compare_report(result, "compare.html")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

from microtransformer.evaluation.compare import (
    SORT_BPB,
    ComparisonResult,
    TokenizerResult,
    table_rows,
)
from microtransformer.evaluation.report import png_img, pyplot, write_html
from microtransformer.evaluation.tokenizer_metrics import (
    MAX_HIST_LEN,
    ROUND_TRIP_DEFINITION,
)
from microtransformer.io import PathLike

__all__ = ["build_compare_report", "write_compare_report"]


_CSS = """body{font-family:system-ui,-apple-system,sans-serif;margin:1.5em auto;max-width:1250px;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#eef8ee}.ok{color:#1a7f37}.bad{color:#c62828;font-weight:bold}
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;word-break:break-all}
img{max-width:100%;display:block;margin:.6em 0}.verdict{font-size:1.05em;background:#f7f7e8;padding:.5em .8em}
.sample{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:13px;max-height:14em;overflow:auto}.prompt{background:#e8eefc}"""

_DEFINITIONS = {
    "bpb": "Held-out bits per byte of the same small GPT after the same seconds of training: every held-out token "
    "predicted once (windows of block_size tokens), its loss summed in bits and divided by the UTF-8 bytes of the "
    "held-out text. Comparable across vocabularies; lower is better.",
    "steps": "Optimizer steps the GPT made in its time budget (a larger vocabulary makes each step slower).",
    "bytes/tok": "UTF-8 bytes of the held-out text per token (higher: each model position holds more text).",
    "tok/word": "Tokens per whitespace-separated word of the held-out text.",
    "vocab used": "Distinct ordinary token ids in the held-out encoding / ordinary vocabulary size.",
    "enc MB/s": "encode, one call per held-out paragraph (median of the timed rounds, interleaved across tokenizers).",
    "batch MB/s": "encode_batch, one call over all paragraphs with the given threads.",
    "train s": "Wall time of train_from_iterator in a fresh process (corpus reading included); '-' for loaded tokenizers.",
    "peak RSS MB": "Peak resident memory (VmHWM) of that training process; its RSS before training is in the JSON.",
    "round trip": ROUND_TRIP_DEFINITION + ". Checks: the held-out text, the adversarial cases, the extra samples.",
}


def _e(v: Any) -> str:
    return html.escape(str(v))


def _engine_styles(result: ComparisonResult) -> dict[str, dict[str, Any]]:
    """One colour per engine, one line style/marker per vocab size: the same in every plot."""
    engines = list(dict.fromkeys(t.engine for t in result.tokenizers))
    vocabs = sorted({t.vocab_size for t in result.tokenizers})
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    markers, styles = "os^Dv<>p", ["-", "--", ":", "-."]
    out = {}
    for t in result.tokenizers:
        e, v = engines.index(t.engine), vocabs.index(t.vocab_size)
        out[t.name] = {"color": colours[e % len(colours)], "marker": markers[v % len(markers)], "linestyle": styles[v % len(styles)]}
    return out


def _by_engine(result: ComparisonResult) -> dict[str, list[TokenizerResult]]:
    groups: dict[str, list[TokenizerResult]] = {}
    for t in sorted(result.tokenizers, key=lambda t: t.vocab_size):
        groups.setdefault(t.engine, []).append(t)
    return groups


def _vocab_axis(ax: Any, vocabs: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(vocabs)
    ax.set_xticklabels([f"{v:,}" for v in vocabs])
    ax.minorticks_off()
    lo, hi = min(vocabs), max(vocabs)
    ax.set_xlim(lo / 1.35, hi * 1.35)
    ax.set_xlabel("vocabulary size (tokens, log scale)")
    ax.grid(alpha=0.3)


def _vocab_plots(result: ComparisonResult, styles: dict[str, dict[str, Any]]) -> str:
    plt = pyplot()
    with_ds = result.sorted_by == SORT_BPB
    fig, axes = plt.subplots(1, 2 if with_ds else 1, figsize=(12.5 if with_ds else 6.5, 4.4), squeeze=False)
    vocabs = sorted({t.vocab_size for t in result.tokenizers})
    groups = _by_engine(result)
    ax = axes[0][0]
    for engine, ts in groups.items():
        st = styles[ts[0].name]
        ax.plot([t.vocab_size for t in ts], [t.heldout.bytes_per_token for t in ts], marker="o", color=st["color"], label=engine)
    _vocab_axis(ax, vocabs)
    ax.set_ylabel("held-out bytes per token (UTF-8 bytes)")
    ax.set_title("Compression (higher is better)")
    ax.legend(title="engine")
    if with_ds:
        ax = axes[0][1]
        for engine, ts in groups.items():
            st = styles[ts[0].name]
            ax.plot([t.vocab_size for t in ts], [t.bits_per_byte for t in ts], marker="o", color=st["color"], label=engine)
        _vocab_axis(ax, vocabs)
        ax.set_ylabel("held-out bits per byte (bits / UTF-8 byte)")
        ax.set_title(f"Same GPT, {result.config.downstream_seconds:g} s of training each (lower is better)")
        ax.legend(title="engine")
    fig.tight_layout()
    return png_img(fig, "bytes per token and downstream bits per byte against vocabulary size, per engine")


def _curve_plot(result: ComparisonResult, styles: dict[str, dict[str, Any]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12.5, 4.8))
    finals = []
    for t in result.tokenizers:
        ds = t.downstream
        st = styles[t.name]
        pts = [p for p in ds.curve if not math.isnan(p["bpb"])]
        ax.plot([p["seconds"] for p in pts], [p["bpb"] for p in pts], color=st["color"], linestyle=st["linestyle"],
                marker=st["marker"], markersize=3, label=t.name)
        ax.plot([ds.train_seconds], [ds.bits_per_byte], marker="*", markersize=12, color=st["color"], linestyle="none")
        finals.append(ds.bits_per_byte)
    later = [p["bpb"] for t in result.tokenizers for p in t.downstream.curve[1:] if not math.isnan(p["bpb"])]
    if later:  # the random-init point sits far above: keep the part where the tokenizers differ readable
        top = max(later) + 0.15 * (max(later) - min(later + finals) + 1e-9)
        ax.set_ylim(min(later + finals) - 0.05, top)
    ax.set_xlabel("GPT training time (s, optimizer steps only)")
    ax.set_ylabel("held-out bits per byte (bits / UTF-8 byte)")
    ax.set_title(f"Held-out bits per byte during training (lines: {result.config.eval_iters} held-out batches at the end "
                 "of each slice; stars: every held-out token, at the end)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize=9)
    fig.tight_layout()
    return png_img(fig, "held-out bits per byte over training time, per tokenizer")


def _length_plot(result: ComparisonResult, styles: dict[str, dict[str, Any]]) -> str:
    plt = pyplot()
    n = len(result.tokenizers)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False, sharey=True)
    labels = [*(str(k) for k in range(1, MAX_HIST_LEN + 1)), f">{MAX_HIST_LEN}"]
    xs = list(range(1, len(labels) + 1))
    for i, t in enumerate(sorted(result.tokenizers, key=lambda t: (t.engine, t.vocab_size))):
        ax = axes[i // cols][i % cols]
        hist = t.heldout.length_histogram
        total = max(sum(hist.values()), 1)
        ax.bar(xs, [100 * hist.get(k, 0) / total for k in labels], color=styles[t.name]["color"], width=0.85)
        ax.set_title(f"{t.name}: {t.heldout.bytes_per_token:.2f} bytes/token", fontsize=9)
        ax.set_xticks([1, 4, 8, 12, MAX_HIST_LEN + 1])
        ax.set_xticklabels(["1", "4", "8", "12", f">{MAX_HIST_LEN}"], fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        if i // cols == rows - 1 or i + cols >= n:
            ax.set_xlabel("token length (UTF-8 bytes)", fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("share of held-out tokens (%)", fontsize=9)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    return png_img(fig, "token-length histograms of the held-out text, per tokenizer")


def _summary_table(result: ComparisonResult) -> str:
    head, rows = table_rows(result)
    th = "".join(f"<th title='{_e(_DEFINITIONS.get(h, ''))}'>{_e(h)}</th>" for h in head)
    body = []
    for k, row in enumerate(rows):
        cells = []
        for i, c in enumerate(row):
            cls = "n" if i not in (1, len(row) - 1) else ""
            if i == len(row) - 1:
                cls = "bad" if "FAIL" in c else "ok"
            cells.append(f"<td class='{cls}'>{_e(c)}</td>")
        body.append(f"<tr{' class=best' if k == 0 else ''}>{''.join(cells)}</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def _kv_table(items: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items if v not in (None, "")) + "</table>"


def _round_trip_table(result: ComparisonResult) -> str:
    ts = result.tokenizers
    names = [c.name for c in ts[0].round_trip] if ts else []
    extra = list(ts[0].extra) if ts else []
    head = "".join(f"<th>{_e(t.name)}</th>" for t in ts)
    rows = []
    for k, name in enumerate(names):
        cells = []
        for t in ts:
            c = t.round_trip[k]
            cells.append(f"<td class='{'ok' if c.passed else 'bad'}' title='{_e(c.detail)}'>{'✔' if c.passed else '✘ ' + _e(c.detail)}</td>")
        rows.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    for label in extra:
        cells = []
        for t in ts:
            rt = t.extra[label]["round_trip"]
            cells.append(f"<td class='{'ok' if rt['passed'] else 'bad'}' title='{_e(rt['detail'])}'>{'✔' if rt['passed'] else '✘ ' + _e(rt['detail'])}</td>")
        rows.append(f"<tr><th>extra: {_e(label)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>check</th>{head}</tr>{''.join(rows)}</table>"


def _extra_table(result: ComparisonResult) -> str:
    ts = result.tokenizers
    labels = list(ts[0].extra) if ts else []
    if not labels:
        return ""
    head = "".join(f"<th>{_e(t.name)}</th>" for t in ts)
    rows = []
    for label in labels:
        size = result.corpus.get("extra_files", {}).get(label, {}).get("bytes")
        cells = "".join(
            f"<td class='n'>{t.extra[label]['bytes_per_token']:.3f} B/tok<br>{t.extra[label]['tokens_per_word']:.2f} tok/word</td>"
            for t in ts
        )
        rows.append(f"<tr><th>{_e(label)}{f' ({size:,} bytes)' if size else ''}</th>{cells}</tr>")
    return ("<h2>Extra samples</h2><p>Bytes per token and tokens per word on each <code>--extra_file</code>.</p>"
            f"<table><tr><th>sample</th>{head}</tr>{''.join(rows)}</table>")


def _newline_runs(text: str) -> str:
    """A run of 3+ newlines (an untrained model loves them) shown as one marked line break."""
    return re.sub(r"\n{3,}", lambda m: f" [{len(m.group())} newlines]\n", text)


def _samples(result: ComparisonResult) -> str:
    parts = [(
        "<h2>Greedy samples</h2><p>Each GPT continues the same held-out prompts (highlighted) with greedy "
        f"decoding, about {result.config.sample_bytes} bytes each.</p>"
    )]
    for t in result.tokenizers:
        if t.downstream is None or not t.downstream.samples:
            continue
        items = "".join(
            f"<div class='sample'><span class='prompt'>{_e(s['prompt'])}</span>{_e(_newline_runs(s['text']))}</div><hr>"
            for s in t.downstream.samples
        )
        parts.append(f"<h3>{_e(t.name)} (bpb {t.bits_per_byte:.4f})</h3>{items}")
    return "".join(parts)


def _machine(result: ComparisonResult) -> str:
    m = result.machine
    versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if v)
    load = m.get("load_average_start")
    load_end = m.get("load_average_end")
    return _kv_table([
        ("CPU", f"{m.get('cpu')} ({m.get('cpu_count')} logical cores)"),
        ("threads", m.get("threads")),
        ("GPT device / precision", f"{m.get('device')} / {m.get('precision')}" if m.get("device") else None),
        ("platform", m.get("platform")),
        ("Python", m.get("python")),
        ("packages", versions),
        ("load average (1/5/15 min) at start / end",
         f"{' '.join(f'{x:.2f}' for x in load)} / {' '.join(f'{x:.2f}' for x in load_end)}" if load and load_end else None),
        ("started (UTC)", result.started),
        ("wall time", f"{result.wall_seconds:.0f} s"),
    ])


def build_compare_report(result: ComparisonResult) -> str:
    """The HTML text of the report (see the module docstring)."""
    styles = _engine_styles(result)
    c = result.corpus
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Tokenizer comparison</title><style>{_CSS}</style></head><body>",
        "<h1>Tokenizer comparison</h1>",
        f"<pre>{_e(result.command) if result.command else '(Python API: compare_tokenizers)'}</pre>",
        _machine(result),
        "<h2>Data</h2>",
        _kv_table([
            ("training text", c.get("train")),
            ("held-out text", f"{c.get('heldout')}: {c.get('heldout_documents')} document(s), {c.get('heldout_bytes', 0):,} bytes"),
            ("extra samples", ", ".join(f"{k} ({v['bytes']:,} bytes)" for k, v in (c.get("extra_files") or {}).items())),
            ("work directory (kept)", c.get("work_dir")),
        ]),
        "<h2>Summary</h2>",
        f"<p class='verdict'>{_e(result.verdict())}.</p>",
        _summary_table(result),
        "<p>Hover a column name for its definition (all of them are at the bottom).</p>",
        "<h2>Vocabulary size</h2>",
        _vocab_plots(result, styles),
    ]
    if result.sorted_by == SORT_BPB:
        parts += ["<h2>Held-out bits per byte during training</h2>", _curve_plot(result, styles)]
    parts += [
        "<h2>Token lengths</h2>",
        _length_plot(result, styles),
        "<h2>Round trip</h2>",
        f"<p>{_e(ROUND_TRIP_DEFINITION)}.</p>",
        _round_trip_table(result),
        _extra_table(result),
    ]
    if result.sorted_by == SORT_BPB:
        parts.append(_samples(result))
    parts += [
        "<h2>Settings</h2>",
        _kv_table([(k, " ".join(map(str, v)) if isinstance(v, list) else v) for k, v in result.config.to_dict().items()]),
        "<h2>How the figures are measured</h2>",
        "<dl>" + "".join(f"<dt><b>{_e(k)}</b></dt><dd>{_e(v)}</dd>" for k, v in _DEFINITIONS.items()) + "</dl>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def write_compare_report(result: ComparisonResult, path: PathLike) -> Path:
    """Build the report and write it atomically; returns the path."""
    return write_html(path, build_compare_report(result))
