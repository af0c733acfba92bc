"""Chunk auto-encoder: bytes -> one FSQ code -> bytes.

The learned tokenizer's model. A chunk (at most ``max_chunk_len`` UTF-8
bytes, see ``tokenization/chunking.py``) is padded with the END symbol (id
256) to a fixed width, embedded byte by byte (+ a position embedding), run
through a Conv1d stack and pooled to one vector, projected to ``len(levels)``
dimensions, normalized and quantized by :class:`~microtransformer.autoencoder.fsq.FSQ`.
The FSQ index is the token. :class:`VectorDecoder` maps the quantized code
back to logits over 256 bytes + END at *every* position, so the length is
learned too and a chunk can decode exactly.

Why these pieces:

* **flatten pooling** (default) keeps the position of every conv feature;
  plain average pooling would make ``"ab"`` and ``"ba"`` look alike. Masked
  global average pooling is available as an option (``pooling="mean"``).
* **normalization before FSQ** (LayerNorm or BatchNorm): without it the
  pre-``tanh`` values grow during training, ``tanh`` saturates, and every
  chunk collapses to the same corner code.
* the loss is cross-entropy over all ``max_chunk_len`` positions, bytes and
  END symbols alike, so "where the chunk stops" is trained like any byte.

>>> model = ChunkAutoEncoder(AutoEncoderConfig.preset("tiny"))
>>> x = chunks_to_tensor([b"hello", b" world"], model.config.max_chunk_len)  # (2, 16)
>>> out = model(x)
>>> out.logits.shape, out.indices.shape
(torch.Size([2, 16, 257]), torch.Size([2]))

This module knows nothing of tokenizers: it takes byte strings and returns
integer codes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microtransformer.config import JSONConfig
from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.io import (
    PathLike,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
)
from microtransformer.autoencoder.fsq import DESIGN_LEVELS, FSQ

__all__ = [
    "END_ID",
    "N_SYMBOLS",
    "AutoEncoderConfig",
    "AutoEncoderOutput",
    "CharacterEncoder",
    "ChunkAutoEncoder",
    "VectorDecoder",
    "chunks_to_tensor",
    "evaluate_chunks",
    "load_autoencoder",
    "logits_to_chunks",
    "memory_row",
    "reconstruction_stats",
    "save_autoencoder",
]

logger = logging.getLogger(__name__)

END_ID = 256  # end-of-chunk / padding symbol, after the 256 byte values
_HASH_MULT = 0x9E3779B1  # Knuth's multiplicative hash: spreads neighbouring code indices over memory rows
N_SYMBOLS = 257  # 256 bytes + END
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64  # splitmix64 multipliers as signed int64
_MIX2 = 0x94D049BB133111EB - 2**64

MODEL_WEIGHTS_NAME = "model.safetensors"
MODEL_CONFIG_NAME = "config.json"
_POOLINGS = ("flatten", "mean")
_NORMS = ("layer", "batch", "none")


@dataclass(frozen=True)
class AutoEncoderConfig(JSONConfig):
    """Architecture of :class:`ChunkAutoEncoder`; stored as JSON in every checkpoint.

    The defaults are the design's: embed 64, channels (128, 256, 256), kernels
    3, strides (1, 2, 2), flatten pooling, LayerNorm, levels
    ``[8, 8, 8, 8, 8, 5, 5, 5]`` (4,096,000 codes); the decoder (not fixed
    by the design) is a 2-layer MLP of width 1024 with digit embeddings (see
    :class:`VectorDecoder`). ``preset("cpu")`` is a smaller model that trains
    faster on a laptop CPU.
    """

    max_chunk_len: int = 16
    embed_dim: int = 64
    channels: tuple[int, ...] = (128, 256, 256)
    kernel_sizes: tuple[int, ...] = (3, 3, 3)
    strides: tuple[int, ...] = (1, 2, 2)
    pooling: str = "flatten"
    norm: str = "layer"
    levels: tuple[int, ...] = DESIGN_LEVELS
    fsq_eps: float = 1e-3
    decoder_hidden: int = 1024
    decoder_layers: int = 2
    decoder_pos_dim: int = 64
    decoder_digit_embedding: bool = True
    decoder_memory_size: int = 65536
    decoder_memory_dim: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("channels", "kernel_sizes", "strides", "levels"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ConfigError(f"{name} must be a list of ints, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if self.max_chunk_len < 1:
            raise ConfigError(f"max_chunk_len must be >= 1, got {self.max_chunk_len}")
        if self.embed_dim < 1 or self.decoder_hidden < 1 or self.decoder_pos_dim < 1:
            raise ConfigError("embed_dim, decoder_hidden and decoder_pos_dim must be >= 1")
        if not self.channels:
            raise ConfigError("channels must list at least one conv layer, e.g. [128, 256, 256]")
        if not (len(self.channels) == len(self.kernel_sizes) == len(self.strides)):
            raise ConfigError(
                f"channels, kernel_sizes and strides need one entry per conv layer; got "
                f"{len(self.channels)}, {len(self.kernel_sizes)}, {len(self.strides)}"
            )
        if any(c < 1 for c in self.channels) or any(k < 1 for k in self.kernel_sizes) or any(s < 1 for s in self.strides):
            raise ConfigError("channels, kernel_sizes and strides must all be >= 1")
        if self.pooling not in _POOLINGS:
            raise ConfigError(f"pooling must be one of {_POOLINGS}, got {self.pooling!r}")
        if self.norm not in _NORMS:
            raise ConfigError(f"norm must be one of {_NORMS}, got {self.norm!r} (use 'layer' unless you know why)")
        if not self.levels or any(lv < 2 for lv in self.levels):
            raise ConfigError(f"levels must be a non-empty list of ints >= 2, got {list(self.levels)}")
        if self.decoder_memory_size < 0 or (self.decoder_memory_size and self.decoder_memory_dim < 1):
            raise ConfigError("decoder_memory_size must be >= 0 (0 disables the code memory) and decoder_memory_dim >= 1")
        if self.decoder_layers < 1:
            raise ConfigError(f"decoder_layers must be >= 1, got {self.decoder_layers}")
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.conv_out_len < 1:
            raise ConfigError(f"the conv stack reduces {self.max_chunk_len} positions to nothing; use fewer/smaller strides")

    @property
    def conv_out_len(self) -> int:
        """Sequence length after the conv stack (``padding = kernel // 2``)."""
        n = self.max_chunk_len
        for k, s in zip(self.kernel_sizes, self.strides):
            n = (n + 2 * (k // 2) - k) // s + 1
        return n

    @property
    def code_dim(self) -> int:
        return len(self.levels)

    @classmethod
    def preset(cls, name: str) -> AutoEncoderConfig:
        """``"design"`` (the defaults), ``"cpu"`` (smaller, for 2-core training) or ``"tiny"`` (tests)."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown auto-encoder preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**_PRESETS[name])


_PRESETS: dict[str, dict[str, Any]] = {
    "design": {},
    "cpu": {
        "embed_dim": 32,
        "channels": (64, 128, 128),
        "decoder_hidden": 384,
        "decoder_pos_dim": 48,
        "decoder_memory_size": 16384,
        "decoder_memory_dim": 32,
    },
    "tiny": {
        "embed_dim": 16,
        "channels": (32, 32),
        "kernel_sizes": (3, 3),
        "strides": (1, 2),
        "decoder_hidden": 128,
        "decoder_layers": 1,
        "decoder_pos_dim": 32,
        "decoder_memory_size": 0,
    },
}


def chunks_to_tensor(chunks: Sequence[bytes], max_chunk_len: int) -> torch.Tensor:
    """Byte chunks -> ``(B, max_chunk_len)`` int64, END-padded.

    Raises :class:`ConfigError` for a chunk longer than ``max_chunk_len``
    (chunk the text with the same ``max_chunk_len`` first).
    """
    out = np.full((len(chunks), max_chunk_len), END_ID, dtype=np.int64)  # (B, T)
    for i, c in enumerate(chunks):
        n = len(c)
        if n > max_chunk_len:
            raise ConfigError(f"chunk of {n} bytes exceeds max_chunk_len={max_chunk_len}; chunk text with the model's max_chunk_len")
        if n:
            out[i, :n] = np.frombuffer(c, dtype=np.uint8)
    return torch.from_numpy(out)


def logits_to_chunks(logits_or_ids: torch.Tensor) -> list[bytes]:
    """Per-position logits ``(B, T, 257)`` or ids ``(B, T)`` -> bytes, cut at the first END."""
    ids = logits_or_ids.argmax(-1) if logits_or_ids.dim() == 3 else logits_or_ids  # (B, T)
    out: list[bytes] = []
    for row in ids.cpu().tolist():
        try:
            row = row[: row.index(END_ID)]
        except ValueError:
            pass
        out.append(bytes(row))
    return out


def reconstruction_stats(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Byte accuracy and exact-chunk rate of greedy decoding, network alone.

    ``char_accuracy`` counts real byte positions only (not padding);
    ``exact_rate`` needs every byte *and* the END right after the last byte.
    Returns sums and counts so callers can aggregate over batches.
    """
    pred = logits.argmax(-1)  # (B, T)
    is_byte = targets != END_ID  # (B, T)
    lengths = is_byte.sum(-1, keepdim=True)  # (B, 1)
    positions = torch.arange(targets.shape[1], device=targets.device)  # (T,)
    must_match = positions.unsqueeze(0) <= lengths  # bytes + the first END
    correct = pred == targets
    exact = (correct | ~must_match).all(-1)  # (B,)
    return {
        "byte_correct": float((correct & is_byte).sum()),
        "byte_total": float(is_byte.sum()),
        "exact": float(exact.sum()),
        "chunks": float(targets.shape[0]),
    }


class CharacterEncoder(nn.Module):
    """Bytes ``(B, T)`` -> FSQ code ``(B, D)`` and index ``(B,)``."""

    def __init__(self, config: AutoEncoderConfig) -> None:
        super().__init__()
        self.config = config
        T, E = config.max_chunk_len, config.embed_dim
        self.byte_emb = nn.Embedding(N_SYMBOLS, E)
        self.pos_emb = nn.Parameter(torch.randn(T, E) * 0.02)
        convs = []
        c_in = E
        for c_out, k, s in zip(config.channels, config.kernel_sizes, config.strides):
            convs.append(nn.Conv1d(c_in, c_out, k, stride=s, padding=k // 2))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.dropout = nn.Dropout(config.dropout)
        pooled = c_in * config.conv_out_len if config.pooling == "flatten" else c_in
        self.proj = nn.Linear(pooled, config.code_dim)
        if config.norm == "layer":
            self.norm: nn.Module = nn.LayerNorm(config.code_dim)
        elif config.norm == "batch":
            self.norm = nn.BatchNorm1d(config.code_dim)
        else:
            self.norm = nn.Identity()
        self.fsq = FSQ(config.levels, eps=config.fsq_eps)

    def pre_quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous latent ``(B, D)`` right before FSQ (normalized)."""
        cfg = self.config
        h = self.byte_emb(x) + self.pos_emb  # (B, T, E)
        h = h.transpose(1, 2)  # (B, E, T)
        mask = (x != END_ID).unsqueeze(1).float()  # (B, 1, T)
        for conv in self.convs:
            h = F.gelu(conv(h))  # (B, C, T')
            if cfg.pooling == "mean":  # track which outputs see a real byte
                mask = F.max_pool1d(mask, conv.kernel_size[0], conv.stride[0], conv.padding[0])
        if cfg.pooling == "flatten":
            pooled = h.flatten(1)  # (B, C * T')
        else:
            denom = mask.sum(-1).clamp_min(1.0)  # (B, 1)
            pooled = (h * mask).sum(-1) / denom  # (B, C)
        z = self.proj(self.dropout(pooled))  # (B, D)
        return self.norm(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fsq(self.pre_quantize(x))  # (B, D), (B,)


def _shift_right(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def memory_row(index: torch.Tensor, memory_size: int) -> torch.Tensor:
    """Hashed code-memory row of FSQ indices ``(B,) -> (B,)``.

    Indices below ``2**31`` (every grid up to the design's 4,096,000 codes)
    take Knuth's multiplicative hash (low 32 bits of ``index * 0x9E3779B1``),
    as models saved with such grids expect. Larger indices (grids such as 20
    dimensions of 8 levels) go through the splitmix64 finalizer instead: the
    low bits of a product ignore every index bit above them, so codes
    differing only in their last dimensions would always share a row.
    """
    knuth = ((index * _HASH_MULT) & 0xFFFFFFFF) % memory_size
    x = index ^ _shift_right(index, 30)
    x = x * _MIX1  # int64 multiplication wraps, as splitmix64's uint64 one does
    x = x ^ _shift_right(x, 27)
    x = x * _MIX2
    x = x ^ _shift_right(x, 31)
    mixed = _shift_right(x, 1) % memory_size  # non-negative
    return torch.where(index < 2**31, knuth, mixed)


class VectorDecoder(nn.Module):
    """Code ``(B, D)`` -> logits ``(B, T, 257)`` over bytes + END at every position.

    An MLP trunk reads the whole code, a linear layer fans it out to one
    small vector per position, and a shared head turns each into byte logits.

    With ``decoder_digit_embedding`` (default) the trunk's input also adds a
    learned vector per (dimension, level) of the code. Why: a code is a
    discrete key the decoder has to *memorize* a chunk for, and a linear
    layer on the 8 scalar values can only separate neighbouring levels
    slowly; reading each digit as a category made reconstruction learn
    faster (val char accuracy 0.81 -> 0.85 after 3000 steps of batch 64 on
    tinyshakespeare). The scalar path stays, so the straight-through
    gradient still reaches the encoder; the digit path is detached.

    With ``decoder_memory_size > 0`` (default 65,536 rows of 64) the input
    also adds a row of a hashed embedding table picked by the code's index:
    a per-code memory that learns a chunk in a few visits, where the MLP
    alone needs many (exactly reconstructed unique chunks after 3000 steps:
    26% -> 42%; val char accuracy 0.89 -> 0.92, tinyshakespeare). Codes that
    share a row are told apart by the MLP path. The table takes sparse
    gradients; the pre-training loop gives it its own ``SparseAdam``.
    """

    def __init__(self, config: AutoEncoderConfig) -> None:
        super().__init__()
        self.config = config
        H, P, T = config.decoder_hidden, config.decoder_pos_dim, config.max_chunk_len
        self.inp = nn.Linear(config.code_dim, H)
        self.register_buffer("_half_width", torch.tensor([lv // 2 for lv in config.levels], dtype=torch.float32), persistent=False)
        basis = [1]
        for lv in config.levels[:-1]:
            basis.append(basis[-1] * lv)
        self.register_buffer("_basis", torch.tensor(basis), persistent=False)
        self.digit_emb: nn.Embedding | None = None
        if config.decoder_digit_embedding:
            # one learned vector per (dimension, level): the decoder reads each digit as a category
            self.digit_emb = nn.Embedding(sum(config.levels), H)
            offsets = torch.tensor([0, *config.levels[:-1]]).cumsum(0)
            self.register_buffer("_digit_offsets", offsets, persistent=False)
        self.memory: nn.Embedding | None = None
        if config.decoder_memory_size:
            # a hashed row per code: memorizes code -> chunk in a few visits (sparse gradients)
            self.memory = nn.Embedding(config.decoder_memory_size, config.decoder_memory_dim, sparse=True)
            nn.init.zeros_(self.memory.weight)
            self.memory_proj = nn.Linear(config.decoder_memory_dim, H)
        layers: list[nn.Module] = [nn.GELU()]
        for _ in range(config.decoder_layers - 1):
            layers += [nn.Linear(H, H), nn.GELU()]
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.to_positions = nn.Linear(H, T * P)
        self.head = nn.Linear(P, N_SYMBOLS)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        B = codes.shape[0]
        h = self.inp(codes)  # (B, H)
        if self.digit_emb is not None or self.memory is not None:
            digits = torch.round(codes.detach().float() * self._half_width + self._half_width).long()  # (B, D)
            if self.digit_emb is not None:
                h = h + self.digit_emb(digits + self._digit_offsets).sum(1)  # (B, H)
            if self.memory is not None:
                index = (digits * self._basis).sum(-1)  # (B,) FSQ index
                row = memory_row(index, self.config.decoder_memory_size)  # (B,)
                h = h + self.memory_proj(self.memory(row))  # (B, H)
        h = self.dropout(self.trunk(h))  # (B, H)
        h = self.to_positions(h).view(B, self.config.max_chunk_len, -1)  # (B, T, P)
        return self.head(F.gelu(h))  # (B, T, 257)


@dataclass
class AutoEncoderOutput:
    logits: torch.Tensor  # (B, T, 257)
    codes: torch.Tensor  # (B, D) quantized
    indices: torch.Tensor  # (B,) int64
    loss: torch.Tensor | None = None
    latent: torch.Tensor | None = None  # (B, D) normalized, before FSQ (for losses on the latent)


class ChunkAutoEncoder(nn.Module):
    """Encoder + FSQ + decoder with the reconstruction loss.

    ``forward(x)`` with ``x`` the END-padded byte ids ``(B, T)`` (see
    :func:`chunks_to_tensor`) returns logits, codes, indices and the mean
    cross-entropy over every position (bytes and END symbols).
    """

    def __init__(self, config: AutoEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = CharacterEncoder(config)
        self.decoder = VectorDecoder(config)

    @property
    def fsq(self) -> FSQ:
        return self.encoder.fsq

    @property
    def codebook_size(self) -> int:
        return self.encoder.fsq.codebook_size

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> AutoEncoderOutput:
        latent = self.encoder.pre_quantize(x)  # (B, D)
        codes, indices = self.encoder.fsq(latent)  # (B, D), (B,)
        logits = self.decoder(codes)  # (B, T, 257)
        loss = F.cross_entropy(logits.reshape(-1, N_SYMBOLS).float(), x.reshape(-1))
        return AutoEncoderOutput(logits=logits, codes=codes, indices=indices, loss=loss, latent=latent)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode_chunks(self, chunks: Sequence[bytes], batch_size: int = 4096) -> torch.Tensor:
        """Codebook indices ``(N,)`` for byte chunks (eval mode is the caller's choice)."""
        out = []
        for i in range(0, len(chunks), batch_size):
            x = chunks_to_tensor(chunks[i : i + batch_size], self.config.max_chunk_len).to(self._device())
            out.append(self.encoder(x)[1].cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor | Sequence[int], batch_size: int = 4096) -> list[bytes]:
        """Greedy bytes for codebook indices, each cut at the first END."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        out: list[bytes] = []
        for i in range(0, len(indices), batch_size):
            codes = self.fsq.indices_to_codes(indices[i : i + batch_size].to(self._device()))  # (b, D)
            out.extend(logits_to_chunks(self.decoder(codes)))
        return out

    @torch.no_grad()
    def reconstruct(self, chunks: Sequence[bytes], batch_size: int = 4096) -> tuple[list[bytes], torch.Tensor]:
        """Encode then decode (network alone): ``(decoded chunks, indices)``."""
        out: list[bytes] = []
        idx = []
        for i in range(0, len(chunks), batch_size):
            x = chunks_to_tensor(chunks[i : i + batch_size], self.config.max_chunk_len).to(self._device())
            codes, indices = self.encoder(x)
            out.extend(logits_to_chunks(self.decoder(codes)))
            idx.append(indices.cpu())
        return out, (torch.cat(idx) if idx else torch.zeros(0, dtype=torch.long))


@torch.no_grad()
def evaluate_chunks(
    model: ChunkAutoEncoder,
    chunks: Sequence[bytes],
    weights: Sequence[float] | None = None,
    batch_size: int = 2048,
) -> dict[str, float]:
    """Network-alone reconstruction of ``chunks``, each weighted (e.g. by its count).

    Returns ``loss`` (weighted mean cross-entropy per position),
    ``char_accuracy`` (weighted over real bytes), ``exact_rate`` (weighted
    share of chunks decoded exactly), ``distinct_codes`` and ``chunks``
    (unique chunks evaluated). Runs in eval mode and restores the mode after.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    w_all = torch.ones(len(chunks)) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    byte_c = byte_t = exact = loss_sum = w_sum = 0.0
    codes = []
    for i in range(0, len(chunks), batch_size):
        x = chunks_to_tensor(chunks[i : i + batch_size], model.config.max_chunk_len).to(device)  # (b, T)
        w = w_all[i : i + batch_size].to(device)  # (b,)
        out = model(x)
        pred = out.logits.argmax(-1)  # (b, T)
        is_byte = x != END_ID
        lengths = is_byte.sum(-1, keepdim=True)
        must = torch.arange(x.shape[1], device=device).unsqueeze(0) <= lengths
        correct = pred == x
        per_loss = F.cross_entropy(out.logits.reshape(-1, N_SYMBOLS).float(), x.reshape(-1), reduction="none")
        loss_sum += float((per_loss.view(x.shape).mean(-1).double() * w).sum())
        byte_c += float(((correct & is_byte).sum(-1).double() * w).sum())
        byte_t += float((is_byte.sum(-1).double() * w).sum())
        exact += float(((correct | ~must).all(-1).double() * w).sum())
        w_sum += float(w.sum())
        codes.append(out.indices.cpu())
    model.train(was_training)
    return {
        "loss": loss_sum / max(w_sum, 1e-12),
        "char_accuracy": byte_c / max(byte_t, 1e-12),
        "exact_rate": exact / max(w_sum, 1e-12),
        "distinct_codes": float(torch.unique(torch.cat(codes)).numel()) if codes else 0.0,
        "chunks": float(len(chunks)),
    }


def save_autoencoder(model: ChunkAutoEncoder, directory: PathLike, extra_config: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory`` (each atomically)."""
    from safetensors.torch import save

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / MODEL_WEIGHTS_NAME, save(state))
    payload: dict[str, Any] = {"model": model.config.to_dict(), "model_type": "chunk_autoencoder"}
    if extra_config:
        payload.update(extra_config)
    atomic_write_json(directory / MODEL_CONFIG_NAME, payload)
    return directory


def load_autoencoder(directory: PathLike, map_location: str | torch.device = "cpu") -> ChunkAutoEncoder:
    """Load a model written by :func:`save_autoencoder` (no pickle: safetensors + JSON)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg_path, w_path = directory / MODEL_CONFIG_NAME, directory / MODEL_WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(
            f"{directory} is not an auto-encoder checkpoint (needs {MODEL_CONFIG_NAME} and {MODEL_WEIGHTS_NAME}); "
            "pass a checkpoint_step_N or checkpoint_best directory"
        )
    try:
        payload = read_json(cfg_path)
        config = AutoEncoderConfig.from_dict(payload["model"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{cfg_path} is damaged or not an auto-encoder config: {exc}") from exc
    model = ChunkAutoEncoder(config)
    try:
        state = load_file(str(w_path), device=str(map_location))
        model.load_state_dict(state)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot load weights from {w_path}: {exc}") from exc
    model.eval()
    return model
