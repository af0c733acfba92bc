"""Bad input on the command line: one row per class of mistake, each a one-line message and the right exit code.

Exit codes (see ``microtransformer.cli.main``): 2 for a bad flag, value or file
content; 1 for an operating-system error (permission denied, disk full); 141
when the reader of our output goes away (``| head``). Never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from microtransformer.cli.main import main
from microtransformer.tokenization.base import CONFIG_FILE

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--block_size", "16", "--batch_size", "2",
        "--eval_iters", "1", "--eval_interval", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def ctx(tiny_data) -> dict[str, Path]:
    """A text file, a tokenizer, shards and a 2-step run: what the bad commands are aimed at."""
    run = tiny_data["root"] / "run"
    assert main(["train", "--shards_dir", str(tiny_data["shards"]), "--out_dir", str(run), *TINY, "--max_steps", "2"]) == 0
    return {**tiny_data, "run": run}


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# Each row: (id, build(ctx, tmp, fx) -> argv, exit code, text the message must contain);
# fx: .mp (monkeypatch), .deny (make a path unreadable), .later (run at teardown)
def permission_corpus(c, tmp, fx):
    f = tmp / "locked.txt"
    f.write_text("text\n")
    fx.deny(f)
    return ["tokenizer", "train", "--data_file", str(f), "--output_dir", str(tmp / "tok")]


def permission_output(c, tmp, fx):
    ro = tmp / "readonly"
    ro.mkdir()
    fx.deny(ro)
    return ["tokenizer", "train", "--data_file", str(c["text"]), "--output_dir", str(ro / "tok")]


def disk_full(c, tmp, fx):
    run = _copy_tree(c["run"], tmp / "run")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    fx.mp.setattr(os, "fsync", no_space)  # every atomic write ends with fsync: the first save fails
    return ["train", "--resume", str(run), "--max_steps", "4"]


def bad_pattern(c, tmp, fx):
    return ["tokenizer", "train", "--data_file", str(c["text"]), "--pattern", "(?<x", "--output_dir", str(tmp / "t")]


def other_engines_option(c, tmp, fx):
    return ["tokenizer", "train", "--data_file", str(c["text"]), "--engine", "bpe", "--normalization", "nfkc",
            "--output_dir", str(tmp / "t")]


def output_dir_is_a_file(command):
    def build(c, tmp, fx):
        f = tmp / "a_file"
        f.write_text("not a folder")
        return {
            "tokenizer train": ["tokenizer", "train", "--data_file", str(c["text"]), "--output_dir", str(f)],
            "data prepare": ["data", "prepare", "--tokenizer_path", str(c["tok"]), "--data_file", str(c["text"]),
                             "--output_dir", str(f)],
            "quickstart": ["quickstart", "--out_dir", str(f)],
        }[command]

    return build


def invalid_utf8_encode(c, tmp, fx):
    return ["tokenizer", "encode", "--tokenizer_path", str(c["tok"]), "\udcff"]  # what Python makes of $'\xff'


def invalid_utf8_prompt(c, tmp, fx):
    return ["sample", "--ckpt", str(c["run"]), "--prompt", "abc\udcff"]


def ae_eval_missing_text(c, tmp, fx):
    return ["autoencoder", "eval", "--phase", "final", "--model", str(tmp), "--text_file", str(tmp / "none.txt")]


def ae_eval_non_utf8_text(c, tmp, fx):
    f = tmp / "latin1.txt"
    f.write_bytes("café".encode("latin-1"))
    return ["autoencoder", "eval", "--phase", "final", "--model", str(tmp), "--text_file", str(f)]


def ae_eval_damaged_config(c, tmp, fx):
    ckpt = tmp / "checkpoint_step_2"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model": {"d_model": 3')
    (ckpt / "model.safetensors").write_bytes(b"\0" * 16)
    return ["autoencoder", "eval", "--phase", "after", "--model", str(ckpt), "--no_val"]


def ae_compare_not_results(c, tmp, fx):
    f = tmp / "not_results.json"
    f.write_text(json.dumps({"hello": "world"}))
    return ["autoencoder", "eval", "--compare", str(f), "--report", str(tmp / "r.html")]


def engine_is_a_list(c, tmp, fx):
    tok = _copy_tree(c["tok"], tmp / "tok")
    cfg = json.loads((tok / CONFIG_FILE).read_text())
    cfg["engine"] = ["bpe"]
    (tok / CONFIG_FILE).write_text(json.dumps(cfg))
    return ["tokenizer", "encode", "--tokenizer_path", str(tok), "hello"]


def shard_ids_out_of_range(c, tmp, fx):
    shards = _copy_tree(c["shards"], tmp / "shards")
    train = np.memmap(shards / "train_00000.bin", dtype=np.uint16, mode="r+")
    train[5] = 60000
    train.flush()
    return ["train", "--shards_dir", str(shards), "--out_dir", str(tmp / "run"), *TINY, "--max_steps", "2"]


def shard_unknown_dtype(c, tmp, fx):
    shards = _copy_tree(c["shards"], tmp / "shards")
    meta = json.loads((shards / "meta.json").read_text())
    meta["dtype"] = "float128"
    (shards / "meta.json").write_text(json.dumps(meta))
    return ["train", "--shards_dir", str(shards), "--out_dir", str(tmp / "run"), *TINY, "--max_steps", "2"]


def tokenizer_file_outside(c, tmp, fx):
    tok = _copy_tree(c["tok"], tmp / "tok")
    cfg = json.loads((tok / CONFIG_FILE).read_text())
    cfg["files"]["../../../../etc/passwd"] = cfg["files"].pop("tokenizer.tiktoken")
    (tok / CONFIG_FILE).write_text(json.dumps(cfg))
    return ["tokenizer", "encode", "--tokenizer_path", str(tok), "hello"]


def pointer_outside(c, tmp, fx):
    run = _copy_tree(c["run"], tmp / "run")
    (run / "last.json").write_text(json.dumps({"checkpoint": "../../elsewhere/step_000002", "step": 2}))
    return ["sample", "--ckpt", str(run), "--checkpoint", "last"]


def directory_in_use(c, tmp, fx):
    held = tmp / "shards_out"
    code = ("import sys, time; from microtransformer.io import DirectoryLock; "
            "DirectoryLock(sys.argv[1], purpose='mtx data prepare').acquire(); print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(held)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    fx.later(lambda: (proc.kill(), proc.wait()))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return ["data", "prepare", "--tokenizer_path", str(c["tok"]), "--data_file", str(c["text"]), "--output_dir", str(held)]


def jsonl_record_without_text(c, tmp, fx):
    f = tmp / "corpus.jsonl"
    f.write_text('{"text": "fine"}\n{"title": "no text here"}\n')
    return ["data", "prepare", "--tokenizer_path", str(c["tok"]), "--data_file", str(f), "--output_dir", str(tmp / "s")]


def truncated_zstd(c, tmp, fx):
    import zstandard

    f = tmp / "corpus.txt.zst"
    whole = zstandard.ZstdCompressor().compress(c["text"].read_bytes())
    f.write_bytes(whole[: len(whole) // 2])
    return ["tokenizer", "train", "--data_file", str(f), "--output_dir", str(tmp / "tok")]


def autoencoder_under_torchrun(c, tmp, fx):
    fx.mp.setenv("RANK", "0")
    fx.mp.setenv("WORLD_SIZE", "2")
    return ["autoencoder", "pretrain", "--data_file", str(c["text"]), "--checkpoint_dir", str(tmp / "ae")]


def size_zero(*flags):
    def build(c, tmp, fx):
        return [a.format(**{k: str(v) for k, v in c.items()}, tmp=tmp) for a in flags]

    return build


def env_threads_zero(c, tmp, fx):
    fx.mp.setenv("MTX_NUM_THREADS", "0")
    return ["sample", "--ckpt", str(c["run"]), "--max_new_tokens", "2"]


ROWS = [
    ("permission denied: corpus file", permission_corpus, 1, "Permission denied"),
    ("permission denied: output dir", permission_output, 1, "permission denied"),
    ("disk full on save", disk_full, 1, "No space left on device"),
    ("bad --pattern", bad_pattern, 2, "not a valid regex"),
    ("option for another engine", other_engines_option, 2, "does not take normalization"),
    ("--output_dir is a file: tokenizer train", output_dir_is_a_file("tokenizer train"), 2, "is an existing file"),
    ("--output_dir is a file: data prepare", output_dir_is_a_file("data prepare"), 2, "is an existing file"),
    ("--output_dir is a file: quickstart", output_dir_is_a_file("quickstart"), 2, "is an existing file"),
    ("invalid UTF-8 argument: encode", invalid_utf8_encode, 2, "not valid UTF-8"),
    ("invalid UTF-8 argument: sample --prompt", invalid_utf8_prompt, 2, "not valid UTF-8"),
    ("autoencoder eval: missing --text_file", ae_eval_missing_text, 2, "does not exist"),
    ("autoencoder eval: non-UTF-8 --text_file", ae_eval_non_utf8_text, 2, "not valid UTF-8"),
    ("autoencoder eval: damaged config.json", ae_eval_damaged_config, 2, "damaged or not JSON"),
    ("autoencoder eval --compare: not a results file", ae_compare_not_results, 2, "not a results file"),
    ("tokenizer config: engine is a list", engine_is_a_list, 2, "unknown tokenizer engine"),
    ("tokenizer config: a file name leaving the folder", tokenizer_file_outside, 2, "not a plain file name"),
    ("last.json pointing outside the run", pointer_outside, 2, "not a checkpoint inside"),
    ("directory in use by another process", directory_in_use, 2, "in use by process"),
    ("hand-damaged shards: ids out of range", shard_ids_out_of_range, 2, "holds token id 60000"),
    ("hand-damaged shards: unknown dtype", shard_unknown_dtype, 2, "dtype 'float128'"),
    ("a .jsonl record without --text_field", jsonl_record_without_text, 2, "line 2 has no field 'text'"),
    ("a truncated .zst corpus", truncated_zstd, 2, "is not a complete zstd file"),
    ("autoencoder pretrain under torchrun", autoencoder_under_torchrun, 2, "runs on one process"),
    ("--max_piece_chars 0", size_zero("data", "prepare", "--tokenizer_path", "{tok}", "--data_file", "{text}",
                                      "--output_dir", "{tmp}/s", "--max_piece_chars", "0"), 2, "must be at least 1"),
    ("--num_threads 0", size_zero("train", "--shards_dir", "{shards}", "--out_dir", "{tmp}/r", "--num_threads", "0"),
     2, "must be at least 1"),
    ("--num_samples 0", size_zero("sample", "--ckpt", "{run}", "--num_samples", "0"), 2, "must be at least 1"),
    ("analyze --ks 0 -5", size_zero("autoencoder", "analyze", "--checkpoint", "{tmp}", "--ks", "0", "-5"), 2,
     "must be at least 1"),
    ("--block_size -1", size_zero("train", "--shards_dir", "{shards}", "--block_size", "-1"), 2, "must be at least 1"),
    ("MTX_NUM_THREADS=0", env_threads_zero, 2, "MTX_NUM_THREADS must be a positive integer"),
]


@pytest.mark.parametrize("build, code, needle", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_command(ctx, tmp_path, monkeypatch, deny, request, capsys, build, code: int, needle: str) -> None:
    argv = build(ctx, tmp_path, SimpleNamespace(mp=monkeypatch, deny=deny, later=request.addfinalizer))
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    messages = [line for line in lines if line.startswith("error:")]
    assert len(messages) == 1 and messages[0] == lines[-1], err  # one line, and the last thing printed
    assert needle in messages[0], messages[0]


def test_disk_full_keeps_the_old_checkpoint(ctx, tmp_path, monkeypatch, deny, capsys) -> None:
    from microtransformer.training import checkpoint as ckpt

    argv = disk_full(ctx, tmp_path, SimpleNamespace(mp=monkeypatch, deny=deny))
    assert main(argv) == 1
    monkeypatch.undo()
    run = tmp_path / "run"
    assert json.loads((run / "last.json").read_text())["step"] == 2
    model, info = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(run, "last"))
    assert info.step == 2
    assert main(["train", "--resume", str(run), "--max_steps", "4"]) == 0  # and it can continue once there is room


def test_a_closed_pipe_ends_sampling_quietly(ctx) -> None:
    """``mtx sample --stream | head``: the reader goes away; one line on stderr, exit 141, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "microtransformer", "sample", "--ckpt", str(ctx["run"]), "--stream",
         "--num_samples", "1000", "--max_new_tokens", "200", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None and proc.stdout.read(1)
    proc.stdout.close()  # what `head -c 1` does
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines()[-1] == "stopped: the output pipe was closed"
