"""Auto-encoder pre-training: dataset split, the run format (keep-last, best, metrics), exact resume, stop signals."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from microtransformer.autoencoder.chunking import iter_chunks
from microtransformer.autoencoder.checkpoint import load_autoencoder, open_checkpoint
from microtransformer.autoencoder.config import AutoEncoderConfig, PretrainConfig
from microtransformer.autoencoder.dataset import ChunkDataset, training_pieces
from microtransformer.autoencoder.pretrain import Pretrainer, pretrain_autoencoder
from microtransformer.autoencoder.results import PretrainHistory
from microtransformer.errors import CheckpointError, ConfigError, CorpusError
from microtransformer.training import checkpoint as run_format

DOCS = [
    "\n".join(f"The quick brown fox {i} jumps over the lazy dog, said the teacher." for i in [j % 7 for j in range(60)]),
    "\n".join(f"hello world number {i}; it's a test of chunks and codes!" for i in [j % 5 for j in range(60)]),
]
TINY = AutoEncoderConfig.preset("tiny")
# with a small code memory, so its SparseAdam state is checkpointed and resumed too
TINY_MEM = dataclasses.replace(TINY, decoder_memory_size=512, decoder_memory_dim=8)


def steps_of(run: Path) -> list[str]:
    return [p.name for p in run_format.list_checkpoints(run)]


def history(run: Path) -> PretrainHistory:
    return PretrainHistory.from_records(run_format.read_metrics(run))


def saved_steps(h: PretrainHistory, every: int) -> list[str]:
    """The step checkpoints a run keeps: every ``every`` steps, and each evaluation that was a new best."""
    best, steps = -1.0, set()
    for e in h.evals:
        if e.char_accuracy > best or e.step % every == 0:
            steps.add(e.step)
        best = max(best, e.char_accuracy)
    return [run_format.checkpoint_name(s) for s in sorted(steps)]


def strip(h: PretrainHistory) -> list[dict]:
    return [{k: v for k, v in t.to_record().items() if k != "elapsed_s"} for t in h.train] + [e.to_record() for e in h.evals]


def small_config(**kw) -> PretrainConfig:
    base = dict(steps=20, batch_size=32, warmup_steps=2, eval_every=5, checkpoint_every=5, log_every=5,
                split_block_chars=200, val_fraction=0.2, lr=3e-3)
    base.update(kw)
    return PretrainConfig(**base)


def test_dataset_split_and_order() -> None:
    ds = ChunkDataset.from_documents(DOCS, val_fraction=0.2, split_block_chars=200, seed=0)
    assert ds.train_chunks and ds.val_chunks
    assert ds.train_counts == sorted(ds.train_counts, reverse=True)
    s = ds.summary()
    assert s["train_occurrences"] + s["val_occurrences"] == sum(1 for d in DOCS for _ in iter_chunks(d))
    assert 0.0 <= s["val_unseen_occurrence_rate"] < 0.5
    # deterministic
    assert ChunkDataset.from_documents(DOCS, val_fraction=0.2, split_block_chars=200, seed=0).fingerprint == ds.fingerprint
    with pytest.raises(CorpusError):
        ChunkDataset.from_documents([""])


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        PretrainConfig(steps=0)
    with pytest.raises(ConfigError):
        PretrainConfig(sample_alpha=2.0)
    with pytest.raises(ConfigError):
        PretrainConfig.from_dict({"stepz": 3})
    assert PretrainConfig.from_dict(PretrainConfig().to_dict()) == PretrainConfig()


def test_checkpoints_keep_last_best_and_exact_resume(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    ckpt = tmp_path / "ckpt"
    pretrain_autoencoder(DOCS, model_config=TINY_MEM, config=small_config(keep_last=2), checkpoint_dir=ckpt,
                         progress=False, run_info={"data": {"corpus": "test"}})
    h = history(ckpt)
    best_step = max(h.evals, key=lambda e: (e.char_accuracy, -e.step)).step
    assert steps_of(ckpt) == sorted({"step_000015", "step_000020", run_format.checkpoint_name(best_step)})
    assert {p.name for p in ckpt.iterdir()} - {".lock"} == {"run.json", "metrics.jsonl", "last.json", "best.json", "checkpoints"}
    final = ckpt / "checkpoints" / "step_000020"
    assert {p.name for p in final.iterdir()} == {"model.safetensors", "trainer_state.safetensors", "meta.json"}
    meta = json.loads((final / "meta.json").read_text())
    assert meta["step"] == 20 and meta["model"]["kind"] == "chunk_autoencoder"
    assert [t.step for t in h.train] == [5, 10, 15, 20] and [e.step for e in h.evals] == [5, 10, 15, 20]
    assert {"loss", "char_accuracy", "distinct_codes", "distinct_chunks", "lr"} <= set(h.train[-1].to_record())
    assert meta["best"]["val_char_accuracy"] == max(e.char_accuracy for e in h.evals)
    assert run_format.resolve_checkpoint(ckpt, "best").name == run_format.checkpoint_name(best_step)
    assert json.loads((ckpt / "run.json").read_text())["data"] == {"corpus": "test"}
    assert not list(ckpt.glob(".tmp-*")) and not list((ckpt / "checkpoints").glob(".tmp-*"))
    assert load_autoencoder(ckpt, "last").config == TINY_MEM
    state = load_file(str(final / "trainer_state.safetensors"))
    assert any(k.startswith("memory_optimizer.state.") for k in state) and "rng.sampler" in state

    # resume from step 15 into another folder with the same plan -> bit-identical step 20 and history
    resumed = pretrain_autoencoder(DOCS, config=small_config(), resume=ckpt / "checkpoint_step_15",
                                   checkpoint_dir=tmp_path / "ckpt3", progress=False)
    assert resumed.step == 20
    a = load_file(str(final / "model.safetensors"))
    b = load_file(str(tmp_path / "ckpt3" / "checkpoints" / "step_000020" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert strip(history(tmp_path / "ckpt3")) == strip(h) == strip(resumed.history)
    assert "step_000015" in steps_of(tmp_path / "ckpt3")  # the new folder starts with the checkpoint it resumed


def test_resume_continues_at_next_step(tmp_path: Path) -> None:
    """``--resume ckpt/checkpoint_step_1000 --steps 2000``, scaled down to 10 -> 20."""
    torch.set_num_threads(1)
    ckpt = tmp_path / "ckpt"
    first = pretrain_autoencoder(DOCS, model_config=TINY, config=small_config(steps=10, checkpoint_every=10),
                                 checkpoint_dir=ckpt, progress=False)
    assert first.step == 10 and steps_of(ckpt) == saved_steps(first.history, 10)
    second = pretrain_autoencoder(DOCS, config=small_config(steps=20, checkpoint_every=10),
                                  resume=ckpt / "checkpoint_step_10", checkpoint_dir=ckpt, progress=False)
    assert second.step == 20
    assert [t.step for t in second.history.train] == [5, 10, 15, 20]  # history carried over, continued at 11
    assert [t.step for t in history(ckpt).train] == [5, 10, 15, 20]  # and in metrics.jsonl, each step once
    assert steps_of(ckpt) == saved_steps(second.history, 10) and steps_of(ckpt)[-2:] == ["step_000010", "step_000020"]
    assert open_checkpoint(ckpt / "checkpoint_step_20").step == 20  # ends with a checkpoint_step_20 name
    with pytest.raises(ConfigError, match="already at step"):
        pretrain_autoencoder(DOCS, config=small_config(steps=20), resume=ckpt / "checkpoint_step_20",
                             checkpoint_dir=ckpt, progress=False)
    with pytest.raises(CheckpointError):
        pretrain_autoencoder(DOCS, config=small_config(steps=30), resume=ckpt / "checkpoint_step_7", progress=False)
    with pytest.raises(CheckpointError, match="already holds"):  # a fresh run never writes over another
        pretrain_autoencoder(DOCS, model_config=TINY, config=small_config(steps=2), checkpoint_dir=ckpt, progress=False)


def test_stop_signal_saves_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (as Ctrl-C) finishes the step, saves, stops; the resumed run equals an uninterrupted one."""
    torch.set_num_threads(1)
    cfg = small_config(steps=12, checkpoint_every=100, eval_every=100, log_every=1)
    pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=tmp_path / "full", progress=False)
    step = Pretrainer.train_step

    def step_then_kill(self: Pretrainer):
        stats = step(self)
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return stats

    monkeypatch.setattr(Pretrainer, "train_step", step_then_kill)
    stopped = pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=tmp_path / "run", progress=False)
    monkeypatch.undo()
    assert stopped.interrupted and stopped.stop_signal == signal.SIGTERM and stopped.step == 5
    assert steps_of(tmp_path / "run") == ["step_000005"]
    pretrain_autoencoder(DOCS, config=cfg, resume=tmp_path / "run", checkpoint_dir=tmp_path / "run", progress=False)
    assert [t.loss for t in history(tmp_path / "run").train] == [t.loss for t in history(tmp_path / "full").train]


def test_in_memory_training_improves() -> None:
    torch.set_num_threads(1)
    cfg = small_config(steps=300, eval_every=300, checkpoint_every=300, log_every=100, batch_size=64, warmup_steps=20,
                       min_lr_ratio=1.0)
    result = pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=None, progress=False)
    assert result.last_checkpoint is None and result.best_checkpoint is None and result.run_dir is None
    assert result.history.train[-1].loss < result.history.train[0].loss
    assert result.last_eval is not None and result.last_eval.char_accuracy > 0.6


def test_max_seconds_stops_with_a_checkpoint(tmp_path: Path) -> None:
    result = pretrain_autoencoder(DOCS, model_config=TINY, config=small_config(steps=1000, max_seconds=1e-9),
                                  checkpoint_dir=tmp_path, progress=False)
    assert result.step == 1 and result.time_limited and not result.interrupted
    assert steps_of(tmp_path) == ["step_000001"]
    with pytest.raises(ConfigError):
        PretrainConfig(max_seconds=-1)


def test_encoder_freezes_after_its_fraction(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = small_config(steps=20, encoder_fraction=0.5, checkpoint_every=5)
    pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=tmp_path, progress=False)
    s10 = load_file(str(tmp_path / "checkpoints" / "step_000010" / "model.safetensors"))
    s20 = load_file(str(tmp_path / "checkpoints" / "step_000020" / "model.safetensors"))
    enc = [k for k in s10 if k.startswith("encoder.")]
    dec = [k for k in s10 if k.startswith("decoder.")]
    assert enc and all(torch.equal(s10[k], s20[k]) for k in enc)  # frozen after step 10
    assert any(not torch.equal(s10[k], s20[k]) for k in dec)  # the decoder keeps learning
    last = history(tmp_path).train[-1]
    assert last.encoder_lr == 0.0 < last.lr
    with pytest.raises(ConfigError):
        PretrainConfig(encoder_fraction=0.0)


def test_piece_share_trains_on_sub_chunk_pieces() -> None:
    torch.set_num_threads(1)
    ds = ChunkDataset.from_documents(DOCS, val_fraction=0.2, split_block_chars=200, seed=0)
    cfg = small_config(steps=300, eval_every=300, checkpoint_every=300, log_every=100, batch_size=64, warmup_steps=20,
                       min_lr_ratio=1.0, piece_share=0.3, n_pieces=40)
    pieces = training_pieces(ds, n_pieces=40, piece_share=0.3, max_len=16)
    assert len(pieces) == 40 and pieces == training_pieces(ds, n_pieces=40, piece_share=0.3, max_len=16)  # resume: the same list
    assert not {p for p, _ in pieces} & set(ds.train_chunks)  # pieces, not chunks already trained on
    assert training_pieces(ds, n_pieces=40, piece_share=0.0, max_len=16) == []
    strings = [p for p, _ in pieces]

    def piece_exact(piece_share: float) -> float:
        result = pretrain_autoencoder(dataset=ds, model_config=TINY, config=dataclasses.replace(cfg, piece_share=piece_share),
                                      checkpoint_dir=None, progress=False)
        decoded, _ = result.model.reconstruct(strings)
        return sum(d == s for d, s in zip(decoded, strings)) / len(strings)

    with_pieces, without = piece_exact(0.3), piece_exact(0.0)
    assert with_pieces > without + 0.3, (with_pieces, without)
    with pytest.raises(ConfigError):
        PretrainConfig(piece_share=1.0)
    with pytest.raises(ConfigError):
        PretrainConfig(n_pieces=-1)


def test_augmented_run_resumes_exactly(tmp_path: Path) -> None:
    """Synthetic variants draw from the saved sampler RNG, so resume stays bit-identical with them on."""
    torch.set_num_threads(1)
    cfg = small_config(steps=12, checkpoint_every=6, eval_every=6, augment_share=0.5)
    full = tmp_path / "full"
    pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=full, progress=False)
    resumed = tmp_path / "resumed"
    pretrain_autoencoder(DOCS, config=cfg, resume=full / "checkpoint_step_6", checkpoint_dir=resumed, progress=False)
    a = load_file(str(full / "checkpoints" / "step_000012" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_000012" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = tmp_path / "plain"
    pretrain_autoencoder(DOCS, model_config=TINY, config=dataclasses.replace(cfg, augment_share=0.0), checkpoint_dir=plain,
                         progress=False)
    c = load_file(str(plain / "checkpoints" / "step_000012" / "model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the variants did change what was trained on
    with pytest.raises(ConfigError, match="augment_share"):
        PretrainConfig(augment_share=1.0)
