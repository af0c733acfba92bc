"""Trainer: grad accumulation == full batch, exact resume, checkpoints, typed errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from microtransformer.errors import CheckpointError, ConfigError, DataError
from microtransformer.data.loader import TokenArrayDataset
from microtransformer.models import GPT, GPTConfig, LSTMConfig, LSTMLanguageModel
from microtransformer.training import checkpoint as ckpt
from microtransformer.training.distributed import detect_distributed
from microtransformer.training.trainer import TrainConfig, Trainer, accumulate_gradients

from lm_testkit import VOCAB, make_config, make_data, make_model



def test_grad_accumulation_equals_full_batch():
    data = make_data()
    x, y = data.get_batch("train", 8, np.random.default_rng(1))
    full = make_model(dropout=0.0)
    accum = copy.deepcopy(full)
    loss_full = accumulate_gradients(full, [(x, y)], 1)
    micro = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)]
    loss_accum = accumulate_gradients(accum, micro, 4)
    torch.testing.assert_close(loss_accum, loss_full, rtol=1e-6, atol=1e-6)
    for (name, p), q in zip(full.named_parameters(), accum.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize(("precision", "sampling"), [("fp32", "random"), ("bf16", "random"), ("fp32", "epoch")])
def test_exact_resume_cpu(tmp_path, precision, sampling):
    """2N steps in one go == N steps, stop, resume for N: same losses to the last bit (fp32; bf16 autocast too)."""
    data = make_data()
    cfg = make_config(max_steps=8, eval_interval=3, precision=precision, sampling=sampling)  # saves not aligned with N
    full = Trainer(make_model(), data, cfg, tmp_path / "full", show_progress=False).fit()

    first = Trainer(make_model(), data, cfg, tmp_path / "split", show_progress=False).fit(stop_at_step=4)
    assert first.step == 4 and (tmp_path / "split" / "last.json").is_file()
    torch.manual_seed(12345)  # disturb the global RNG: resume must restore it
    second = Trainer.resume(tmp_path / "split", data, show_progress=False).fit()

    losses_full = [s.loss for s in full.history]
    losses_split = [s.loss for s in first.history + second.history]
    assert losses_split == losses_full  # bitwise equal floats
    a, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(tmp_path / "full", "last"))
    b, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(tmp_path / "split", "last"))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


class RecordingData(TokenArrayDataset):
    """Token ids equal to their positions, so a window's first input id is its start."""

    def __init__(self, n_tokens: int, block_size: int) -> None:
        ids = np.arange(n_tokens)
        super().__init__({"train": ids, "val": ids[:64]}, block_size, vocab_size=n_tokens)
        self.starts: list[int] = []

    def get_batch(self, split, batch_size, rng=None, **kw):
        x, y = super().get_batch(split, batch_size, rng, **kw)
        if split == "train":
            self.starts += x[:, 0].tolist()
        return x, y


@pytest.mark.parametrize("sampling", ["random", "epoch"])
def test_sampling_epoch_reads_every_window_once_per_epoch(tmp_path, sampling):
    T = 16
    data = RecordingData(T * 25 + 1, T)  # 24 windows an epoch: 3 steps of 4 x 2 micro-batches
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=data.vocab_size, n_layer=1, n_head=1, n_embd=16, block_size=T))
    cfg = make_config(max_steps=6, eval_interval=100, sampling=sampling)
    Trainer(model, data, cfg, tmp_path / "run", show_progress=False).fit()
    first, second = data.starts[:24], data.starts[24:]
    if sampling == "random":  # nanoGPT's draw: some windows twice, some text not at all
        assert len(set(first)) < 24 or len({s % T for s in first}) > 1
        return
    for epoch in (first, second):
        assert len(set(epoch)) == 24 and len({s % T for s in epoch}) == 1
    assert first != second


def test_checkpoints_layout_keep_last_best_and_no_compile_prefix(tmp_path):
    data = make_data()
    cfg = make_config(max_steps=10, eval_interval=2, keep_last=2)
    result = Trainer(make_model(), data, cfg, tmp_path / "run", show_progress=False).fit()
    run = tmp_path / "run"
    steps = [p.name for p in ckpt.list_checkpoints(run)]
    best = json.loads((run / "best.json").read_text())["checkpoint"].split("/")[-1]
    assert steps[-2:] == ["step_000008", "step_000010"]
    assert set(steps) <= {"step_000008", "step_000010", best}
    assert json.loads((run / "last.json").read_text())["step"] == 10
    assert not any(p.name.startswith(".tmp") for p in (run / "checkpoints").iterdir())
    from safetensors import safe_open

    with safe_open(run / "checkpoints" / "step_000010" / ckpt.MODEL_FILE, "pt") as f:
        keys = list(f.keys())
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in keys)
    assert "lm_head.weight" not in keys  # tied weight stored once
    meta = json.loads((run / "checkpoints" / "step_000010" / ckpt.META_FILE).read_text())
    assert meta["aliases"] == {"lm_head.weight": "transformer.wte.weight"}
    assert result.evals and result.best_val_loss == min(e.loss for _, e in result.evals)
    assert (run / "metrics.jsonl").read_text().count("\n") == 5
    # the loss fell
    assert result.history[-1].loss < result.history[0].loss


def test_lstm_trains_and_reloads(tmp_path):
    data = make_data()
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=VOCAB, n_embd=16, n_hidden=32, block_size=16))
    Trainer(model, data, make_config(max_steps=4), tmp_path / "lstm", show_progress=False).fit()
    loaded, info = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(tmp_path / "lstm", "best"))
    assert isinstance(loaded, LSTMLanguageModel) and info.step == 4


def test_eval_bits_per_byte_uses_token_bytes(tmp_path):
    data = make_data()
    token_bytes = np.full(VOCAB, 2, dtype=np.int64)
    token_bytes[0] = 0  # a "special" token: excluded from bpb
    trainer = Trainer(make_model(dropout=0.0), data, make_config(), tmp_path / "r", token_bytes=token_bytes, show_progress=False)
    ev = trainer.evaluate("val", iters=2)
    assert ev.tokens == 2 * 4 * 16
    assert ev.perplexity == pytest.approx(np.exp(ev.loss))
    # most targets have 2 bytes: bpb is close to loss / ln2 / 2
    assert ev.bits_per_byte == pytest.approx(ev.loss / np.log(2) / 2, rel=0.1)


def test_existing_run_dir_is_not_overwritten(tmp_path):
    data = make_data()
    Trainer(make_model(), data, make_config(max_steps=2), tmp_path / "run", show_progress=False).fit()
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(make_model(), data, make_config(max_steps=2), tmp_path / "run", show_progress=False)
    assert before == {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}


def test_truncated_safetensors_is_a_typed_error_and_nothing_is_written(tmp_path):
    data = make_data()
    Trainer(make_model(), data, make_config(max_steps=4, eval_interval=4), tmp_path / "run", show_progress=False).fit()
    weights = tmp_path / "run" / "checkpoints" / "step_000004" / ckpt.MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        Trainer.resume(tmp_path / "run", data, overrides={"max_steps": 8}, show_progress=False)
    assert before == {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}


def test_run_dir_without_metadata(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="run.json"):
        Trainer.resume(tmp_path / "empty", make_data(), show_progress=False)
    data = make_data()
    Trainer(make_model(), data, make_config(max_steps=2), tmp_path / "run", show_progress=False).fit()
    (tmp_path / "run" / "checkpoints" / "step_000002" / ckpt.META_FILE).unlink()
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        ckpt.resolve_checkpoint(tmp_path / "run", "last")


def test_model_vocab_mismatch_with_data_and_tokenizer():
    class FakeTok:
        vocab_size = VOCAB + 1

    data = make_data()
    wrong = GPT(make_model().config.__class__(**{**make_model().config.to_dict(), "vocab_size": VOCAB + 3}))
    with pytest.raises(DataError, match="vocab_size"):
        Trainer(wrong, data, make_config(), "unused", show_progress=False)
    with pytest.raises(CheckpointError, match="not the tokenizer"):
        Trainer(make_model(), data, make_config(), "unused", tokenizer=FakeTok(), show_progress=False)


def test_block_size_larger_than_model_context():
    with pytest.raises(ConfigError, match="block_size"):
        Trainer(make_model(block_size=8), make_data(block_size=16), make_config(), "unused", show_progress=False)


def test_train_config_validation():
    with pytest.raises(ConfigError):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"n_embed": 3})


def test_single_process_without_torchrun(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    env = detect_distributed()
    assert env.world_size == 1 and env.is_main and not env.is_distributed


class _InterruptingData:
    """Wraps a data source and sends SIGINT to this process while step ``at`` draws its batch."""

    def __init__(self, data, at: int) -> None:
        self.data, self.at, self.calls = data, at, 0
        self.block_size, self.vocab_size = data.block_size, data.vocab_size

    def get_batch(self, split, batch_size, rng=None):
        if split == "train":
            self.calls += 1
            if self.calls == self.at:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGINT)
        return self.data.get_batch(split, batch_size, rng)


def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    data = make_data()
    cfg = make_config(max_steps=6, grad_accum_steps=1, eval_interval=100)
    full = Trainer(make_model(), data, cfg, tmp_path / "full", show_progress=False).fit()
    result = Trainer(make_model(), _InterruptingData(data, at=3), cfg, tmp_path / "run", show_progress=False).fit()
    assert result.interrupted and result.step == 3
    assert json.loads((tmp_path / "run" / "last.json").read_text())["step"] == 3
    rest = Trainer.resume(tmp_path / "run", data, show_progress=False).fit()
    assert [s.loss for s in result.history + rest.history] == [s.loss for s in full.history]


def test_compile_failure_falls_back_to_eager(tmp_path, monkeypatch):
    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

        def forward(self, *a, **k):
            raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda m: Broken(m))
    trainer = Trainer(make_model(), make_data(), make_config(max_steps=2, compile=True), tmp_path / "r", show_progress=False)
    result = trainer.fit()
    assert result.step == 2 and not trainer._compiled


class _IgnoringSource:
    """Wraps a data source: every other target becomes -100 (ignored); remembers the batches it gave."""

    def __init__(self, data):
        self.data = data
        self.block_size = data.block_size
        self.vocab_size = data.vocab_size
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def get_batch(self, split, batch_size, rng=None):
        x, y = self.data.get_batch(split, batch_size, rng)
        y = y.clone()
        y[:, ::2] = -100
        self.batches.append((x, y))
        return x, y


@pytest.mark.parametrize("model_kind", ["gpt", "lstm"])
def test_trainer_ignores_minus_100_targets(tmp_path, model_kind):
    """Train and eval losses, token counts and bits per byte leave -100 targets out."""
    data = _IgnoringSource(make_data())
    if model_kind == "gpt":
        model = make_model(dropout=0.0)
    else:
        torch.manual_seed(0)
        model = LSTMLanguageModel(LSTMConfig(vocab_size=VOCAB, n_embd=16, n_hidden=32, block_size=16))
    token_bytes = np.ones(VOCAB, dtype=np.int64)
    trainer = Trainer(model, data, make_config(grad_accum_steps=1, eval_iters=2), tmp_path / "run",
                      token_bytes=token_bytes, show_progress=False)
    ev = trainer.evaluate("val", iters=2)
    (x0, y0), (x1, y1) = data.batches[-2:]
    kept = [(model(x)[0][y != -100], y[y != -100]) for x, y in ((x0, y0), (x1, y1))]
    with torch.no_grad():
        logits = torch.cat([lg for lg, _ in kept])
        targets = torch.cat([t for _, t in kept])
        want = torch.nn.functional.cross_entropy(logits, targets).item()
    assert ev.tokens == targets.numel() == y0.numel()  # half of 2 batches of (B, T)
    assert ev.loss == pytest.approx(want, rel=1e-6)
    assert ev.bits_per_byte == pytest.approx(want / np.log(2), rel=1e-6)  # 1 byte per counted token
    before = copy.deepcopy(trainer.raw_model)
    log = trainer.train_step()
    x, y = data.batches[-1]
    with torch.no_grad():
        logits = before(x)[0]
        want = torch.nn.functional.cross_entropy(logits[y != -100], y[y != -100]).item()
    assert log.loss == pytest.approx(want, rel=1e-5)


def test_negative_seed_is_a_config_error():
    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        make_config(seed=-1)
