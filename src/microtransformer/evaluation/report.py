"""Self-contained HTML reports: page, tables and matplotlib plots inlined as base64 PNGs.

One ``.html`` file with no external assets, so a report can be attached or
opened offline. Plots use matplotlib's Agg backend, chosen explicitly so
reports work on headless machines and never open a window; matplotlib is
imported on first use only. The auto-encoder's report
(:mod:`microtransformer.autoencoder.report`) is built from these.

>>> html_table(["metric", "a"], [["loss", 0.5]])
'<table><tr><th>metric</th><th>a</th></tr><tr><td>loss</td><td>0.5000</td></tr></table>'
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from microtransformer.io import PathLike, atomic_write_text

__all__ = ["flatten", "format_value", "html_page", "html_table", "png_img", "pyplot", "write_html"]

logger = logging.getLogger(__name__)

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{white-space:pre-wrap}img{max-width:100%}"""


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


def format_value(v: Any) -> str:
    """A table cell: yes/no, 4 decimals, thousands separators, escaped text."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``a.b`` keys; lists and ``None`` left out (tables show scalars)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        elif v is not None and not isinstance(v, (list, tuple)):
            out[f"{prefix}{k}"] = v
    return out


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: bool = False) -> str:
    """A ``<table>``; cells go through :func:`format_value` unless ``raw`` (HTML already)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else format_value(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title: str, parts: Iterable[str]) -> str:
    """A whole HTML document: ``title`` as heading, then ``parts`` (empty ones skipped)."""
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
    return "\n".join([head, f"<h1>{html.escape(title)}</h1>", *(p for p in parts if p), "</body></html>"])


def write_html(path: PathLike, text: str) -> Path:
    """Write a report atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, text)
    logger.info("wrote report %s", path)
    return path
