"""A tiny chunk auto-encoder for tests (importable from every test directory: tests/ is on sys.path via conftest)."""

from __future__ import annotations

import torch

from microtransformer.autoencoder.model import AutoEncoderConfig, ChunkAutoEncoder, chunks_to_tensor

#: Sentences the evaluation tests reconstruct, and the documents their tiny model is trained on.
EVAL_SENTENCES = ("hello world", "the cat sat on the mat", "123 test")
EVAL_DOCS = ["\n".join(EVAL_SENTENCES) + "\nhello the world, the cat!\n"] * 20


def train_tiny_autoencoder(chunks: list[bytes], steps: int, config: AutoEncoderConfig | None = None) -> ChunkAutoEncoder:
    """The ``tiny`` preset (or ``config``) trained full-batch on ``chunks`` (seeded): a network that knows them, in seconds.

    A plain function, not a fixture: each test module trains on its own
    chunks and caches the result in its own module/session fixture.
    """
    torch.manual_seed(0)
    model = ChunkAutoEncoder(config or AutoEncoderConfig.preset("tiny"))
    x = chunks_to_tensor(chunks, model.config.max_chunk_len)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
