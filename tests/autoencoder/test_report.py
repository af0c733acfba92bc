"""HTML report: self-contained, tables and embedded PNGs, read from the result dataclasses."""

from __future__ import annotations

from microtransformer.autoencoder.codebook import analyze_codebook
from microtransformer.autoencoder.evaluate import evaluate_model
from microtransformer.autoencoder.report import build_report, write_report
from microtransformer.autoencoder.results import PretrainHistory
from microtransformer.evaluation.report import html_table

from autoencoder_testkit import EVAL_SENTENCES as SENTENCES


def test_report_has_tables_and_plots(tiny_model, tiny_counts, tmp_path) -> None:
    result = evaluate_model(tiny_model, sentences=SENTENCES, phase="after")
    history = PretrainHistory.from_json(  # the earlier training_state.json form
        {
            "step": 20,
            "history": [{"step": s, "loss": 1.0 / s, "char_accuracy": s / 20, "lr": 1e-3} for s in (10, 20)],
            "evals": [{"step": 20, "val_loss": 0.1, "val_char_accuracy": 0.9, "val_exact_rate": 0.8}],
        }
    )
    assert history.evals[0].exact_chunk_rate == 0.8
    analysis = analyze_codebook(tiny_model, tiny_counts, ks=(4, 16))
    html = build_report(results={"before": result, "after": result}, history=history, codebook=analysis)
    assert html.startswith("<!doctype html>") and html.count("data:image/png;base64,") == 2
    assert "before" in html and "sentences_perfect" in html and "grid_utilization" in html
    assert "Training curves (step 20)" in html
    assert "<script" not in html and "http" not in html  # self-contained
    path = write_report(tmp_path / "r.html", results={"after": result})
    assert path.read_text().count("<img") == 0 and "hello world" in path.read_text()


def test_html_table_escapes_and_formats() -> None:
    assert html_table(["a", "b"], [["<x>", 1234], [True, 0.5]]) == (
        "<table><tr><th>a</th><th>b</th></tr><tr><td>&lt;x&gt;</td><td>1,234</td></tr>"
        "<tr><td>yes</td><td>0.5000</td></tr></table>"
    )
