"""A tiny auto-encoder trained once for the evaluation tests (a few seconds on one thread)."""

from __future__ import annotations

import pytest
import torch

from microtransformer.models.char_autoencoder import AutoEncoderConfig, ChunkAutoEncoder, chunks_to_tensor
from microtransformer.tokenization.chunking import count_chunks

SENTENCES = ("hello world", "the cat sat on the mat", "123 test")
DOCS = ["\n".join(SENTENCES) + "\nhello the world, the cat!\n"] * 20


@pytest.fixture(scope="session")
def tiny_counts():
    return count_chunks(DOCS)


@pytest.fixture(scope="session")
def tiny_model(tiny_counts) -> ChunkAutoEncoder:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    chunks = sorted(tiny_counts)
    model = ChunkAutoEncoder(AutoEncoderConfig.preset("tiny"))
    x = chunks_to_tensor(chunks, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
