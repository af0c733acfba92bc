"""``mtx train`` under ``torchrun`` end to end, on CPU with gloo: one node, two "nodes", SIGTERM, --resume.

The runs are shared between the tests of this module (module-scoped fixtures),
so the whole file costs four ``torchrun`` launches and one in-process run:

- ``standalone``: ``torchrun --standalone --nproc_per_node 2`` through
  ``torchrun_probe.py``, which records each rank's windows, writes and weights;
- ``stopped`` + ``resumed``: the same run, SIGTERM to the launcher after step 3,
  then ``torchrun ... -m microtransformer train --resume``;
- ``two_nodes``: two launchers, ``--nnodes 2 --node_rank 0|1``, one process each,
  training from text (rank 0 trains the tokenizer and prepares the shards);
- ``one_process``: plain ``mtx train`` with twice the per-rank batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from microtransformer.cli.main import main

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

SRC = Path(__file__).resolve().parents[2] / "src"
PROBE = Path(__file__).resolve().parent / "torchrun_probe.py"
STEPS, EVAL_EVERY, STOP_AT, B = 8, 4, 3, 2
MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--block_size", "16"]
TRAIN = [*MODEL, "--max_steps", str(STEPS), "--eval_interval", str(EVAL_EVERY), "--eval_iters", "2", "--warmup_steps", "2",
         "--lr", "3e-3", "--seed", "5", "--device", "cpu", "--precision", "fp32", "--num_threads", "1"]
# the two-node comparison trains with AdamW at one lr (its tolerance is argued for that); the other runs use the
# default recipe (Muon + AdamW), so DDP's rank agreement and exact resume are checked with Muon; all of them deal
# windows epoch by epoch as the default recipe does, so the one-process windows compare with the standalone ranks'
ADAMW = ["--recipe", "nanogpt", "--sampling", "epoch"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MTX_NUM_THREADS": "1",
            "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "60"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]  # torchrun of this very interpreter


def _run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _tail(proc) -> str:
    return f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-8000:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _last_checkpoint(run: Path) -> Path:
    return run / json.loads((run / "last.json").read_text())["checkpoint"]


def _evals(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"], r["val_loss"], r["val_bits_per_byte"]) for r in rows]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from pydoc_data.topics import topics

    from microtransformer.data.corpus import Corpus
    from microtransformer.data.prepare import prepare_shards
    from microtransformer.tokenization import MicroTransformerTokenizer

    root = tmp_path_factory.mktemp("ddp")
    text = root / "input.txt"
    text.write_text("".join(topics[k] for k in ("assignment", "if", "for", "while", "try", "with")), encoding="utf-8")
    tok = MicroTransformerTokenizer.train(text, vocab_size=300, show_progress=False)
    tok.save(root / "tok")
    prepare_shards(Corpus.from_file(text), tok, root / "shards", val_fraction=0.2, tokenizer_path=root / "tok",
                   show_progress=False)
    return {"root": root, "text": text, "tok": root / "tok", "shards": root / "shards"}


def _probe(data, name: str, *extra: str, sigterm_at: int | None = None) -> dict:
    record = data["root"] / f"{name}_record"
    record.mkdir()
    run = data["root"] / name
    stop = ["--sigterm_at", str(sigterm_at)] if sigterm_at else []
    proc = _run(_torchrun("--standalone", "--nproc_per_node", "2", str(PROBE), str(record), *stop, "train",
                          "--shards_dir", str(data["shards"]), "--out_dir", str(run), "--batch_size", str(B), *TRAIN, *extra))
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"proc": proc, "run": run, "ranks": ranks, "weights": [load_file(str(record / f"rank{r}.safetensors")) for r in (0, 1)]}


@pytest.fixture(scope="module")
def standalone(data) -> dict:
    out = _probe(data, "standalone", "--dropout", "0.1")
    assert out["proc"].returncode == 0, _tail(out["proc"])
    return out


@pytest.fixture(scope="module")
def stopped_and_resumed(data) -> dict:
    stopped = _probe(data, "stopped", "--dropout", "0.1", sigterm_at=STOP_AT)
    stopped["last"] = json.loads((stopped["run"] / "last.json").read_text())  # before the resume moves it on
    resumed = _run(_torchrun("--standalone", "--nproc_per_node", "2", "-m", "microtransformer", "train",
                             "--resume", str(stopped["run"]), "--num_threads", "1"))
    return {"stopped": stopped, "resumed": resumed}


@pytest.fixture(scope="module")
def two_nodes(data) -> dict:
    run = data["root"] / "two_nodes"
    port = str(_free_port())
    launchers = [
        subprocess.Popen(
            _torchrun("--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
                      "--master_port", port, "-m", "microtransformer", "train", "--data_file", str(data["text"]),
                      "--vocab_size", "300", "--val_fraction", "0.2", "--out_dir", str(run),
                      "--batch_size", str(B), "--dropout", "0", *TRAIN, *ADAMW),
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for node in (0, 1)
    ]
    outputs = [p.communicate(timeout=180) for p in launchers]
    return {"run": run, "codes": [p.returncode for p in launchers], "outputs": outputs}


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory) -> dict:
    """Plain ``mtx train`` in this process with the batch of both ranks together, recording its windows."""
    from microtransformer.data import loader

    run = tmp_path_factory.mktemp("single") / "run"
    windows: dict[int, list[int]] = {}
    real = loader.window_starts
    from microtransformer.training import trainer as trainer_module

    real_step = trainer_module.Trainer.train_step
    current: list = [None]

    def starts(*args, **kwargs):
        ix = real(*args, **kwargs)
        if current[0] is not None:
            windows.setdefault(current[0], []).extend(int(i) for i in ix)
        return ix

    def step(self):
        current[0] = self.step
        try:
            return real_step(self)
        finally:
            current[0] = None

    mp = pytest.MonkeyPatch()
    mp.setattr(loader, "window_starts", starts)
    mp.setattr(trainer_module.Trainer, "train_step", step)
    try:
        code = main(["train", "--data_file", str(data["text"]), "--vocab_size", "300", "--val_fraction", "0.2",
                     "--out_dir", str(run), "--batch_size", str(2 * B), "--dropout", "0", *TRAIN, *ADAMW])
    finally:
        mp.undo()
    assert code == 0
    return {"run": run, "windows": windows}


# ------------------------------------------------------------------ one node
def test_every_rank_draws_its_own_windows_and_together_one_process_s(standalone, one_process) -> None:
    r0, r1 = (r["windows"] for r in standalone["ranks"])
    assert sorted(r0) == sorted(r1) == [str(s) for s in range(STEPS)]
    for step in range(STEPS):
        a, b = r0[str(step)], r1[str(step)]
        assert len(a) == len(b) == B
        assert not set(a) & set(b), f"step {step}: ranks share windows {set(a) & set(b)}"
        assert a + b == one_process["windows"][step]  # rank 0's rows, then rank 1's: one process's batch of 2B


def test_weights_stay_identical_across_ranks_and_only_rank_0_writes(standalone) -> None:
    w0, w1 = standalone["weights"]
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert all(torch.equal(w0[k], v) for k, v in _weights(_last_checkpoint(standalone["run"])).items())
    writes0, writes1 = (r["writes"] for r in standalone["ranks"])
    assert writes1 == []
    assert any("metrics.jsonl" in w for w in writes0) and any("step_000008" in w for w in writes0)
    assert [r["code"] for r in standalone["ranks"]] == [0, 0]


# ---------------------------------------------------------- SIGTERM, resume
def test_sigterm_to_torchrun_saves_once_and_every_rank_exits(stopped_and_resumed) -> None:
    stopped = stopped_and_resumed["stopped"]
    assert stopped["proc"].returncode != 0  # torchrun reports the signal it got
    assert [r["code"] for r in stopped["ranks"]] == [143, 143]  # both ranks returned from training, neither was killed
    assert [r["step"] for r in stopped["ranks"]] == [STOP_AT, STOP_AT]
    log = stopped["proc"].stdout + stopped["proc"].stderr
    assert log.count("interrupted: saved") == 1
    assert stopped["last"]["step"] == STOP_AT
    assert stopped["ranks"][1]["writes"] == []
    saves = [w for w in stopped["ranks"][0]["writes"] if w.startswith("replace") and w.endswith("checkpoints/step_000003")]
    assert len(saves) == 1, saves  # the checkpoint of step 3 was put in place once


def test_resume_under_torchrun_continues_exactly(standalone, stopped_and_resumed) -> None:
    resumed = stopped_and_resumed["resumed"]
    assert resumed.returncode == 0, _tail(resumed)
    run = stopped_and_resumed["stopped"]["run"]
    assert _evals(run) == _evals(standalone["run"])  # train loss (EMA), val loss and bpb at steps 4 and 8
    expected = _weights(_last_checkpoint(standalone["run"]))
    got = _weights(_last_checkpoint(run))
    assert all(torch.equal(expected[k], got[k]) for k in expected)  # bit for bit, dropout on both ranks included


# ------------------------------------------------------ two nodes, one process
def test_two_nodes_equal_one_process_with_both_batches(two_nodes, one_process) -> None:
    """2 ranks x batch B == 1 process x batch 2B on the same windows, to fp32 reduction order.

    The math is the same: each rank's loss is the mean over its B windows, DDP
    averages the two gradients, and the mean of two equal-sized means is the
    mean over all 2B. What differs is the order of fp32 additions (per-rank
    sums, then gloo's all-reduce sum and the division by 2, against one sum
    over 2B), each off by about one ulp (1e-7 relative). AdamW divides the
    gradient by its running RMS, which can turn such a difference in a tiny
    gradient into a visible one in the update, so after 8 steps we allow
    1e-5 relative on losses and 1e-6 absolute on weights (updates are ~lr =
    3e-3): a different window or a missing all-reduce moves them by 1e-2 or more.
    """
    assert two_nodes["codes"] == [0, 0], two_nodes["outputs"][0][1][-3000:] + two_nodes["outputs"][1][1][-3000:]
    ddp, single = _evals(two_nodes["run"]), _evals(one_process["run"])
    assert [r[0] for r in ddp] == [r[0] for r in single] == [EVAL_EVERY, STEPS]
    np.testing.assert_allclose([r[1:] for r in ddp], [r[1:] for r in single], rtol=1e-5)
    a, b = _weights(_last_checkpoint(two_nodes["run"])), _weights(_last_checkpoint(one_process["run"]))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    # rank 0 trained the tokenizer and prepared the shards from text (the same ones one process makes), the
    # other rank waited and read them; the run directory's lock is gone
    metas = [json.loads((r / "data" / "meta.json").read_text()) for r in (two_nodes["run"], one_process["run"])]
    assert metas[0]["tokenizer_fingerprint"] == metas[1]["tokenizer_fingerprint"]
    for f in ("train_00000.bin", "val_00000.bin"):
        assert (two_nodes["run"] / "data" / f).read_bytes() == (one_process["run"] / "data" / f).read_bytes(), f
    assert not (two_nodes["run"] / ".lock").exists()


def test_autoencoder_pretrain_refuses_torchrun(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["autoencoder", "pretrain", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: mtx autoencoder pretrain runs on one process, but torchrun started 2 (WORLD_SIZE=2); "
                   "run it without torchrun (on CUDA it uses one GPU; choose it with CUDA_VISIBLE_DEVICES)")
