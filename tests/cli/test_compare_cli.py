"""``mtx tokenizer compare`` end to end on the built-in corpus: two engines, one vocab size, a few seconds of GPT."""

from __future__ import annotations

import base64
import json
import re

import pytest

from microtransformer.cli.main import main
from microtransformer.evaluation.tokenizer_metrics import ADVERSARIAL_CASES

ENGINES = ("bpe", "sentencepiece")
TINY_GPT = ["--n_layer", "2", "--n_head", "2", "--n_embd", "64", "--block_size", "64", "--batch_size", "8"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    code = out / "sample.py"
    code.write_text("def f(x):\r\n    return {'é': x ** 2}  # 東京\n", encoding="utf-8")
    argv = ["tokenizer", "compare", "--corpus", "builtin", "--engines", *ENGINES, "--vocab_sizes", "512",
            "--downstream_seconds", "2", "--slice_seconds", "1", "--threads", "1", *TINY_GPT, "--n_samples", "2",
            "--extra_file", f"code={code}", "--json", str(out / "c.json"), "--report", str(out / "c.html"),
            "--work_dir", str(out / "work"), "--no_progress"]
    return argv, out


def test_compare_end_to_end(compared, capsys) -> None:
    argv, out = compared
    assert main(argv) == 0  # 0: every round-trip check passed
    printed = capsys.readouterr().out
    data = json.loads((out / "c.json").read_text())

    # JSON: the run, then one entry per tokenizer with every figure
    assert data["sorted_by"] == "downstream_bpb" and data["command"].startswith("mtx tokenizer compare --corpus builtin")
    assert data["config"]["engines"] == list(ENGINES) and data["config"]["vocab_sizes"] == [512]
    assert data["machine"]["threads"] == 1 and data["machine"]["cpu_count"] >= 1
    assert data["corpus"]["heldout_bytes"] > 10_000 and data["corpus"]["extra_files"]["code"]["bytes"] > 0
    toks = data["tokenizers"]
    assert sorted(t["engine"] for t in toks) == sorted(ENGINES) and {t["vocab_size"] for t in toks} == {512}
    for t in toks:
        h, ds, tr = t["heldout"], t["downstream"], t["training"]
        assert h["bytes"] == data["corpus"]["heldout_bytes"] and h["tokens"] > 0
        assert h["bytes_per_token"] == pytest.approx(h["bytes"] / h["tokens"])
        assert h["tokens_per_word"] == pytest.approx(h["tokens"] / h["words"])
        assert 0 < h["vocab_share_used"] <= 1 and sum(h["length_histogram"].values()) == h["tokens"]
        assert t["encode"]["single_mb_s"] > 0 and t["encode"]["batch_mb_s"] > 0
        assert tr["seconds"] > 0 and tr["peak_rss_mb"] >= tr["baseline_rss_mb"] > 0
        assert ds["steps"] > 0 and ds["train_seconds"] >= 1.9 and 0 < ds["bits_per_byte"] < 8
        assert ds["heldout_bytes"] == h["bytes"]  # every held-out byte scored once
        assert ds["curve"][0]["seconds"] == 0 and ds["curve"][-1]["step"] == ds["steps"] and len(ds["curve"]) >= 3
        assert len(ds["samples"]) == 2 and all(s["prompt"] for s in ds["samples"])
        assert t["bits_per_byte"] == ds["bits_per_byte"]
        # every round-trip check passed: held-out text, each adversarial case, special tokens, the extra file
        names = [c["name"] for c in t["round_trip"]]
        assert names[0] == "held-out text" and set(ADVERSARIAL_CASES) <= set(names)
        assert {"special-token text (ordinary)", "special tokens (allowed)"} <= set(names)
        assert all(c["passed"] for c in t["round_trip"]) and t["extra"]["code"]["round_trip"]["passed"]
        assert t["round_trip_ok"] is True

    # the table: best (lowest bits per byte) first, in the JSON's order
    bpbs = [t["bits_per_byte"] for t in toks]
    assert bpbs == sorted(bpbs)
    rows = [line.split() for line in printed.splitlines() if re.match(r"^\d+\s+\S+-512\s", line)]
    assert [r[1] for r in rows] == [t["name"] for t in toks] and [r[0] for r in rows] == ["1", "2"]
    assert [float(r[3]) for r in rows] == [round(b, 4) for b in bpbs]
    assert all(r[-1] == f"{len(toks[0]['round_trip']) + 1}/{len(toks[0]['round_trip']) + 1}" for r in rows)
    assert "lowest held-out bits per byte" in printed

    # the report: self-contained, its plots embedded as PNGs, the command and machine at the top
    html = (out / "c.html").read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3  # vocab-size plots, bpb over time, token-length histograms
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "<script" not in html and 'src="http' not in html and "<link" not in html
    assert html.index("mtx tokenizer compare") < html.index("CPU") < html.index("<h2>Summary")
    assert html.count("✘") == 0 and html.count("✔") == sum(len(t["round_trip"]) + 1 for t in toks)

    # the work dir keeps what was built
    assert (out / "work" / "tokenizers" / "bpe-512" / "microtransformer.json").is_file()


def test_compare_bad_input_is_one_line(tmp_path, capsys) -> None:
    for argv in (["--vocab_sizes", "0"], ["--extra_file", "nameless"], ["--engines", "nope"],
                 ["--n_embd", "30", "--n_head", "4"], ["--heldout_file", str(tmp_path / "missing.txt")]):
        assert main(["tokenizer", "compare", "--corpus", "builtin", "--downstream_seconds", "0", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    work = tmp_path / "w"
    (work / "x").mkdir(parents=True)
    assert main(["tokenizer", "compare", "--work_dir", str(work), "--downstream_seconds", "0"]) == 2
    assert "not empty" in capsys.readouterr().err
