"""``mtx train`` run directories: reproducible seeds, clean stops, one writer, nothing stale or repeated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from microtransformer.cli.main import main
from microtransformer.training import checkpoint as ckpt
from microtransformer.training.trainer import Trainer

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--block_size", "16", "--batch_size", "2",
        "--eval_iters", "1", "--eval_interval", "2", "--warmup_steps", "1", "--dropout", "0.1", "--device", "cpu"]


@pytest.fixture(scope="module")
def shards(tiny_data) -> Path:
    return tiny_data["shards"]


def train(shards: Path, run: Path, *extra: str) -> int:
    return main(["train", "--shards_dir", str(shards), "--out_dir", str(run), *TINY, *extra])


def weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    model, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(run, which))
    return model.state_dict()


def losses(run: Path) -> list[tuple[int, float, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in map(json.loads, lines)]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_seed_gives_bit_identical_weights_and_losses(tmp_path, shards) -> None:
    assert train(shards, tmp_path / "a", "--seed", "7", "--max_steps", "2") == 0
    assert train(shards, tmp_path / "b", "--seed", "7", "--max_steps", "2") == 0
    assert train(shards, tmp_path / "c", "--seed", "8", "--max_steps", "2") == 0
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    # the seed is what decides: another seed, other initial weights
    a, c = weights(tmp_path / "a"), weights(tmp_path / "c")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def _sigterm_after(monkeypatch, step: int) -> None:
    original = Trainer.train_step

    def train_step(self):
        log = original(self)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or a job scheduler would
        return log

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_sigterm_saves_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path, shards, monkeypatch, capsys) -> None:
    full, split = tmp_path / "full", tmp_path / "split"
    assert train(shards, full, "--seed", "3", "--max_steps", "5") == 0  # default schedule: warmup + cosine
    with monkeypatch.context() as m:
        _sigterm_after(m, 3)
        assert train(shards, split, "--seed", "3", "--max_steps", "5") == 143
    assert json.loads((split / "last.json").read_text())["step"] == 3
    # what kill -9 leaves: a half-built checkpoint folder and a metrics line logged past the last checkpoint
    stale = split / ckpt.CHECKPOINTS_DIR / f".tmp-step_000004-{2**22 + 1}-123"
    stale.mkdir()
    (stale / ckpt.MODEL_FILE).write_bytes(b"half")
    with open(split / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "train_loss": 9.9, "val_loss": 9.9}) + "\n")
    assert main(["train", "--resume", str(split)]) == 0
    assert not stale.exists()
    assert_same_weights(weights(full), weights(split))
    assert losses(split) == losses(full)  # steps 2, 4, 5: none repeated, bit-identical losses


def test_a_run_without_a_checkpoint_restarts_in_place(tmp_path, shards, capsys) -> None:
    run = tmp_path / "run"
    assert train(shards, run, "--max_steps", "2") == 0
    # what SIGKILL before the first save leaves: run.json (and metrics), no checkpoint
    for p in (run / ckpt.CHECKPOINTS_DIR).iterdir():
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    for name in ("last.json", "best.json"):
        (run / name).unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint yet" in err and "start it again in place" in err
    assert train(shards, run, "--max_steps", "2") == 0
    assert json.loads((run / "last.json").read_text())["step"] == 2
    assert [s for s, _, _ in losses(run)] == [2]
    # once it has a checkpoint, a fresh run there is refused
    assert train(shards, run, "--max_steps", "2") == 2
    assert "--resume" in capsys.readouterr().err


def _holder(directory: Path) -> subprocess.Popen:
    code = ("import sys, time; from microtransformer.io import DirectoryLock; "
            "DirectoryLock(sys.argv[1], purpose='mtx train').acquire(); print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_one_writer_per_run_checkpoint_and_shards_directory(tmp_path, shards, capsys) -> None:
    run = tmp_path / "run"
    assert train(shards, run, "--max_steps", "2") == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    text = tmp_path / "t.txt"
    text.write_text("some text for the auto-encoder, some more text\n" * 50)
    tok = shards.parent / "tok"
    proc = _holder(run)
    try:
        capsys.readouterr()
        commands = {
            "train": ["train", "--shards_dir", str(shards), "--out_dir", str(run), *TINY, "--max_steps", "4"],
            "resume": ["train", "--resume", str(run), "--max_steps", "4"],
            "data prepare": ["data", "prepare", "--tokenizer_path", str(tok), "--data_file", str(text),
                             "--output_dir", str(run), "--overwrite"],
            "autoencoder pretrain": ["autoencoder", "pretrain", "--data_file", str(text), "--preset", "tiny",
                                     "--steps", "2", "--checkpoint_dir", str(run), "--no_progress"],
        }
        for name, argv in commands.items():
            assert main(argv) == 2, name
            err = capsys.readouterr().err
            assert f"in use by process {proc.pid}" in err, (name, err)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before
    assert main(["train", "--resume", str(run), "--max_steps", "4"]) == 0  # kill -9 left no stale lock


def test_cli_schedule_is_the_library_default(tmp_path, shards) -> None:
    assert train(shards, tmp_path / "cos", "--max_steps", "2") == 0
    assert train(shards, tmp_path / "const", "--max_steps", "2", "--no-use_cosine") == 0
    read = lambda run: json.loads((run / "run.json").read_text())["train_config"]["use_cosine"]  # noqa: E731
    assert read(tmp_path / "cos") is True and read(tmp_path / "const") is False


def test_sample_takes_a_checkpoint_dir_short_step_names_and_top_k_0(tmp_path, shards, capsys) -> None:
    run = tmp_path / "run"
    assert train(shards, run, "--max_steps", "4", "--keep_last", "5", "--num_threads", "1") == 0
    capsys.readouterr()
    common = ["--prompt", "The ", "--max_new_tokens", "6", "--temperature", "0", "--num_threads", "1"]
    assert main(["sample", "--ckpt", str(run), "--checkpoint", "step_000002", *common]) == 0
    reference = capsys.readouterr().out
    assert main(["sample", "--ckpt", str(run), "--checkpoint", "step_2", *common]) == 0
    assert capsys.readouterr().out == reference
    assert main(["sample", "--ckpt", str(run / "checkpoints" / "step_000002"), *common]) == 0
    assert capsys.readouterr().out == reference
    assert main(["sample", "--ckpt", str(run), "--checkpoint", "step_2", "--top_k", "0", "--seed", "1",
                 "--temperature", "0.8", "--prompt", "The ", "--max_new_tokens", "6"]) == 0
    assert main(["sample", "--ckpt", str(run), "--checkpoint", "step_3", *common]) == 2
    assert "available: step_000002, step_000004" in capsys.readouterr().err


def test_pointer_files_cannot_point_outside_the_run(tmp_path, shards, capsys) -> None:
    run = tmp_path / "run"
    assert train(shards, run, "--max_steps", "2") == 0
    outside = tmp_path / "elsewhere" / "step_000002"
    (tmp_path / "elsewhere").mkdir()
    (run / "checkpoints" / "step_000002").rename(outside)
    for target in ("../elsewhere/step_000002", str(outside), "checkpoints/../../elsewhere/step_000002"):
        (run / "last.json").write_text(json.dumps({"checkpoint": target, "step": 2}))
        (run / "best.json").write_text(json.dumps({"checkpoint": target, "step": 2}))
        capsys.readouterr()
        assert main(["sample", "--ckpt", str(run), "--checkpoint", "last"]) == 2
        err = capsys.readouterr().err
        assert "not a checkpoint inside" in err or "plain file name" in err, err
