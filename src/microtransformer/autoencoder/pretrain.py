"""Pre-train the chunk auto-encoder: dataset, sampler, loop, checkpoints, resume.

The auto-encoder tokenizer needs a network that turns every frequent chunk
into a code it decodes back exactly. This module trains that network on the
chunks of a corpus.

**Data.** Every document is cut at newlines into blocks of about
``split_block_chars`` characters; a seeded coin sends each block to the
validation split with probability ``val_fraction``. Blocks (not unique
chunks) are split so that validation looks like new text: mostly chunks the
model has seen, plus the unseen ones new text brings. Validation metrics are
weighted by occurrence, i.e. they are what a tokenizer would see.

**Sampling.** A batch draws *unique* training chunks with probability
proportional to ``count ** sample_alpha`` (0.5 by default). Uniform over
occurrences (alpha 1) spends most steps on ``" the"`` and ``","``; uniform over
unique chunks (alpha 0) spends them on typos seen once. The square root keeps
frequent chunks frequent without starving the tail the vocabulary also needs.

**Checkpoints.** ``checkpoint_dir/checkpoint_step_{N}/`` holds
``model.safetensors`` + ``config.json`` (loadable with
:func:`~microtransformer.autoencoder.model.load_autoencoder`),
``optimizer.safetensors`` (AdamW and the code memory's SparseAdam tensors,
torch and sampler RNG) and
``training_state.json`` (step, metrics, history; written last). Each
directory is assembled under a temporary name and renamed into place, so an
interrupted save never leaves a half checkpoint. The last ``keep_last`` step
checkpoints are kept; ``checkpoint_best/`` is the one with the best
validation char accuracy; ``checkpoint_dir/training_state.json`` mirrors the
latest state.

**Resume.** ``resume=ckpt/checkpoint_step_1000`` with ``steps=2000``
continues at step 1001 with the same optimizer, RNG and sampler state and
ends with ``checkpoint_step_2000``. The cosine schedule is planned over the
current ``steps``; resuming with the original ``steps`` reproduces an
uninterrupted run exactly. ``max_seconds`` stops a run early (with a
checkpoint) when a wall-clock budget is spent.

**Freezing the codes.** With ``encoder_fraction < 1`` the encoder's
learning rate decays to zero over that share of the steps and the encoder
is then frozen (no encoder backward pass: the later steps are faster); the
decoder keeps training on fixed codes. Why: a code flips when *any* of its
8 dimensions crosses a rounding boundary, so while the encoder trains the
codes keep moving and the decoder chases them — in a measured run 82% of
the 2,000 most frequent chunks changed code between steps 6,000 and 6,359.
Freezing halfway raised val char accuracy in ~100 s of CPU from 0.78 to
0.87 on the shared books. Chunks that collide at the freeze stay collided;
``mtx autoencoder analyze`` counts them. ``separation_weight > 0`` adds a
loss that pushes colliding training strings apart while the encoder trains
(:mod:`~microtransformer.autoencoder.separation`).

**Batch size.** 64 by default: on a CPU the cost per *sample* is the same
from batch 64 to 256 (~0.23 ms each for the design model, one thread), so
small batches give four times the updates per minute, and updates are what
memorizing chunks needs (val char accuracy 0.81 after 3000 steps of 64 vs
0.74 after 1000 steps of 256, about the same wall time).

>>> result = pretrain_autoencoder(["some text " * 100], model_config=AutoEncoderConfig.preset("tiny"),
...     config=PretrainConfig(steps=20), checkpoint_dir=None, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from microtransformer.config import JSONConfig
from microtransformer.errors import CheckpointError, ConfigError, CorpusError
from microtransformer.io import (
    DirectoryLock,
    PathLike,
    atomic_replace_dir,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    remove_stale_temporaries,
)
from microtransformer.autoencoder.model import (
    AutoEncoderConfig,
    AutoEncoderOutput,
    ChunkAutoEncoder,
    chunks_to_tensor,
    evaluate_chunks,
    load_autoencoder,
    save_autoencoder,
)
from microtransformer.autoencoder.vocab import string_priorities
from microtransformer.autoencoder.chunking import iter_chunks
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN
from microtransformer.training.checkpoint import (
    load_optimizer_state,
    optimizer_tensors,
    restore_rng,
    rng_tensors,
)
from microtransformer.autoencoder.augment import augment_chunk
from microtransformer.autoencoder.separation import CollisionTable, separation_loss
from microtransformer.training.schedule import cosine_lr_factor

__all__ = [
    "BEST_NAME",
    "ChunkDataset",
    "PretrainConfig",
    "PretrainResult",
    "checkpoint_step_name",
    "list_step_checkpoints",
    "load_pretrain_checkpoint",
    "pretrain_autoencoder",
]

logger = logging.getLogger(__name__)

BEST_NAME = "checkpoint_best"
STATE_NAME = "training_state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
_COLLISIONS_KEY = "separation.last_code"
STEP_PREFIX = "checkpoint_step_"


def checkpoint_step_name(step: int) -> str:
    return f"{STEP_PREFIX}{step}"


@dataclass(frozen=True)
class PretrainConfig(JSONConfig):
    """How to pre-train; stored in every checkpoint's ``config.json`` under ``"pretrain"``."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    sample_alpha: float = 0.5
    val_fraction: float = 0.05
    split_block_chars: int = 2048
    val_max_unique: int = 20000
    eval_every: int = 500
    checkpoint_every: int = 1000
    keep_last: int = 5
    log_every: int = 50
    seed: int = 0
    max_seconds: float = 0.0
    encoder_fraction: float = 1.0
    decoder_lr_mult: float = 1.0
    memory_lr: float = 0.03
    piece_share: float = 0.0
    n_pieces: int = 16384
    augment_share: float = 0.0
    separation_weight: float = 0.0
    separation_margin: float = 1.0
    pattern: str = GPT4_SPLIT_PATTERN

    def __post_init__(self) -> None:
        ints = ("steps", "batch_size", "eval_every", "checkpoint_every", "keep_last", "log_every", "split_block_chars", "val_max_unique")
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0 (grad_clip 0 disables clipping)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.sample_alpha <= 1.0:
            raise ConfigError(f"sample_alpha must be in [0, 1] (0.5 = count^0.5), got {self.sample_alpha}")
        if not 0.0 < self.encoder_fraction <= 1.0:
            raise ConfigError(f"encoder_fraction must be in (0, 1] (1 = train the encoder throughout), got {self.encoder_fraction}")
        if not (self.memory_lr > 0 and math.isfinite(self.memory_lr)):
            raise ConfigError(f"memory_lr must be a positive number, got {self.memory_lr}")
        if not (self.decoder_lr_mult > 0 and math.isfinite(self.decoder_lr_mult)):
            raise ConfigError(f"decoder_lr_mult must be a positive number, got {self.decoder_lr_mult}")
        if not (self.max_seconds >= 0 and math.isfinite(self.max_seconds)):
            raise ConfigError(f"max_seconds must be >= 0 (0 = no time limit), got {self.max_seconds}")
        if not 0.0 <= self.piece_share < 1.0:
            raise ConfigError(f"piece_share must be in [0, 1) (0 = whole chunks only), got {self.piece_share}")
        if not 0.0 <= self.augment_share < 1.0:
            raise ConfigError(f"augment_share must be in [0, 1) (0 = no synthetic variants), got {self.augment_share}")
        if not (self.separation_weight >= 0 and math.isfinite(self.separation_weight)):
            raise ConfigError(f"separation_weight must be >= 0 (0 = off), got {self.separation_weight}")
        if not (self.separation_margin > 0 and math.isfinite(self.separation_margin)):
            raise ConfigError(f"separation_margin must be a positive number of grid steps, got {self.separation_margin}")
        if not isinstance(self.n_pieces, int) or isinstance(self.n_pieces, bool) or self.n_pieces < 0:
            raise ConfigError(f"n_pieces must be an int >= 0, got {self.n_pieces!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class ChunkDataset:
    """Unique chunks with counts for the train and validation splits (most frequent first)."""

    train_chunks: list[bytes]
    train_counts: list[int]
    val_chunks: list[bytes]
    val_counts: list[int]
    max_chunk_len: int

    @classmethod
    def from_counters(cls, train: Counter[bytes], val: Counter[bytes], max_chunk_len: int) -> ChunkDataset:
        def ordered(c: Counter[bytes]) -> tuple[list[bytes], list[int]]:
            items = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
            return [k for k, _ in items], [v for _, v in items]

        tc, tn = ordered(train)
        vc, vn = ordered(val)
        return cls(tc, tn, vc, vn, max_chunk_len)

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[str],
        *,
        max_chunk_len: int = 16,
        val_fraction: float = 0.05,
        split_block_chars: int = 2048,
        seed: int = 0,
        pattern: str = GPT4_SPLIT_PATTERN,
    ) -> ChunkDataset:
        """Chunk ``documents`` and split newline-cut blocks into train/val (see module docstring)."""
        rng = random.Random(seed)
        train: Counter[bytes] = Counter()
        val: Counter[bytes] = Counter()
        for doc in documents:
            if not isinstance(doc, str):
                raise ConfigError(f"documents must be str, got {type(doc).__name__}")
            pos, n = 0, len(doc)
            while pos < n:
                end = min(n, pos + split_block_chars)
                if end < n:
                    nl = doc.rfind("\n", pos, end)
                    if nl > pos:
                        end = nl + 1
                target = val if (val_fraction > 0 and rng.random() < val_fraction) else train
                target.update(iter_chunks(doc[pos:end], max_chunk_len=max_chunk_len, pattern=pattern))
                pos = end
        if not train:
            if not val:
                raise CorpusError("the corpus has no text to chunk; point --data_file/--data_dir at some text")
            train, val = val, Counter()
        if val_fraction > 0 and not val:
            logger.warning("validation split is empty (corpus too small for val_fraction=%s); validating on train chunks", val_fraction)
        return cls.from_counters(train, val, max_chunk_len)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over both splits: a resumed run warns when its data changed."""
        h = hashlib.sha256()
        for chunks, counts in ((self.train_chunks, self.train_counts), (self.val_chunks, self.val_counts)):
            for c, n in zip(chunks, counts):
                h.update(len(c).to_bytes(1, "little") + c + n.to_bytes(8, "little"))
            h.update(b"|")
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        train_set = set(self.train_chunks)
        val_occ = sum(self.val_counts)
        unseen = sum(n for c, n in zip(self.val_chunks, self.val_counts) if c not in train_set)
        return {
            "train_unique": len(self.train_chunks),
            "train_occurrences": sum(self.train_counts),
            "val_unique": len(self.val_chunks),
            "val_occurrences": val_occ,
            "val_unseen_occurrence_rate": unseen / val_occ if val_occ else 0.0,
            "max_chunk_len": self.max_chunk_len,
            "fingerprint": self.fingerprint,
        }

    def validation_set(self, max_unique: int) -> tuple[list[bytes], list[int]]:
        """The most frequent ``max_unique`` val chunks with counts (train chunks if val is empty)."""
        if self.val_chunks:
            return self.val_chunks[:max_unique], self.val_counts[:max_unique]
        return self.train_chunks[:max_unique], self.train_counts[:max_unique]


@dataclass
class PretrainResult:
    """What :func:`pretrain_autoencoder` returns; ``model`` is the final model (eval mode)."""

    model: ChunkAutoEncoder
    step: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_val_char_accuracy: float | None
    last_eval: dict[str, float] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------ checkpoints
def list_step_checkpoints(checkpoint_dir: PathLike) -> list[Path]:
    """Complete ``checkpoint_step_N`` directories, oldest step first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(STEP_PREFIX) and p.name[len(STEP_PREFIX) :].isdigit() and (p / STATE_NAME).is_file():
            found.append((int(p.name[len(STEP_PREFIX) :]), p))
    return [p for _, p in sorted(found)]


def load_pretrain_checkpoint(path: PathLike) -> tuple[ChunkAutoEncoder, dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """``(model, config_json, training_state, optimizer_and_rng_tensors)`` of a step checkpoint."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a checkpoint_step_N directory from --checkpoint_dir")
    if not (path / STATE_NAME).is_file():
        raise CheckpointError(f"{path} has no {STATE_NAME}: the checkpoint is incomplete; resume from another checkpoint_step_N")
    model = load_autoencoder(path)
    try:
        cfg = read_json(path / "config.json")
        state = read_json(path / STATE_NAME)
        int(state["step"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} has a damaged config.json or {STATE_NAME} ({exc})") from exc
    tensors: dict[str, torch.Tensor] = {}
    if (path / OPTIMIZER_NAME).is_file():
        try:
            tensors = load_file(str(path / OPTIMIZER_NAME))
        except Exception as exc:
            raise CheckpointError(f"{path / OPTIMIZER_NAME} is damaged ({exc}); resume from another checkpoint") from exc
    return model, cfg, state, tensors


# ------------------------------------------------------------------ training
def _memory_params(model: ChunkAutoEncoder) -> list[torch.nn.Parameter]:
    return [model.decoder.memory.weight] if model.decoder.memory is not None else []


def _adamw(model: ChunkAutoEncoder, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups (encoder, decoder), fused where torch supports it (~15% faster on CPU).

    The decoder's code memory (sparse gradients) is left to :class:`torch.optim.SparseAdam`.
    """
    memory = {id(p) for p in _memory_params(model)}
    groups = [
        {"params": list(model.encoder.parameters()), "name": "encoder"},
        {"params": [p for p in model.decoder.parameters() if id(p) not in memory], "name": "decoder"},
    ]
    try:
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _training_pieces(dataset: ChunkDataset, config: PretrainConfig, max_len: int) -> list[tuple[bytes, int]]:
    """Sub-chunk pieces to train on beside the whole chunks, with their counts (empty unless ``piece_share > 0``).

    The ``n_pieces`` best substrings of the training chunks that are not
    whole chunks themselves (:func:`~microtransformer.autoencoder.vocab.string_priorities`,
    the candidates the export's vocabulary is chosen from), each with the
    number of chunk occurrences containing it: the export can only keep
    strings the network reconstructs, and a network trained on whole chunks
    alone reconstructs well under 1 % of such pieces. Derived from the
    dataset and config alone, so a resumed run gets the same list.
    """
    if config.piece_share <= 0 or config.n_pieces == 0:
        return []
    counts = dict(zip(dataset.train_chunks, dataset.train_counts))
    prio = string_priorities(counts, max_len=max_len, max_strings=config.n_pieces + len(counts))
    ranked = [x for x in prio if x not in counts][: config.n_pieces]
    return [(x, prio[x] // (len(x) - 1)) for x in ranked]  # priority = (len - 1) * occurrences


class _Trainer:
    """State of one pre-training run (kept private: :func:`pretrain_autoencoder` is the API)."""

    def __init__(
        self,
        dataset: ChunkDataset,
        model_config: AutoEncoderConfig,
        config: PretrainConfig,
        checkpoint_dir: Path | None,
        device: str,
        extra_config: Mapping[str, Any] | None,
    ) -> None:
        if dataset.max_chunk_len != model_config.max_chunk_len:
            raise ConfigError(
                f"dataset chunks are capped at {dataset.max_chunk_len} bytes but the model's max_chunk_len is "
                f"{model_config.max_chunk_len}; build the dataset with the model's max_chunk_len"
            )
        self.dataset, self.config, self.checkpoint_dir, self.device = dataset, config, checkpoint_dir, torch.device(device)
        self.extra_config = dict(extra_config or {})
        torch.manual_seed(config.seed)
        self.model = ChunkAutoEncoder(model_config).to(self.device)
        self.optimizer = _adamw(self.model, config)
        memory = _memory_params(self.model)
        self.memory_optimizer = torch.optim.SparseAdam(memory, lr=config.memory_lr) if memory else None
        self._dense_params = [p for p in self.model.parameters() if all(p is not q for q in memory)]
        self.sampler = torch.Generator().manual_seed(config.seed)
        self.pieces = _training_pieces(dataset, config, model_config.max_chunk_len)
        self.strings = dataset.train_chunks + [p for p, _ in self.pieces]
        self.x_all = chunks_to_tensor(self.strings, model_config.max_chunk_len)  # (N+P, T)
        probs = torch.tensor(dataset.train_counts, dtype=torch.float64) ** config.sample_alpha  # (N,)
        if self.pieces:
            piece_probs = torch.tensor([n for _, n in self.pieces], dtype=torch.float64) ** config.sample_alpha  # (P,)
            probs = torch.cat([probs / probs.sum() * (1 - config.piece_share), piece_probs / piece_probs.sum() * config.piece_share])
        self.probs = probs  # (N+P,)
        self.collisions = CollisionTable(len(self.strings)) if config.separation_weight > 0 else None
        self.val_chunks, self.val_counts = dataset.validation_set(config.val_max_unique)
        self.step = 0
        self._encoder_trainable = True
        self.best: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.elapsed = 0.0

    # -- resume
    def load(self, path: Path) -> None:
        model, cfg, state, tensors = load_pretrain_checkpoint(path)
        if model.config != self.model.config:
            raise CheckpointError(
                f"{path} was trained with a different model config; resume with the checkpoint's config "
                "(the CLI does this when --config is left out)"
            )
        self.model.load_state_dict(model.state_dict())
        if "optimizer" in state and tensors:
            load_optimizer_state(self.optimizer, tensors, state["optimizer"])
            if self.memory_optimizer is not None and "memory_optimizer" in state:
                prefix = "memory_"
                mem = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                load_optimizer_state(self.memory_optimizer, mem, state["memory_optimizer"])
            for g in self.optimizer.param_groups:  # new run's hyper-parameters win (lr is set per step)
                g["weight_decay"] = self.config.weight_decay
        restore_rng(tensors)
        if "rng.sampler" in tensors:
            self.sampler.set_state(tensors["rng.sampler"])
        if self.collisions is not None and _COLLISIONS_KEY in tensors:
            self.collisions.load_state(tensors[_COLLISIONS_KEY])
        self.step = int(state["step"])
        self.best = state.get("best")
        self.history = list(state.get("history", []))
        self.evals = list(state.get("evals", []))
        self.elapsed = float(state.get("elapsed_s", 0.0))
        old_fp = state.get("dataset", {}).get("fingerprint")
        if old_fp and old_fp != self.dataset.fingerprint:
            logger.warning("resuming on different data than %s was trained on (dataset fingerprint changed)", path)
        logger.info("resumed from %s at step %d", path, self.step)

    # -- one step
    def lr_factor(self, step: int) -> float:
        """Warmup + cosine multiplier at ``step`` (1-based) over ``steps``."""
        c = self.config
        return cosine_lr_factor(step - 1, warmup_steps=c.warmup_steps, total_steps=c.steps, min_ratio=c.min_lr_ratio)

    def lr_at(self, step: int) -> float:
        """Decoder learning rate at ``step`` (the code memory uses ``memory_lr`` on the same schedule)."""
        return self.config.decoder_lr_mult * self.config.lr * self.lr_factor(step)

    @property
    def encoder_steps(self) -> int:
        return self.config.steps if self.config.encoder_fraction >= 1.0 else max(1, round(self.config.encoder_fraction * self.config.steps))

    def encoder_lr_at(self, step: int) -> float:
        """Encoder learning rate: like the decoder's, but with ``encoder_fraction < 1`` it decays to
        zero over that share of the steps and the encoder is then frozen."""
        c = self.config
        if c.encoder_fraction >= 1.0:
            return c.lr * cosine_lr_factor(step - 1, warmup_steps=c.warmup_steps, total_steps=c.steps, min_ratio=c.min_lr_ratio)
        if step > self.encoder_steps:
            return 0.0
        return c.lr * cosine_lr_factor(step - 1, warmup_steps=c.warmup_steps, total_steps=self.encoder_steps, min_ratio=0.0)

    def train_step(self) -> tuple[float, float, torch.Tensor, torch.Tensor, int]:
        c = self.config
        self.step += 1
        enc_lr = self.encoder_lr_at(self.step)
        self.optimizer.param_groups[0]["lr"] = enc_lr
        self.optimizer.param_groups[1]["lr"] = self.lr_at(self.step)
        if self.memory_optimizer is not None:
            self.memory_optimizer.param_groups[0]["lr"] = self.config.memory_lr * self.lr_factor(self.step)
        frozen = enc_lr == 0.0
        if frozen == self._encoder_trainable:  # freeze/unfreeze: no encoder backward while frozen
            self.model.encoder.requires_grad_(not frozen)
            self._encoder_trainable = not frozen
        self.model.encoder.train(not frozen)  # frozen: fixed codes (BatchNorm uses its running stats)
        rows = torch.multinomial(self.probs, c.batch_size, replacement=True, generator=self.sampler)  # (B,)
        x = self.x_all[rows]  # (B, T)
        augmented: list[int] = []
        if c.augment_share > 0:
            x, augmented = self._augment(x, rows)
        x = x.to(self.device)
        out = self.model(x)
        self.optimizer.zero_grad(set_to_none=True)
        if self.memory_optimizer is not None:
            self.memory_optimizer.zero_grad(set_to_none=True)
        assert out.loss is not None
        total, n_pairs = out.loss, 0
        if self.collisions is not None and not frozen:
            sep, n_pairs = self._separation(out, rows, augmented)
            total = total + c.separation_weight * sep
        total.backward()
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self._dense_params, c.grad_clip)
        self.optimizer.step()
        if self.memory_optimizer is not None:
            self.memory_optimizer.step()
        with torch.no_grad():
            pred = out.logits.argmax(-1)
            is_byte = x != 256
            acc = float(((pred == x) & is_byte).sum()) / max(int(is_byte.sum()), 1)
        return out.loss.item(), acc, rows, out.indices.detach().cpu(), n_pairs

    def _augment(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Replace ``augment_share`` of the batch by synthetic variants (:mod:`.augment`);
        returns the new batch and the replaced positions."""
        pick = (torch.rand(len(rows), generator=self.sampler) < self.config.augment_share).nonzero().flatten().tolist()
        if not pick:
            return x, pick
        max_len = self.model.config.max_chunk_len
        variants = [augment_chunk(self.strings[int(rows[i])], self.sampler, max_len) for i in pick]
        x = x.clone()
        x[pick] = chunks_to_tensor(variants, max_len)
        return x, pick

    def _separation(self, out: AutoEncoderOutput, rows: torch.Tensor, augmented: list[int]) -> tuple[torch.Tensor, int]:
        """Separation loss (:mod:`.separation`) between the batch's strings and the other strings
        last seen at their codes; the partners are re-encoded so both sides move."""
        assert self.collisions is not None and out.latent is not None
        skip = set(augmented)
        positions = [i for i in range(len(rows)) if i not in skip]  # synthetic variants are not table rows
        row_list, code_list = rows.tolist(), out.indices.tolist()
        pairs = self.collisions.record_and_find_partners([row_list[i] for i in positions], [code_list[i] for i in positions])
        if not pairs:
            return out.latent.new_zeros(()), 0
        fsq = self.model.encoder.fsq
        mine = torch.tensor([positions[p] for p, _ in pairs], device=self.device)  # (P,)
        partner_rows = [r for _, r in pairs]
        z_partner = self.model.encoder.pre_quantize(self.x_all[partner_rows].to(self.device))  # (P, D)
        with torch.no_grad():
            self.collisions.update(partner_rows, fsq(z_partner)[1].tolist())
        loss = separation_loss(fsq.bound(out.latent[mine].float()), fsq.bound(z_partner.float()), self.config.separation_margin)
        return loss.sum() / len(rows), len(pairs)

    def evaluate(self) -> dict[str, float]:
        metrics = evaluate_chunks(self.model, self.val_chunks, self.val_counts)
        record = {"step": self.step, **{f"val_{k}": v for k, v in metrics.items()}}
        self.evals.append(record)
        return metrics

    # -- saving
    def _config_json(self) -> dict[str, Any]:
        return {"pretrain": self.config.to_dict(), **self.extra_config}

    def _state_json(self) -> dict[str, Any]:
        _, opt_json = optimizer_tensors(self.optimizer)
        extra = {}
        if self.memory_optimizer is not None:
            extra["memory_optimizer"] = optimizer_tensors(self.memory_optimizer)[1]
        return {
            **extra,
            "step": self.step,
            "steps": self.config.steps,
            "best": self.best,
            "elapsed_s": round(self.elapsed, 3),
            "dataset": self.dataset.summary(),
            "history": self.history,
            "evals": self.evals,
            "optimizer": opt_json,
        }

    def _write(self, directory: Path) -> None:
        from safetensors.torch import save

        save_autoencoder(self.model, directory, extra_config=self._config_json())
        opt_t, _ = optimizer_tensors(self.optimizer)
        if self.memory_optimizer is not None:
            opt_t.update({f"memory_{k}": v for k, v in optimizer_tensors(self.memory_optimizer)[0].items()})
        tensors = {**opt_t, **rng_tensors(), "rng.sampler": self.sampler.get_state()}
        if self.collisions is not None:
            tensors[_COLLISIONS_KEY] = self.collisions.last_code
        atomic_write_bytes(directory / OPTIMIZER_NAME, save(tensors))
        atomic_write_json(directory / STATE_NAME, {**self._state_json(), "checkpoint": directory.name})  # last

    def save(self, best: bool) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        root = self.checkpoint_dir
        path = atomic_replace_dir(root / checkpoint_step_name(self.step), lambda d: self._write(d))
        if best:
            atomic_replace_dir(root / BEST_NAME, lambda d: self._write(d))
        atomic_write_json(root / STATE_NAME, {**self._state_json(), "checkpoint": path.name})
        for old in list_step_checkpoints(root)[: -self.config.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        logger.debug("saved %s%s", path, " (best)" if best else "")
        return path


def pretrain_autoencoder(
    documents: Iterable[str] | None = None,
    *,
    dataset: ChunkDataset | None = None,
    model_config: AutoEncoderConfig | None = None,
    config: PretrainConfig | None = None,
    checkpoint_dir: PathLike | None = None,
    resume: PathLike | None = None,
    device: str = "cpu",
    progress: bool = True,
    extra_config: Mapping[str, Any] | None = None,
) -> PretrainResult:
    """Train a :class:`ChunkAutoEncoder` on the chunks of ``documents`` (or a ready ``dataset``).

    ``checkpoint_dir=None`` trains in memory only (used when a tokenizer is
    trained in one call). ``resume`` continues a ``checkpoint_step_N``;
    without an explicit ``model_config`` the checkpoint's config is used.
    ``extra_config`` (JSON-able, e.g. where the corpus came from) is stored
    in every checkpoint's ``config.json``. ``checkpoint_dir`` is locked while
    this runs (a second writer gets :class:`~microtransformer.errors.DirectoryInUseError`)
    and what a killed run left half-written there is removed first.
    """
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is None:
        return _pretrain(documents, dataset, model_config, config, None, resume, device, progress, extra_config)
    with DirectoryLock(ckpt_dir, purpose="mtx autoencoder pretrain"):  # one writer per checkpoint folder
        remove_stale_temporaries(ckpt_dir)
        return _pretrain(documents, dataset, model_config, config, ckpt_dir, resume, device, progress, extra_config)


def _pretrain(
    documents: Iterable[str] | None,
    dataset: ChunkDataset | None,
    model_config: AutoEncoderConfig | None,
    config: PretrainConfig | None,
    ckpt_dir: Path | None,
    resume: PathLike | None,
    device: str,
    progress: bool,
    extra_config: Mapping[str, Any] | None,
) -> PretrainResult:
    config = config or PretrainConfig()
    resume_path = Path(resume) if resume is not None else None
    if resume_path is not None:
        _, old_cfg, old_state, _ = load_pretrain_checkpoint(resume_path)
        if model_config is None:
            model_config = AutoEncoderConfig.from_dict(old_cfg["model"])
        if int(old_state["step"]) >= config.steps:
            raise ConfigError(
                f"{resume_path} is already at step {old_state['step']}; pass --steps larger than that to train further"
            )
    model_config = model_config or AutoEncoderConfig()
    if dataset is None:
        if documents is None:
            raise ConfigError("pass documents or a ChunkDataset to pre-train on")
        dataset = ChunkDataset.from_documents(
            documents,
            max_chunk_len=model_config.max_chunk_len,
            val_fraction=config.val_fraction,
            split_block_chars=config.split_block_chars,
            seed=config.seed,
            pattern=config.pattern,
        )
    summary = dataset.summary()
    logger.info(
        "chunk dataset: %d unique train chunks (%d occurrences), %d unique val chunks (%d occurrences, %.1f%% unseen)",
        summary["train_unique"], summary["train_occurrences"], summary["val_unique"], summary["val_occurrences"],
        100 * summary["val_unseen_occurrence_rate"],
    )
    trainer = _Trainer(dataset, model_config, config, ckpt_dir, device, extra_config)
    if resume_path is not None:
        trainer.load(resume_path)
    logger.info("auto-encoder: %d parameters, codebook %d codes", trainer.model.num_parameters(), trainer.model.codebook_size)

    c = config
    last_ckpt: Path | None = None
    last_eval: dict[str, float] | None = None
    sums = [0.0, 0.0, 0.0, 0.0, 0.0, 0]  # loss, acc, distinct codes, distinct chunks (per batch), collision pairs, steps
    start = time.perf_counter()
    t0_elapsed = trainer.elapsed
    bar = tqdm(total=c.steps, initial=trainer.step, desc="pretrain", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        while trainer.step < c.steps:
            loss, acc, rows, codes, pairs = trainer.train_step()
            if not math.isfinite(loss):
                raise CheckpointError(
                    f"loss became {loss} at step {trainer.step}; lower --lr or resume from an earlier checkpoint"
                )
            sums[0] += loss
            sums[1] += acc
            sums[2] += float(torch.unique(codes).numel())
            sums[3] += float(torch.unique(rows).numel())
            sums[4] += pairs
            sums[5] += 1
            bar.update(1)
            step = trainer.step
            trainer.elapsed = t0_elapsed + time.perf_counter() - start
            out_of_time = c.max_seconds > 0 and time.perf_counter() - start >= c.max_seconds
            if step % c.log_every == 0 or step == c.steps or out_of_time:
                n = sums[5]
                record = {
                    "step": step,
                    "loss": sums[0] / n,
                    "char_accuracy": sums[1] / n,
                    "distinct_codes": sums[2] / n,
                    "distinct_chunks": sums[3] / n,
                    "collision_pairs": sums[4] / n,
                    "lr": trainer.lr_at(step),
                    "encoder_lr": trainer.encoder_lr_at(step),
                    "elapsed_s": round(trainer.elapsed, 3),
                }
                trainer.history.append(record)
                bar.set_postfix(
                    loss=f"{record['loss']:.3f}",
                    acc=f"{record['char_accuracy']:.3f}",
                    codes=f"{record['distinct_codes']:.0f}/{record['distinct_chunks']:.0f}",
                )
                sums = [0.0, 0.0, 0.0, 0.0, 0.0, 0]
            is_ckpt = step % c.checkpoint_every == 0 or step == c.steps or out_of_time
            if step % c.eval_every == 0 or is_ckpt:
                last_eval = trainer.evaluate()
                improved = trainer.best is None or last_eval["char_accuracy"] > trainer.best["val_char_accuracy"]
                if improved:
                    trainer.best = {"step": step, "val_char_accuracy": last_eval["char_accuracy"], "val_exact_rate": last_eval["exact_rate"]}
                logger.info(
                    "step %d: val char acc %.4f, exact %.4f, loss %.4f, %d codes for %d chunks%s",
                    step, last_eval["char_accuracy"], last_eval["exact_rate"], last_eval["loss"],
                    int(last_eval["distinct_codes"]), int(last_eval["chunks"]), " (best)" if improved else "",
                )
                if is_ckpt:
                    last_ckpt = trainer.save(best=improved)
                elif improved and ckpt_dir is not None:
                    # best between checkpoints: keep it without waiting for the next step checkpoint
                    atomic_replace_dir(ckpt_dir / BEST_NAME, lambda d: trainer._write(d))
            if out_of_time:
                logger.warning(
                    "stopping at step %d of %d: max_seconds=%s reached (resume with --resume to continue)",
                    step, c.steps, c.max_seconds,
                )
                break
    finally:
        bar.close()
    trainer.model.eval()
    best_dir = ckpt_dir / BEST_NAME if ckpt_dir is not None and (ckpt_dir / BEST_NAME).is_dir() else None
    return PretrainResult(
        model=trainer.model,
        step=trainer.step,
        last_checkpoint=last_ckpt,
        best_checkpoint=best_dir,
        best_val_char_accuracy=trainer.best["val_char_accuracy"] if trainer.best else None,
        last_eval=last_eval,
        history=trainer.history,
        evals=trainer.evals,
        seconds=time.perf_counter() - start,
    )
