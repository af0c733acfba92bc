"""Chunk auto-encoder: bytes -> one FSQ code -> bytes.

The learned tokenizer's network. A chunk (at most ``max_chunk_len`` UTF-8
bytes, :mod:`.chunking`) is padded with the END symbol (id 256), embedded
byte by byte plus a position embedding, run through a Conv1d stack, pooled,
projected to ``len(levels)`` dimensions, normalized and quantized by
:class:`~microtransformer.autoencoder.fsq.FSQ`: the FSQ index is the token.
:class:`VectorDecoder` maps the code back to logits over 256 bytes + END at
every position, so the chunk's length is learned too.

Why: flatten pooling keeps each conv feature's position (mean pooling would
make ``"ab"`` and ``"ba"`` alike); the norm before FSQ stops ``tanh`` from
saturating (without it every chunk collapses to one corner code); the loss
is cross-entropy over every position, END symbols included.

>>> model = ChunkAutoEncoder(AutoEncoderConfig.preset("tiny"))
>>> x = chunks_to_tensor([b"hello", b" world"], model.config.max_chunk_len)  # (2, 16)
>>> out = model(x)
>>> out.logits.shape, out.indices.shape
(torch.Size([2, 16, 257]), torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microtransformer.autoencoder.config import AutoEncoderConfig
from microtransformer.autoencoder.fsq import FSQ
from microtransformer.errors import ConfigError

__all__ = [
    "END_ID",
    "N_SYMBOLS",
    "AutoEncoderConfig",
    "AutoEncoderOutput",
    "CharacterEncoder",
    "ChunkAutoEncoder",
    "VectorDecoder",
    "chunks_to_tensor",
    "logits_to_chunks",
    "memory_row",
]

END_ID = 256  # end-of-chunk / padding symbol, after the 256 byte values
N_SYMBOLS = 257  # 256 bytes + END
_HASH_MULT = 0x9E3779B1  # Knuth's multiplicative hash: spreads neighbouring code indices over memory rows
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64  # splitmix64 multipliers as signed int64
_MIX2 = 0x94D049BB133111EB - 2**64


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


def memory_row(index: torch.Tensor, memory_size: int, version: int = 2) -> torch.Tensor:
    """Hashed code-memory row of FSQ indices ``(B,) -> (B,)``.

    The row a code reads is part of what saved weights mean, so the hash is
    versioned (``AutoEncoderConfig.memory_hash_version``, saved with every
    model) and a version, once released, never changes:

    * 1: Knuth's multiplicative hash for every index (low 32 bits of
      ``index * 0x9E3779B1``), as the first models with a code memory used.
    * 2 (current): version 1 below ``2**31``, so grids up to that size hash
      as before, and the splitmix64 finalizer above it: the low bits of a
      product ignore every index bit above them, so on larger grids codes
      that differ only in their last dimensions would all share a row.

    A config saved without the key was written by code that hashed as version 2.
    A new hash is a new version here, never a change to an old one.
    """
    knuth = ((index * _HASH_MULT) & 0xFFFFFFFF) % memory_size
    if version == 1:
        return knuth
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
    Two optional inputs help the decoder memorize a discrete key per chunk
    (figures in ``docs/benchmarks.md``): ``decoder_digit_embedding`` adds a
    learned vector per (dimension, level), read as a category (detached: the
    scalar path still carries the straight-through gradient to the encoder);
    ``decoder_memory_size`` adds a row of a hashed table picked by the code's
    index (:func:`memory_row`), which learns a chunk in a few visits. Codes
    sharing a row are told apart by the MLP path. The table takes sparse
    gradients; pre-training gives it its own ``SparseAdam``.
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
                row = memory_row(index, self.config.decoder_memory_size, self.config.memory_hash_version)  # (B,)
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

    def num_params(self) -> int:
        """Number of parameters, all of them (the log line and eval results report it)."""
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
