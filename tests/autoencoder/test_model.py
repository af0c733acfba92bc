"""Chunk auto-encoder: shapes, config validation, save/load, the versioned memory hash, and that it learns."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from microtransformer.autoencoder.checkpoint import KIND, load_autoencoder
from microtransformer.autoencoder.config import DEFAULT_LEVELS
from microtransformer.autoencoder.evaluate import evaluate_chunks
from microtransformer.autoencoder.fsq import DESIGN_LEVELS
from microtransformer.autoencoder.model import (
    END_ID,
    N_SYMBOLS,
    AutoEncoderConfig,
    CharacterEncoder,
    ChunkAutoEncoder,
    VectorDecoder,
    chunks_to_tensor,
    logits_to_chunks,
    memory_row,
)
from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.training import checkpoint as run_format

WORDS = (
    "the of and to a in is it you that he was for on are with as I his they be at one have this from "
    "or had by hot word but what some we can out other were all there when up use your how said an each"
).split()
CHUNKS = [w.encode() for w in WORDS] + [b" " + w.encode() for w in WORDS]


def test_chunks_to_tensor_and_back() -> None:
    x = chunks_to_tensor([b"ab", b"", b"x" * 16], 16)  # (3, 16)
    assert x.shape == (3, 16) and x.dtype == torch.long
    assert x[0, :2].tolist() == [97, 98] and (x[0, 2:] == END_ID).all()
    assert (x[1] == END_ID).all()
    assert logits_to_chunks(x) == [b"ab", b"", b"x" * 16]
    with pytest.raises(ConfigError):
        chunks_to_tensor([b"x" * 17], 16)


@pytest.mark.parametrize("preset", ["default", "design", "cpu", "tiny"])
@pytest.mark.parametrize("pooling", ["flatten", "mean"])
def test_shapes(preset: str, pooling: str) -> None:
    # digit embeddings on for flatten, off for mean: both decoder inputs get exercised
    cfg = dataclasses.replace(AutoEncoderConfig.preset(preset), pooling=pooling, decoder_digit_embedding=pooling == "flatten")
    model = ChunkAutoEncoder(cfg)
    x = chunks_to_tensor(CHUNKS[:5], cfg.max_chunk_len)  # (5, 16)
    codes, idx = model.encoder(x)
    assert codes.shape == (5, cfg.code_dim) and idx.shape == (5,)
    assert model.decoder(codes).shape == (5, cfg.max_chunk_len, N_SYMBOLS)
    out = model(x)
    assert out.logits.shape == (5, cfg.max_chunk_len, N_SYMBOLS)
    assert out.loss is not None and out.loss.ndim == 0
    assert torch.equal(model.fsq.codes_to_indices(out.codes), out.indices)
    assert isinstance(model.encoder, CharacterEncoder) and isinstance(model.decoder, VectorDecoder)


def test_defaults_and_the_design_preset() -> None:
    cfg = AutoEncoderConfig()
    assert (cfg.embed_dim, cfg.channels, cfg.kernel_sizes, cfg.strides) == (64, (128, 256, 256), (3, 3, 3), (1, 2, 2))
    assert cfg.levels == DEFAULT_LEVELS == (8,) * 20 and cfg.pooling == "flatten" and cfg.max_chunk_len == 16
    assert cfg.conv_out_len == 4 and cfg.memory_hash_version == 2
    assert AutoEncoderConfig.from_dict(cfg.to_dict()) == cfg
    design = AutoEncoderConfig.preset("design")
    assert design.levels == DESIGN_LEVELS and design == dataclasses.replace(cfg, levels=DESIGN_LEVELS)


@pytest.mark.parametrize(
    "bad",
    [
        {"pooling": "avg"},
        {"norm": "group"},
        {"channels": [8], "kernel_sizes": [3, 3], "strides": [1]},
        {"levels": [8, 1]},
        {"max_chunk_len": 0},
        {"channels": []},
        {"dropout": 1.5},
        {"memory_hash_version": 3},
        {"pattern": ""},
    ],
)
def test_invalid_config(bad: dict) -> None:
    with pytest.raises(ConfigError):
        AutoEncoderConfig(**bad)
    with pytest.raises(ConfigError):
        AutoEncoderConfig.from_dict({"no_such_key": 1})


def test_mean_pooling_ignores_padding() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(AutoEncoderConfig.preset("tiny"), pooling="mean", norm="none")
    enc = CharacterEncoder(cfg).eval()
    x = chunks_to_tensor([b"abc"], 16)
    z1 = enc.pre_quantize(x)
    assert torch.isfinite(z1).all()
    # outputs whose receptive field holds only padding are excluded: far-away padding
    # changes nothing when it is replaced (here: a longer pad run is identical anyway)
    z2 = enc.pre_quantize(chunks_to_tensor([b"abc"], 16))
    assert torch.equal(z1, z2)
    # an empty chunk has no valid position; the masked mean must stay finite (no 0/0)
    empty = enc.pre_quantize(chunks_to_tensor([b""], 16))
    assert torch.isfinite(empty).all()


def test_save_load_round_trip(tmp_path) -> None:
    """A network saved through the run format loads back with every weight and BatchNorm buffer."""
    torch.manual_seed(0)
    model = ChunkAutoEncoder(dataclasses.replace(AutoEncoderConfig.preset("tiny"), norm="batch"))
    model(chunks_to_tensor(CHUNKS, 16))  # BatchNorm running stats move away from their init
    model.eval()
    meta = {"model": {"kind": KIND, "config": model.config.to_dict()}}
    run_format.write_run(tmp_path / "m", meta)
    run_format.save_checkpoint(tmp_path / "m", 3, model=model, meta=meta, best=True)
    loaded = load_autoencoder(tmp_path / "m")
    x = chunks_to_tensor(CHUNKS, 16)
    a, b = model(x), loaded(x)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.logits, b.logits)
    assert torch.equal(loaded.encoder.norm.running_mean, model.encoder.norm.running_mean)
    assert torch.equal(load_autoencoder(tmp_path / "m" / "checkpoint_step_3")(x).logits, a.logits)  # the earlier name
    with pytest.raises(CheckpointError):
        load_autoencoder(tmp_path / "missing")


def test_learns_tiny_set() -> None:
    """Loss falls and byte accuracy rises far above random init in a few hundred steps."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = AutoEncoderConfig.preset("tiny")
    model = ChunkAutoEncoder(cfg)
    x = chunks_to_tensor(CHUNKS, cfg.max_chunk_len)  # (N, 16)

    def evaluate() -> tuple[float, float, float]:
        model.eval()
        with torch.no_grad():
            out = model(x)
        model.train()
        v = evaluate_chunks(model, CHUNKS)
        assert abs(v.loss - float(out.loss)) < 1e-5  # unweighted: the mean loss over every position
        return float(out.loss), v.char_accuracy, v.exact_chunk_rate

    loss0, acc0, _ = evaluate()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    loss1, acc1, exact1 = evaluate()
    assert acc0 < 0.05  # random init: ~1/257
    assert loss1 < loss0 / 4
    assert acc1 > 0.8, (acc0, acc1)
    assert exact1 > 0.4
    decoded, idx = model.eval().reconstruct(CHUNKS)
    assert len(decoded) == len(CHUNKS) and idx.shape == (len(CHUNKS),)
    assert decoded == model.decode_indices(idx)
    assert torch.equal(model.encode_chunks(CHUNKS), idx)


def _splitmix64(x: int) -> int:
    """Reference splitmix64 finalizer on Python ints (unbounded, masked to 64 bits)."""
    mask = 2**64 - 1
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def test_memory_row_keeps_the_small_grid_hash_and_mixes_large_indices() -> None:
    small = torch.tensor([0, 1, 12345, 4_095_999, 2**31 - 1])
    assert memory_row(small, 65536).tolist() == [((i * 0x9E3779B1) & 0xFFFFFFFF) % 65536 for i in small.tolist()]
    large = [2**31, 2**40 + 7, 8**20 - 1, 2**62 - 3]
    assert memory_row(torch.tensor(large), 1000).tolist() == [(_splitmix64(i) >> 1) % 1000 for i in large]
    # 20 dims of 8 levels: codes that differ only in the last 4 digits still spread over the rows
    basis = 8 ** torch.arange(20)
    digits = torch.full((4096, 20), 3)
    digits[:, 16:] = torch.cartesian_prod(*[torch.arange(8)] * 4)
    rows = memory_row((digits * basis).sum(-1), 65536)
    assert rows.unique().numel() > 3800  # ~3,969 expected for random rows; the low-bit hash gives 1
    assert int(rows.min()) >= 0 and int(rows.max()) < 65536


def test_memory_hash_versions() -> None:
    """Version 1 (Knuth everywhere) and 2 agree below 2**31 and differ above; the version travels in the config."""
    small, large = torch.tensor([0, 7, 4_095_999]), torch.tensor([2**31 + 5, 8**20 - 1])
    assert torch.equal(memory_row(small, 4096, 1), memory_row(small, 4096, 2))
    assert memory_row(large, 4096, 1).tolist() == [((i * 0x9E3779B1) & 0xFFFFFFFF) % 4096 for i in large.tolist()]
    assert not torch.equal(memory_row(large, 4096, 1), memory_row(large, 4096, 2))
    cfg = dataclasses.replace(AutoEncoderConfig.preset("tiny"), levels=(8,) * 12, decoder_memory_size=64, decoder_memory_dim=4)
    saved = cfg.to_dict()
    assert saved["memory_hash_version"] == 2
    del saved["memory_hash_version"]  # a config saved before the key existed hashed as version 2
    assert AutoEncoderConfig.from_dict(saved) == cfg
    torch.manual_seed(0)
    v2 = ChunkAutoEncoder(cfg).eval()
    torch.nn.init.normal_(v2.decoder.memory.weight)
    v1 = ChunkAutoEncoder(dataclasses.replace(cfg, memory_hash_version=1)).eval()
    v1.load_state_dict(v2.state_dict())
    codes = v2.fsq.indices_to_codes(torch.tensor([5, 2**31 + 12345]))  # (2, 12)
    out1, out2 = v1.decoder(codes), v2.decoder(codes)
    assert torch.equal(out1[0], out2[0]) and not torch.equal(out1[1], out2[1])  # only the large index reads another row
