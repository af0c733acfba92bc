"""``mtx autoencoder``: pretrain -> resume -> export -> eval/compare -> analyze, end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from microtransformer.autoencoder.config import PRESETS, AutoEncoderConfig, PretrainConfig, read_preset
from microtransformer.cli.main import main
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.training import checkpoint as run_format

TEXT = "\n".join(
    f"The quick brown fox {i % 9} jumps over the lazy dog. Hello, world! It's chunk number {i % 13}; "
    "to be, or not to be: that is the question."
    for i in range(300)
)


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    f = tmp_path / "corpus.txt"
    f.write_text(TEXT, encoding="utf-8")
    return f


def test_presets_are_valid() -> None:
    for name in PRESETS:
        AutoEncoderConfig.preset(name)
        PretrainConfig.preset(name)
    assert read_preset("default").model == read_preset("default").pretrain == {}  # the dataclass defaults
    assert read_preset("configs/autoencoder_tiny.json") == read_preset("tiny")  # where a checkout kept it before


def test_end_to_end(tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    ck = tmp_path / "ck"
    common = ["--num_threads", "1"]
    assert main(["autoencoder", "pretrain", "--data_file", str(data_file), "--config", "tiny",
                 "--checkpoint_dir", str(ck), "--no_progress", *common]) == 0
    assert {"step_000100", "step_000200"} <= {p.name for p in run_format.list_checkpoints(ck)}
    assert (ck / "best.json").is_file() and (ck / "last.json").is_file()

    # resume with hyphenated flag aliases: continues at 201 and ends with checkpoint_step_300
    assert main(["autoencoder", "pretrain", "--resume", str(ck / "checkpoint_step_200"), "--steps", "300",
                 "--checkpoint-every", "100", "--no-progress", *common]) == 0
    meta = json.loads((ck / "checkpoints" / "step_000300" / "meta.json").read_text())
    assert meta["step"] == 300 and meta["train_config"]["steps"] == 300
    steps = [r["step"] for r in run_format.read_metrics(ck) if "loss" in r]
    assert steps[-7:] == [180, 200, 220, 240, 260, 280, 300] and len(steps) == len(set(steps))
    assert json.loads((ck / "run.json").read_text())["data"]["data_file"] == str(data_file)

    tok_dir = tmp_path / "tok"
    assert main(["autoencoder", "export", "--checkpoint", str(ck / "checkpoint_step_300"), "--vocab_size", "300",
                 "--output_dir", str(tok_dir), *common]) == 0
    tok = MicroTransformerTokenizer.from_pretrained(tok_dir)
    assert tok.engine_name == "autoencoder" and tok.vocab_size <= 300
    assert len(tok.codes) >= 10  # frequent chunks became single tokens
    assert tok.decode(tok.encode(TEXT[:500])) == TEXT[:500]

    before, after, final = (tmp_path / f"{p}.json" for p in ("before", "after", "final"))
    # --model is the earlier spelling of --checkpoint
    assert main(["autoencoder", "eval", "--phase", "before", "--model", str(ck / "checkpoint_step_300"), "--output", str(before), *common]) == 0
    assert main(["autoencoder", "eval", "--phase", "after", "--checkpoint", str(ck / "checkpoint_step_300"), "--output", str(after), *common]) == 0
    assert main(["autoencoder", "eval", "--phase", "final", "--checkpoint", str(tok_dir), "--output", str(final),
                 "--text_file", str(data_file), *common]) == 0
    b, a, f = (json.loads(p.read_text()) for p in (before, after, final))
    assert a["val"]["char_accuracy"] > b["val"]["char_accuracy"]
    after_fb = f["after_fallback"]
    assert after_fb["sentences_perfect"] == after_fb["sentences_total"]  # lossless by construction
    assert after_fb["texts"]["corpus"]["bytes_per_token"] > 1.0

    report = tmp_path / "report.html"
    assert main(["autoencoder", "eval", "--compare", str(before), str(after), str(final), "--report", str(report),
                 "--training_state", str(ck)]) == 0
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 1 and "before" in html and "after" in html

    analysis = tmp_path / "analysis.json"
    assert main(["autoencoder", "analyze", "--checkpoint", str(tok_dir), "--ks", "16", "64", "--output", str(analysis),
                 "--heldout_file", str(data_file), "--report", str(tmp_path / "codebook.html"), *common]) == 0
    an = json.loads(analysis.read_text())
    assert [r["k"] for r in an["topk"]] == [16, 64] and an["tokenizer"] is not None
    emitted = {i for i in tok.encode_ordinary(data_file.read_text(encoding="utf-8")) if 256 <= i < tok.n_ordinary}
    assert an["tokenizer"]["ids_used_heldout"] == len(emitted) > 0
    assert an["tokenizer"]["id_utilization"] == len(emitted) / len(tok.codes)
    assert "grid_utilization" in an["summary"] and "vocab_utilization" in an["topk"][0]
    out = capsys.readouterr().out
    assert "grid utilization" in out

    # the run format is shared, the model kinds are not: LM commands refuse an auto-encoder run in one line
    assert main(["sample", "--ckpt", str(ck), "--prompt", "hi"]) == 2
    assert main(["train", "--resume", str(ck), "--max_steps", "400"]) == 2
    err = capsys.readouterr().err
    assert "is a 'chunk_autoencoder' run, not a language model" in err and len(err.strip().splitlines()) == 2
    assert "Traceback" not in err


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autoencoder", "export", "--checkpoint", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "t")]) == 2
    assert main(["autoencoder", "pretrain", "--config", str(tmp_path / "missing.json"), "--checkpoint_dir", str(tmp_path)]) == 2
    assert main(["autoencoder", "eval", "--compare", "x.json"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
