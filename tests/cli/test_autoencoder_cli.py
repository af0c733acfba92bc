"""``mtx autoencoder``: pretrain -> resume -> export -> eval/compare -> analyze, end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from microtransformer.cli.main import main
from microtransformer.tokenization import MicroTransformerTokenizer

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "autoencoder_tiny.json"

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


def test_configs_are_valid() -> None:
    from microtransformer.cli.autoencoder import _load_config_file, _model_config
    from microtransformer.autoencoder.pretrain import PretrainConfig

    for name in ("autoencoder.json", "autoencoder_tiny.json"):
        model, pretrain = _load_config_file(str(REPO / "configs" / name))
        _model_config(model, None)
        PretrainConfig.from_dict(pretrain)


def test_end_to_end(tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    ck = tmp_path / "ck"
    common = ["--num_threads", "1"]
    assert main(["autoencoder", "pretrain", "--data_file", str(data_file), "--config", str(TINY_CONFIG),
                 "--checkpoint_dir", str(ck), "--no_progress", *common]) == 0
    assert (ck / "checkpoint_step_100").is_dir() and (ck / "checkpoint_step_200").is_dir() and (ck / "checkpoint_best").is_dir()

    # resume with hyphenated flag aliases: continues at 201 and ends with checkpoint_step_300
    assert main(["autoencoder", "pretrain", "--resume", str(ck / "checkpoint_step_200"), "--steps", "300",
                 "--checkpoint-every", "100", "--no-progress", *common]) == 0
    state = json.loads((ck / "checkpoint_step_300" / "training_state.json").read_text())
    assert state["step"] == 300
    assert [h["step"] for h in state["history"]][-7:] == [180, 200, 220, 240, 260, 280, 300]
    assert json.loads((ck / "checkpoint_step_300" / "config.json").read_text())["data"]["data_file"] == str(data_file)

    tok_dir = tmp_path / "tok"
    assert main(["autoencoder", "export", "--checkpoint", str(ck / "checkpoint_step_300"), "--vocab_size", "300",
                 "--output_dir", str(tok_dir), *common]) == 0
    tok = MicroTransformerTokenizer.from_pretrained(tok_dir)
    assert tok.engine_name == "autoencoder" and tok.vocab_size <= 300
    assert len(tok.codes) >= 10  # frequent chunks became single tokens
    assert tok.decode(tok.encode(TEXT[:500])) == TEXT[:500]

    before, after, final = (tmp_path / f"{p}.json" for p in ("before", "after", "final"))
    assert main(["autoencoder", "eval", "--phase", "before", "--model", str(ck / "checkpoint_step_300"), "--output", str(before), *common]) == 0
    assert main(["autoencoder", "eval", "--phase", "after", "--model", str(ck / "checkpoint_step_300"), "--output", str(after), *common]) == 0
    assert main(["autoencoder", "eval", "--phase", "final", "--model", str(tok_dir), "--output", str(final),
                 "--text_file", str(data_file), *common]) == 0
    b, a, f = (json.loads(p.read_text()) for p in (before, after, final))
    assert a["summary"]["val_char_accuracy"] > b["summary"]["val_char_accuracy"]
    after_fb = f["summary"]["after_fallback"]
    assert after_fb["sentences_perfect"] == after_fb["sentences_total"]  # lossless by construction
    assert after_fb["corpus_bytes_per_token"] > 1.0

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


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autoencoder", "export", "--checkpoint", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "t")]) == 2
    assert main(["autoencoder", "pretrain", "--config", str(tmp_path / "missing.json"), "--checkpoint_dir", str(tmp_path)]) == 2
    assert main(["autoencoder", "eval", "--compare", "x.json"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
