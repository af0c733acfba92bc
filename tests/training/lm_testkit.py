"""Tiny models and in-memory data shared by the LM tests (CPU, fp32, a few seconds).

Imported as a plain module (pytest puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np
import torch

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.models import GPT, GPTConfig
from microtransformer.training.trainer import TrainConfig

VOCAB = 61  # not a multiple of 64: exercises the padded vocab


def make_data(block_size: int = 16) -> TokenArrayDataset:
    rng = np.random.default_rng(0)
    # a learnable pattern (counting mod VOCAB) with noise, so losses fall but differ per batch
    base = np.arange(4000) % VOCAB
    noise = rng.integers(0, VOCAB, size=4000)
    ids = np.where(rng.random(4000) < 0.2, noise, base)
    return TokenArrayDataset({"train": ids[:3500], "val": ids[3500:]}, block_size, vocab_size=VOCAB)


def make_model(dropout: float = 0.1, block_size: int = 16) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=block_size, dropout=dropout))


def make_config(**kw) -> TrainConfig:
    base = dict(
        max_steps=8, batch_size=4, grad_accum_steps=2, lr=3e-3, warmup_steps=2, eval_interval=4,
        eval_iters=2, keep_last=2, device="cpu", precision="fp32", seed=7,
    )
    base.update(kw)
    return TrainConfig(**base)



def assert_split_run_equals_full(full, first, second, full_dir, split_dir) -> None:
    """A run stopped and resumed (``first`` then ``second``) has the losses of one uninterrupted run (``full``) to the
    last bit, and its last checkpoint the same weights."""
    from microtransformer.training import checkpoint as ckpt

    assert [s.loss for s in first.history + second.history] == [s.loss for s in full.history]
    a, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(full_dir, "last"))
    b, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(split_dir, "last"))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
