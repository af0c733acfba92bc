"""A tiny auto-encoder trained once for the evaluation tests (a few seconds on one thread)."""

from __future__ import annotations

import pytest
import torch

from microtransformer.models.char_autoencoder import ChunkAutoEncoder
from microtransformer.tokenization.chunking import count_chunks

from autoencoder_testkit import train_tiny_autoencoder

SENTENCES = ("hello world", "the cat sat on the mat", "123 test")
DOCS = ["\n".join(SENTENCES) + "\nhello the world, the cat!\n"] * 20


@pytest.fixture(scope="session")
def tiny_counts():
    return count_chunks(DOCS)


@pytest.fixture(scope="session")
def tiny_model(tiny_counts) -> ChunkAutoEncoder:
    torch.set_num_threads(1)
    return train_tiny_autoencoder(sorted(tiny_counts), steps=300)
