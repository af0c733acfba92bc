"""A tiny GPT trainer over a tokenized text, shared by the tests of the training-window rewrites (new_names,
typography). Imported as a plain module (pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.models import GPT, GPTConfig
from microtransformer.training.trainer import TrainConfig, Trainer


def tiny_trainer(tok: Any, ids: np.ndarray, run_dir: Path, *, tokenizer: Any = None, **rewrites: float) -> tuple[Trainer, GPT]:
    """6 steps of a 1-layer GPT on ``ids`` (the last 500 for validation), with the window ``rewrites`` given."""
    data = TokenArrayDataset({"train": ids[:-500], "val": ids[-500:]}, 16, vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32, block_size=16))
    cfg = TrainConfig(max_steps=6, batch_size=4, eval_interval=3, eval_iters=1, device="cpu", precision="fp32",
                      seed=3, **rewrites)
    return Trainer(model, data, cfg, run_dir, show_progress=False, tokenizer=tokenizer), model


def split_run_losses(tok: Any, ids: np.ndarray, run_dir: Path, **rewrites: float) -> list[float]:
    """The losses of the same run stopped at step 3 and resumed (from the run's own tokenizer copy)."""
    split, _ = tiny_trainer(tok, ids, run_dir, tokenizer=tok, **rewrites)
    first = split.fit(stop_at_step=3)
    second = Trainer.resume(run_dir, split.data, show_progress=False).fit()
    return [s.loss for s in first.history + second.history]
