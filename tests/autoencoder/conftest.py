"""A tiny auto-encoder trained once for the evaluation, codebook and report tests (a few seconds on one thread)."""

from __future__ import annotations

import pytest
import torch

from microtransformer.autoencoder.model import ChunkAutoEncoder
from microtransformer.autoencoder.chunking import count_chunks

from autoencoder_testkit import EVAL_DOCS, train_tiny_autoencoder


@pytest.fixture(scope="session")
def tiny_counts():
    return count_chunks(EVAL_DOCS)


@pytest.fixture(scope="session")
def tiny_model(tiny_counts) -> ChunkAutoEncoder:
    torch.set_num_threads(1)
    return train_tiny_autoencoder(sorted(tiny_counts), steps=300)
