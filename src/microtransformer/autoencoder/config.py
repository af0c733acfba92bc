"""What an auto-encoder run is configured with: the model and pre-training configs and their named presets.

:class:`AutoEncoderConfig` (the network and the chunking it reads) and
:class:`PretrainConfig` (how to pre-train it) are frozen dataclasses whose
defaults are the shipped defaults: the ``default`` preset. Named presets
(``design``, ``cpu``, ``tiny``) are JSON data in ``presets/`` beside this
module, each section listing only what differs from the defaults; a user's
file of the same shape works wherever a name does. The command-line flags of
``mtx autoencoder pretrain`` are generated from these fields. No torch here.

>>> AutoEncoderConfig.preset("tiny").decoder_layers
1
>>> PretrainConfig.preset("default") == PretrainConfig()
True
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from microtransformer.config import JSONConfig
from microtransformer.errors import ConfigError
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

__all__ = [
    "DEFAULT_LEVELS",
    "MEMORY_HASH_VERSIONS",
    "PRESETS",
    "AutoEncoderConfig",
    "Preset",
    "PretrainConfig",
    "move_pattern",
    "read_preset",
]

logger = logging.getLogger(__name__)

DEFAULT_LEVELS: tuple[int, ...] = (8,) * 20  # 2^60 codes: the grid is how much of a chunk one code can carry
MEMORY_HASH_VERSIONS = (1, 2)  # see model.memory_row
_POOLINGS = ("flatten", "mean")
_NORMS = ("layer", "batch", "none")
_POSITIVE_INTS = (
    "steps", "batch_size", "eval_every", "checkpoint_every", "keep_last", "log_every", "split_block_chars", "val_max_unique",
)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class AutoEncoderConfig(JSONConfig):
    """Architecture of the chunk auto-encoder (:mod:`.model`) and the chunking it reads; stored in every checkpoint.

    ``pattern`` and ``max_chunk_len`` decide how text becomes chunks, so
    they belong to the model: a tokenizer exported from it chunks the same way.
    """

    max_chunk_len: int = field(default=16, metadata=_help("longest chunk in UTF-8 bytes (longer regex pieces are cut)"))
    pattern: str = field(default=GPT4_SPLIT_PATTERN, metadata=_help("regex that cuts text into pieces before chunking"))
    embed_dim: int = field(default=64, metadata=_help("byte embedding width"))
    channels: tuple[int, ...] = field(default=(128, 256, 256), metadata=_help("Conv1d output channels, one per layer"))
    kernel_sizes: tuple[int, ...] = field(default=(3, 3, 3), metadata=_help("Conv1d kernel sizes, one per layer"))
    strides: tuple[int, ...] = field(default=(1, 2, 2), metadata=_help("Conv1d strides, one per layer"))
    pooling: str = field(default="flatten", metadata=_help("flatten (keeps positions) or mean"))
    norm: str = field(default="layer", metadata=_help("layer, batch or none: the norm before FSQ"))
    levels: tuple[int, ...] = field(default=DEFAULT_LEVELS, metadata=_help("FSQ levels per code dimension"))
    fsq_eps: float = field(default=1e-3, metadata=_help("FSQ bound margin"))
    decoder_hidden: int = field(default=1024, metadata=_help("decoder MLP width"))
    decoder_layers: int = field(default=2, metadata=_help("decoder MLP depth"))
    decoder_pos_dim: int = field(default=64, metadata=_help("decoder vector per output position"))
    decoder_digit_embedding: bool = field(default=True, metadata=_help("a learned vector per (dimension, level) of the code"))
    decoder_memory_size: int = field(default=65536, metadata=_help("rows of the hashed code memory (0 = none)"))
    decoder_memory_dim: int = field(default=64, metadata=_help("width of a code-memory row"))
    memory_hash_version: int = field(default=2, metadata=_help("which hash picks a code's memory row (see memory_row)"))
    dropout: float = field(default=0.0, metadata=_help("dropout in encoder and decoder"))

    def __post_init__(self) -> None:
        for name in ("channels", "kernel_sizes", "strides", "levels"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ConfigError(f"{name} must be a list of ints, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if self.max_chunk_len < 1:
            raise ConfigError(f"max_chunk_len must be >= 1, got {self.max_chunk_len}")
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ConfigError(f"pattern must be a non-empty regex string, got {self.pattern!r}")
        if self.embed_dim < 1 or self.decoder_hidden < 1 or self.decoder_pos_dim < 1:
            raise ConfigError("embed_dim, decoder_hidden and decoder_pos_dim must be >= 1")
        self._check_convs()
        if self.pooling not in _POOLINGS:
            raise ConfigError(f"pooling must be one of {_POOLINGS}, got {self.pooling!r}")
        if self.norm not in _NORMS:
            raise ConfigError(f"norm must be one of {_NORMS}, got {self.norm!r} (use 'layer' unless you know why)")
        if not self.levels or any(lv < 2 for lv in self.levels):
            raise ConfigError(f"levels must be a non-empty list of ints >= 2, got {list(self.levels)}")
        if self.decoder_memory_size < 0 or (self.decoder_memory_size and self.decoder_memory_dim < 1):
            raise ConfigError("decoder_memory_size must be >= 0 (0 disables the code memory) and decoder_memory_dim >= 1")
        if self.memory_hash_version not in MEMORY_HASH_VERSIONS:  # what saved weights mean: see model.memory_row
            raise ConfigError(f"memory_hash_version must be one of {MEMORY_HASH_VERSIONS}, got {self.memory_hash_version!r}")
        if self.decoder_layers < 1:
            raise ConfigError(f"decoder_layers must be >= 1, got {self.decoder_layers}")
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def _check_convs(self) -> None:
        if not self.channels:
            raise ConfigError("channels must list at least one conv layer, e.g. [128, 256, 256]")
        if not (len(self.channels) == len(self.kernel_sizes) == len(self.strides)):
            raise ConfigError(
                f"channels, kernel_sizes and strides need one entry per conv layer; got "
                f"{len(self.channels)}, {len(self.kernel_sizes)}, {len(self.strides)}"
            )
        if any(c < 1 for c in self.channels) or any(k < 1 for k in self.kernel_sizes) or any(s < 1 for s in self.strides):
            raise ConfigError("channels, kernel_sizes and strides must all be >= 1")
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
        """The model of a named preset (``default``, ``design``, ``cpu``, ``tiny``) or of a preset file."""
        return cls.from_dict(read_preset(name).model)


@dataclass(frozen=True)
class PretrainConfig(JSONConfig):
    """How to pre-train; the defaults are the shipped run (the ``default`` preset). Saved in every checkpoint."""

    steps: int = field(default=50000, metadata=_help("optimizer steps in total"))
    batch_size: int = field(default=64, metadata=_help("chunks per step (on a CPU, small batches give more updates per minute)"))
    lr: float = field(default=2e-3, metadata=_help("peak learning rate of encoder and decoder"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW decoupled weight decay"))
    warmup_steps: int = field(default=200, metadata=_help("linear warmup steps"))
    min_lr_ratio: float = field(default=0.1, metadata=_help("cosine decay floor, as a share of lr"))
    grad_clip: float = field(default=1.0, metadata=_help("clip the gradient norm (0 = off)"))
    sample_alpha: float = field(default=0.5, metadata=_help("sample unique chunks by count ** alpha"))
    val_fraction: float = field(default=0.05, metadata=_help("share of text blocks held out for validation"))
    split_block_chars: int = field(default=2048, metadata=_help("size of the text blocks the split assigns"))
    val_max_unique: int = field(default=20000, metadata=_help("most frequent validation chunks evaluated"))
    eval_every: int = field(default=2500, metadata=_help("evaluate every N steps"))
    checkpoint_every: int = field(default=2500, metadata=_help("checkpoint every N steps"))
    keep_last: int = field(default=5, metadata=_help("step checkpoints kept (plus best)"))
    log_every: int = field(default=50, metadata=_help("a train log line every N steps"))
    seed: int = field(default=0, metadata=_help("seed for init, split and sampling"))
    max_seconds: float = field(default=1200.0, metadata=_help("stop with a checkpoint after this wall time (0 = no limit)"))
    encoder_fraction: float = field(default=0.5, metadata=_help("share of the steps the encoder trains before its codes freeze"))
    decoder_lr_mult: float = field(default=1.0, metadata=_help("decoder learning rate as a multiple of lr"))
    memory_lr: float = field(default=0.03, metadata=_help("SparseAdam learning rate of the code memory"))
    piece_share: float = field(default=0.3, metadata=_help("share of samples that are sub-chunk pieces"))
    n_pieces: int = field(default=65536, metadata=_help("sub-chunk pieces to sample from"))
    augment_share: float = field(default=0.1, metadata=_help("share of a batch replaced by synthetic variants"))
    separation_weight: float = field(default=0.0, metadata=_help("weight of the loss that separates colliding codes (0 = off)"))
    separation_margin: float = field(default=1.0, metadata=_help("grid steps the separation loss asks for"))

    def __post_init__(self) -> None:
        for name in _POSITIVE_INTS:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.n_pieces, int) or isinstance(self.n_pieces, bool) or self.n_pieces < 0:
            raise ConfigError(f"n_pieces must be an int >= 0, got {self.n_pieces!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0 (grad_clip 0 disables clipping)")
        for name in ("lr", "memory_lr", "decoder_lr_mult", "separation_margin"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        ranges = {  # name: (low, high, low included, high included, what the ends mean)
            "min_lr_ratio": (0.0, 1.0, True, True, ""),
            "sample_alpha": (0.0, 1.0, True, True, " (0.5 = count^0.5)"),
            "encoder_fraction": (0.0, 1.0, False, True, " (1 = train the encoder throughout)"),
            "piece_share": (0.0, 1.0, True, False, " (0 = whole chunks only)"),
            "augment_share": (0.0, 1.0, True, False, " (0 = no synthetic variants)"),
            "val_fraction": (0.0, 1.0, True, False, ""),
        }
        for name, (lo, hi, lo_in, hi_in, note) in ranges.items():
            v = getattr(self, name)
            if not ((lo <= v if lo_in else lo < v) and (v <= hi if hi_in else v < hi)):
                interval = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
                raise ConfigError(f"{name} must be in {interval}{note}, got {v}")
        if not (self.max_seconds >= 0 and math.isfinite(self.max_seconds)):
            raise ConfigError(f"max_seconds must be >= 0 (0 = no time limit), got {self.max_seconds}")
        if not (self.separation_weight >= 0 and math.isfinite(self.separation_weight)):
            raise ConfigError(f"separation_weight must be >= 0 (0 = off), got {self.separation_weight}")

    @classmethod
    def preset(cls, name: str) -> PretrainConfig:
        """The pre-training of a named preset (``default``, ``design``, ``cpu``, ``tiny``) or of a preset file."""
        return cls.from_dict(read_preset(name).pretrain)


# ------------------------------------------------------------------ presets
PRESETS = ("default", "design", "cpu", "tiny")
_SECTIONS = {"model", "pretrain", "comment"}
# where the default and tiny presets lived before they became package data (a repository checkout's paths)
_MOVED = {("configs", "autoencoder.json"): "default", ("configs", "autoencoder_tiny.json"): "tiny"}


@dataclass(frozen=True)
class Preset:
    """The sections of a preset: field values for the model config and the pre-training config."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    comment: str = ""


def move_pattern(model: dict[str, Any], pretrain: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sections with ``pattern`` where it belongs: the chunk pattern is the model's (earlier files kept it in ``pretrain``)."""
    if "pattern" not in pretrain:
        return model, pretrain
    pretrain = dict(pretrain)
    pattern = pretrain.pop("pattern")
    return ({"pattern": pattern, **model} if "pattern" not in model else model), pretrain


def read_preset(name_or_path: str | os.PathLike[str]) -> Preset:
    """A named preset (``default``, ``design``, ``cpu``, ``tiny``) or a preset file.

    A ``model`` section may name a preset to start from (``"preset": "design"``).
    ``configs/autoencoder.json`` and ``configs/autoencoder_tiny.json``, where a
    checkout kept the default and tiny presets before, still name them.
    """
    name = str(name_or_path)
    if name in PRESETS:
        text = (resources.files(__package__) / "presets" / f"{name}.json").read_text(encoding="utf-8")
        return _parse(text, name)
    path = Path(name_or_path)
    if not path.is_file() and tuple(path.parts[-2:]) in _MOVED:
        moved = _MOVED[tuple(path.parts[-2:])]  # type: ignore[index]
        logger.warning("%s is the built-in preset %r now (src/microtransformer/autoencoder/presets/); reading that", path, moved)
        return read_preset(moved)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {name} is neither a preset ({', '.join(PRESETS)}) nor a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {name} cannot be read ({exc})") from None
    return _parse(text, name)


def _parse(text: str, name: str) -> Preset:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--config {name} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not set(data) <= _SECTIONS:
        raise ConfigError(f"--config {name} must be an object with 'model' and/or 'pretrain' sections (and a 'comment')")
    model, pretrain = data.get("model") or {}, data.get("pretrain") or {}
    if not isinstance(model, dict) or not isinstance(pretrain, dict):
        raise ConfigError(f"--config {name}: 'model' and 'pretrain' must be JSON objects of config fields")
    model, pretrain = move_pattern(dict(model), dict(pretrain))
    base = model.pop("preset", None)
    if base is not None:
        if base not in PRESETS:
            raise ConfigError(f"--config {name}: model preset {base!r} is not one of {', '.join(PRESETS)}")
        model = {**read_preset(base).model, **model}
    return Preset(name=name, model=model, pretrain=pretrain, comment=str(data.get("comment", "")))
