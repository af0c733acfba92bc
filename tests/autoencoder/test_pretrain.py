"""Auto-encoder pre-training: dataset split, checkpoints, keep-last, best, exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from microtransformer.errors import CheckpointError, ConfigError, CorpusError
from microtransformer.autoencoder.model import AutoEncoderConfig, load_autoencoder
from microtransformer.autoencoder.pretrain import (
    ChunkDataset,
    PretrainConfig,
    list_step_checkpoints,
    pretrain_autoencoder,
)

DOCS = [
    "\n".join(f"The quick brown fox {i} jumps over the lazy dog, said the teacher." for i in [j % 7 for j in range(60)]),
    "\n".join(f"hello world number {i}; it's a test of chunks and codes!" for i in [j % 5 for j in range(60)]),
]
TINY = AutoEncoderConfig.preset("tiny")
# with a small code memory, so its SparseAdam state is checkpointed and resumed too
TINY_MEM = dataclasses.replace(TINY, decoder_memory_size=512, decoder_memory_dim=8)


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
    assert s["train_occurrences"] + s["val_occurrences"] == sum(1 for d in DOCS for _ in __import__(
        "microtransformer.autoencoder.chunking", fromlist=["iter_chunks"]).iter_chunks(d))
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
    full = pretrain_autoencoder(DOCS, model_config=TINY_MEM, config=small_config(keep_last=2), checkpoint_dir=ckpt,
                                progress=False, extra_config={"data": {"corpus": "test"}})
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["checkpoint_best", "checkpoint_step_15", "checkpoint_step_20", "training_state.json"]
    assert [p.name for p in list_step_checkpoints(ckpt)] == ["checkpoint_step_15", "checkpoint_step_20"]
    final = ckpt / "checkpoint_step_20"
    assert {p.name for p in final.iterdir()} == {"model.safetensors", "config.json", "optimizer.safetensors", "training_state.json"}
    state = json.loads((final / "training_state.json").read_text())
    assert state["step"] == 20 and state["history"][-1]["step"] == 20
    assert {"loss", "char_accuracy", "distinct_codes", "distinct_chunks", "lr"} <= set(state["history"][-1])
    assert [e["step"] for e in state["evals"]] == [5, 10, 15, 20]
    best = json.loads((ckpt / "checkpoint_best" / "training_state.json").read_text())
    assert best["best"]["val_char_accuracy"] == max(e["val_char_accuracy"] for e in state["evals"])
    assert json.loads((final / "config.json").read_text())["data"] == {"corpus": "test"}
    assert not list(ckpt.glob(".tmp-*"))
    loaded = load_autoencoder(final)
    assert loaded.config == TINY_MEM
    opt = load_file(str(final / "optimizer.safetensors"))
    assert any(k.startswith("memory_optimizer.state.") for k in opt)

    # resume from an earlier run's step 10 with the same plan -> bit-identical step 20
    ckpt2 = tmp_path / "ckpt2"
    pretrain_autoencoder(DOCS, model_config=TINY_MEM, config=small_config(steps=10), checkpoint_dir=ckpt2, progress=False)
    # the first run planned 10 steps; continue the *same plan* of a 20-step run from run 1's step 15
    resumed = pretrain_autoencoder(DOCS, config=small_config(), resume=ckpt / "checkpoint_step_15",
                                   checkpoint_dir=tmp_path / "ckpt3", progress=False)
    assert resumed.step == 20
    a = load_file(str(final / "model.safetensors"))
    b = load_file(str(tmp_path / "ckpt3" / "checkpoint_step_20" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state3 = json.loads((tmp_path / "ckpt3" / "checkpoint_step_20" / "training_state.json").read_text())
    def strip(h: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h]

    assert strip(state3["history"]) == strip(state["history"])


def test_resume_continues_at_next_step(tmp_path: Path) -> None:
    """The issue's --resume ckpt/checkpoint_step_1000 --steps 2000, scaled down to 10 -> 20."""
    torch.set_num_threads(1)
    ckpt = tmp_path / "ckpt"
    first = pretrain_autoencoder(DOCS, model_config=TINY, config=small_config(steps=10, checkpoint_every=10),
                                 checkpoint_dir=ckpt, progress=False)
    assert first.step == 10 and (ckpt / "checkpoint_step_10").is_dir()
    second = pretrain_autoencoder(DOCS, config=small_config(steps=20, checkpoint_every=10),
                                  resume=ckpt / "checkpoint_step_10", checkpoint_dir=ckpt, progress=False)
    assert second.step == 20
    steps = [h["step"] for h in second.history]
    assert steps == [5, 10, 15, 20]  # history carried over, continued at 11
    assert [p.name for p in list_step_checkpoints(ckpt)] == ["checkpoint_step_10", "checkpoint_step_20"]
    with pytest.raises(ConfigError, match="already at step"):
        pretrain_autoencoder(DOCS, config=small_config(steps=20), resume=ckpt / "checkpoint_step_20",
                             checkpoint_dir=ckpt, progress=False)
    with pytest.raises(CheckpointError):
        pretrain_autoencoder(DOCS, config=small_config(steps=30), resume=ckpt / "checkpoint_step_7", progress=False)


def test_in_memory_training_improves() -> None:
    torch.set_num_threads(1)
    cfg = small_config(steps=300, eval_every=300, checkpoint_every=300, log_every=100, batch_size=64, warmup_steps=20,
                       min_lr_ratio=1.0)
    result = pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=None, progress=False)
    assert result.last_checkpoint is None and result.best_checkpoint is None
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.last_eval is not None and result.last_eval["char_accuracy"] > 0.6


def test_max_seconds_stops_with_a_checkpoint(tmp_path: Path) -> None:
    result = pretrain_autoencoder(DOCS, model_config=TINY, config=small_config(steps=1000, max_seconds=1e-9),
                                  checkpoint_dir=tmp_path, progress=False)
    assert result.step == 1
    assert [p.name for p in list_step_checkpoints(tmp_path)] == ["checkpoint_step_1"]
    with pytest.raises(ConfigError):
        PretrainConfig(max_seconds=-1)


def test_encoder_freezes_after_its_fraction(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = small_config(steps=20, encoder_fraction=0.5, checkpoint_every=5)
    pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=tmp_path, progress=False)
    s10 = load_file(str(tmp_path / "checkpoint_step_10" / "model.safetensors"))
    s20 = load_file(str(tmp_path / "checkpoint_step_20" / "model.safetensors"))
    enc = [k for k in s10 if k.startswith("encoder.")]
    dec = [k for k in s10 if k.startswith("decoder.")]
    assert enc and all(torch.equal(s10[k], s20[k]) for k in enc)  # frozen after step 10
    assert any(not torch.equal(s10[k], s20[k]) for k in dec)  # the decoder keeps learning
    state = json.loads((tmp_path / "checkpoint_step_20" / "training_state.json").read_text())
    assert state["history"][-1]["encoder_lr"] == 0.0 < state["history"][-1]["lr"]
    with pytest.raises(ConfigError):
        PretrainConfig(encoder_fraction=0.0)


def test_piece_share_trains_on_sub_chunk_pieces() -> None:
    from microtransformer.autoencoder.pretrain import _training_pieces

    torch.set_num_threads(1)
    ds = ChunkDataset.from_documents(DOCS, val_fraction=0.2, split_block_chars=200, seed=0)
    cfg = small_config(steps=300, eval_every=300, checkpoint_every=300, log_every=100, batch_size=64, warmup_steps=20,
                       min_lr_ratio=1.0, piece_share=0.3, n_pieces=40)
    pieces = _training_pieces(ds, cfg, 16)
    assert len(pieces) == 40 and pieces == _training_pieces(ds, cfg, 16)  # deterministic, so resume sees the same list
    assert not {p for p, _ in pieces} & set(ds.train_chunks)  # pieces, not chunks already trained on
    assert _training_pieces(ds, dataclasses.replace(cfg, piece_share=0.0), 16) == []
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
    a = load_file(str(full / "checkpoint_step_12" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoint_step_12" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = tmp_path / "plain"
    pretrain_autoencoder(DOCS, model_config=TINY, config=dataclasses.replace(cfg, augment_share=0.0), checkpoint_dir=plain,
                         progress=False)
    c = load_file(str(plain / "checkpoint_step_12" / "model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the variants did change what was trained on
    with pytest.raises(ConfigError, match="augment_share"):
        PretrainConfig(augment_share=1.0)
