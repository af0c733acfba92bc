"""The training loop: AdamW, warmup + cosine, grad accumulation, eval, checkpoints, exact resume.

One :class:`Trainer` drives any model of :mod:`microtransformer.models` over
any data source with ``get_batch(split, batch_size, rng)`` (token shards or
the in-memory :class:`~microtransformer.data.loader.BPEDataset`).

Reproducibility is designed in rather than hoped for:

- The batches of step ``t`` come from ``numpy.random.default_rng((seed, 0,
  t))`` (``sampling="random"``) or from rows ``t * rows_per_step`` on of a
  seeded epoch-by-epoch deal (``sampling="epoch"``,
  :class:`~microtransformer.data.loader.EpochOrder`): no data-RNG state to
  save, and a resumed run draws exactly the batches the uninterrupted run
  would have. Under DDP every rank draws that same global batch and keeps
  its own rows (:func:`.distributed.rank_batch`).
- The learning rate is a pure function of ``t`` (:mod:`.schedule`).
- Weights (fp32), AdamW moments and step counts, and the torch RNG (dropout;
  every rank's under DDP) are saved bit for bit, so on CPU in fp32 "2N steps"
  equals "N steps, stop, resume for N" to the last bit
  (``tests/training/test_trainer.py`` checks it, ``test_torchrun.py`` under ``torchrun``).

Gradient accumulation divides each micro-batch loss by the number of
micro-steps, so the summed gradient is the gradient of the mean loss over the
whole (equal-sized micro-batches) batch: the same as one big batch.

>>> trainer = Trainer(model, data, TrainConfig(max_steps=200), "runs/a", tokenizer=tok)  # doctest: +SKIP
>>> result = trainer.fit()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from microtransformer.config import JSONConfig
from microtransformer.data.loader import EpochOrder, WindowOrder
from microtransformer.data.new_names import NameSwap
from microtransformer.data.token_counts import token_counts
from microtransformer.data.typography import TypographySwap
from microtransformer.device import (
    PRECISIONS,
    PrecisionChoice,
    choose_device,
    choose_precision,
)
from microtransformer.errors import CheckpointError, ConfigError, DataError
from microtransformer.evaluation.metrics import (
    bits_per_byte,
    nats_and_bytes,
    perplexity,
    token_nats,
)
from microtransformer.io import DirectoryLock
from microtransformer.models import unwrap_model
from microtransformer.models.line_columns import TokenLayout
from microtransformer.models.window_cache import MAX_TOKENS as CALIBRATION_MAX_TOKENS
from microtransformer.models.window_cache import Calibration, calibrate
from microtransformer.training import checkpoint as ckpt
from microtransformer.training.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    detect_distributed,
    gather_rng_states,
    init_distributed,
    rank_batch,
    restore_rank_rng,
)
from microtransformer.training.loop import StopFlag, adamw, progress_bar
from microtransformer.training.optim import ORTHOGONALIZERS, MuonAdamW, OptimConfig, muon_groups, muon_momentum
from microtransformer.training.schedule import MIN_LR_RATIO, LRSchedule, cosine_progress, wsd_replanned_ratio

logger = logging.getLogger(__name__)

_EVAL_STREAM = 0x5EED_E7A1  # separates eval windows from training windows in the seed sequence
OPTIMIZERS = ("adamw", "muon")
SAMPLINGS = ("random", "epoch")
PROVISIONAL_MAX_STEPS = 10**9
BUDGET_CALIBRATION_STEPS = 8  # steps timed (after the first, which pays warm-up) before a time budget fixes max_steps
BUDGET_CALIBRATION_SHARE = 0.02  # ... and at least this share of the budget, so a fast step is timed over seconds
BUDGET_REPLAN_AT = (0.25, 0.5, 0.75, 0.9)  # shares of a time budget where max_steps is re-estimated from the steps since the last plan
#: the window cache's calibration (after the last step) reads each validation token once, for 0.3-0.4 of a training
#: step's time per token on a CPU (forward passes and its grid); a time budget keeps this share (with a margin) for it
CALIBRATION_STEP_SHARE = 0.5


def budget_calibrated(steps_run: int, train_time: float, budget: float) -> bool:
    """Whether enough steps have been timed to fix ``max_steps`` for a ``budget`` of seconds.

    >>> budget_calibrated(9, 1.0, 600.0), budget_calibrated(9, 12.0, 600.0)
    (False, True)
    """
    return steps_run > BUDGET_CALIBRATION_STEPS and train_time >= BUDGET_CALIBRATION_SHARE * budget


class BatchSource(Protocol):
    """What the trainer needs from data: ``get_batch`` and the vocab it was encoded with.

    ``get_batch`` returns inputs and already-shifted targets ``(B, T)``; targets
    of ``-100`` are left out of the loss, the eval token count and bits per byte.
    Under DDP it is also called with ``rank=`` and ``world_size=`` when it takes
    them (see :func:`.distributed.rank_batch`). ``rng`` is a numpy generator,
    or with ``sampling="epoch"`` an :class:`~microtransformer.data.loader.EpochOrder`
    (sources that draw with :func:`~microtransformer.data.loader.window_starts` take both).
    """

    block_size: int
    vocab_size: int

    def get_batch(
        self, split: str, batch_size: int, rng: WindowOrder | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def _split_ids(data: BatchSource, split: str) -> Any:
    """A split's token ids (an array, or a stream over shards that slices into one), else None."""
    if hasattr(data, "memmap"):
        return data.memmap(split)
    if isinstance(getattr(data, "data", None), dict):
        return data.data.get(split)
    return None


@dataclass(frozen=True)
class TrainConfig(JSONConfig):
    """Optimisation settings; stored as JSON in every checkpoint.

    ``batch_size`` is per micro-step and per process; one optimizer step sees
    ``batch_size * grad_accum_steps * world_size`` sequences.

    ``optimizer="muon"`` trains the blocks' weight matrices with Muon at
    ``matrix_lr`` and the embeddings, head and gains with AdamW at
    ``embedding_lr``/``head_lr``/``scalar_lr`` (given at width 768, scaled by
    ``(n_embd / 768) ** -0.5``), the matrices decayed by
    ``matrix_weight_decay`` and the token (untied: a tied one is the head)
    and value tables by ``embedding_weight_decay``; ``lr``, ``beta1``, ``beta2`` and
    ``weight_decay`` are then unused. ``time_budget`` (seconds, 0 = off)
    replaces ``max_steps`` on a fresh run: the trainer times its first steps
    and sets ``max_steps`` (and so the schedule's length) to what fits.
    ``max_epochs`` (0 = off) caps a fresh run's ``max_steps``, given or
    planned, at that many passes over the training split
    (:meth:`Trainer.epoch_cap`); a resumed run keeps the count it is given.

    ``sampling="random"`` draws each training window at a uniform random
    offset (nanoGPT's ``get_batch``); ``"epoch"`` deals every window once per
    epoch in a shuffled order (:class:`~microtransformer.data.loader.EpochOrder`),
    so a run of a few epochs sees all of its text as often as the rest.
    ``new_names`` (0 = off) swaps the name tokens of that share of the
    training windows for made-up names (:mod:`~microtransformer.data.new_names`),
    so the model learns to copy a name from its context rather than recall it;
    ``typography`` (0 = off) re-sets the apostrophes, dashes and double quotes
    of that share in styles drawn per window (:mod:`~microtransformer.data.typography`),
    so the model reads a text's style from it rather than from its words.
    ``window_cache`` sets a GPT's window cache (:mod:`~microtransformer.models.window_cache`)
    after the last step: its two knobs chosen on the validation split.
    """

    max_steps: int = 1000
    batch_size: int = 16
    grad_accum_steps: int = 1
    lr: float = 1e-3
    warmup_steps: int = 100
    use_cosine: bool = True
    min_lr_ratio: float = MIN_LR_RATIO
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    keep_last: int = 5
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    optimizer: str = "adamw"
    lr_schedule: str = "cosine"
    warmdown_ratio: float = 0.4
    warmdown_shape: str = "linear"  # or "sqrt" (1 - sqrt cooldown)
    cosine_from_step: int = 0  # set by a time budget's re-plan of a cosine run: where its new length took over
    cosine_from_progress: float = 0.0  # and how far along its cosine it was there
    matrix_lr: float = OptimConfig.matrix_lr
    embedding_lr: float = OptimConfig.embedding_lr
    head_lr: float = OptimConfig.head_lr
    scalar_lr: float = OptimConfig.scalar_lr
    matrix_weight_decay: float = OptimConfig.weight_decay  # Muon's decoupled decay (times the LR) on the matrices
    embedding_weight_decay: float = OptimConfig.embedding_weight_decay  # AdamW, on the token (untied) and value tables
    orthogonalizer: str = OptimConfig.orthogonalizer
    muon_beta2: float = OptimConfig.muon_beta2
    momentum_warmup_steps: int = OptimConfig.momentum_warmup_steps  # Muon's momentum 0.85 -> 0.95 over these steps
    time_budget: float = 0.0
    max_epochs: float = 0.0  # > 0: a fresh run takes at most this many passes over the training split
    sampling: str = "random"  # what runs saved before this field existed drew
    new_names: float = 0.0  # the share of training windows whose name tokens become made-up names (needs a tokenizer)
    typography: float = 0.0  # the share of training windows whose quotes, apostrophes and dashes are re-set (tokenizer)
    window_cache: bool = False  # after the last step, set a GPT's window cache on the validation split

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_interval", "eval_iters", "keep_last"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0 (numpy seeds the data order with it), got {self.seed!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if min(self.weight_decay, self.matrix_weight_decay, self.embedding_weight_decay, self.grad_clip) < 0:
            raise ConfigError(
                "weight_decay, matrix_weight_decay, embedding_weight_decay and grad_clip must be >= 0 "
                "(grad_clip 0 disables clipping)"
            )
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"betas must be in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("matrix_lr", "embedding_lr", "head_lr", "scalar_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if self.orthogonalizer not in ORTHOGONALIZERS:
            raise ConfigError(f"orthogonalizer must be one of {', '.join(ORTHOGONALIZERS)}, got {self.orthogonalizer!r}")
        if not (isinstance(self.muon_beta2, (int, float)) and 0.0 <= self.muon_beta2 < 1.0):
            raise ConfigError(f"muon_beta2 must be in [0, 1) (0 = plain Muon), got {self.muon_beta2!r}")
        if not isinstance(self.momentum_warmup_steps, int) or isinstance(self.momentum_warmup_steps, bool) \
                or self.momentum_warmup_steps < 0:
            raise ConfigError(f"momentum_warmup_steps must be an integer >= 0, got {self.momentum_warmup_steps!r}")
        if not (isinstance(self.time_budget, (int, float)) and 0 <= self.time_budget < math.inf):
            raise ConfigError(f"time_budget must be a number of seconds >= 0 (0 = off), got {self.time_budget!r}")
        for name in ("new_names", "typography"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ConfigError(f"{name} must be a share in [0, 1] (0 = off), got {v!r}")
        if not (isinstance(self.max_epochs, (int, float)) and 0 <= self.max_epochs < math.inf):
            raise ConfigError(f"max_epochs must be a number >= 0 (0 = no cap), got {self.max_epochs!r}")
        self.schedule()  # validates lr_schedule, warmdown_ratio and warmdown_shape

    def schedule(self) -> LRSchedule:
        return LRSchedule(
            self.lr, self.warmup_steps, self.max_steps, self.use_cosine, self.min_lr_ratio, self.lr_schedule,
            self.warmdown_ratio, self.warmdown_shape, self.cosine_from_step, self.cosine_from_progress,
        )

    def optim_config(self) -> OptimConfig:
        return OptimConfig(
            matrix_lr=self.matrix_lr, embedding_lr=self.embedding_lr, head_lr=self.head_lr, scalar_lr=self.scalar_lr,
            weight_decay=self.matrix_weight_decay, embedding_weight_decay=self.embedding_weight_decay,
            orthogonalizer=self.orthogonalizer, muon_beta2=self.muon_beta2,
            momentum_warmup_steps=self.momentum_warmup_steps,
        )


@dataclass(frozen=True)
class EvalResult:
    """Loss in nats per token, ``exp(loss)``, and bits per byte (None without token byte lengths)."""

    loss: float
    perplexity: float
    bits_per_byte: float | None
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        bpb = f"{self.bits_per_byte:.4f}" if self.bits_per_byte is not None else "n/a"
        return f"loss {self.loss:.4f} | ppl {self.perplexity:.2f} | bpb {bpb}"


@dataclass(frozen=True)
class StepLog:
    step: int  # 1-based count of completed optimizer steps
    loss: float
    lr: float


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    history: list[StepLog] = field(default_factory=list)
    evals: list[tuple[int, EvalResult]] = field(default_factory=list)
    best_val_loss: float | None = None
    interrupted: bool = False
    stop_signal: int | None = None  # the signal behind ``interrupted`` (SIGINT or SIGTERM)
    time_limited: bool = False
    tokens_per_sec: float = 0.0
    train_seconds: float = 0.0  # wall time inside optimizer steps this call (no eval/checkpoint time)
    precision: PrecisionChoice | None = None
    last_checkpoint: Path | None = None


def accumulate_gradients(
    model: nn.Module,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | Iterator[tuple[torch.Tensor, torch.Tensor]],
    n_micro: int,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    scaler: Any = None,
    no_sync: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    loss_only: bool = True,
) -> torch.Tensor:
    """Forward/backward ``n_micro`` micro-batches, each loss scaled by ``1/n_micro``.

    Returns the mean loss (a detached 0-d tensor). ``no_sync`` (DDP) skips
    the gradient all-reduce on every micro-step but the last. ``loss_only``
    asks the model for the loss without logits (GPT's chunked loss, faster in
    eager mode; under ``torch.compile`` the plain loss fuses better).
    """
    total: torch.Tensor | None = None
    for i, (x, y) in enumerate(micro_batches):
        last = i == n_micro - 1
        sync_ctx = no_sync() if (no_sync is not None and not last) else contextlib.nullcontext()
        with sync_ctx:
            with autocast():
                _, loss = model(x, y, loss_only=loss_only)
            loss = loss / n_micro
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total = loss.detach().float() if total is None else total + loss.detach().float()
    if total is None:
        raise ValueError("accumulate_gradients got no micro-batches")
    return total


class Trainer:
    """Trains ``model`` on ``data`` and writes checkpoints into ``run_dir``.

    ``tokenizer`` (optional) is copied into the run dir and gives the token
    byte lengths for bits-per-byte; pass ``token_bytes`` instead to get bpb
    without a tokenizer. Nothing is written before :meth:`fit`, and every
    check (vocab sizes, block size, existing run) happens in ``__init__``.
    """

    def __init__(
        self,
        model: nn.Module,
        data: BatchSource,
        config: TrainConfig,
        run_dir: str | os.PathLike[str],
        *,
        tokenizer: Any = None,
        token_bytes: np.ndarray | None = None,
        run_info: dict[str, Any] | None = None,
        show_progress: bool = True,
        _resume_from: ckpt.CheckpointInfo | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.data = data
        self.tokenizer = tokenizer
        self.show_progress = show_progress
        self.run_info = dict(run_info or {})
        self.raw_model = unwrap_model(model)
        kind = getattr(self.raw_model, "kind", None)
        if kind is None or not hasattr(self.raw_model, "config"):
            raise ConfigError("Trainer needs a microtransformer model (GPT or LSTMLanguageModel)")
        self.kind: str = kind
        self._check_compatible(data, tokenizer)
        self._set_token_layout(tokenizer)
        self.name_swap = self._build_name_swap(data, tokenizer)
        self.typography_swap = self._build_typography_swap(tokenizer)
        self._fresh = _resume_from is None
        if self._fresh:
            self._set_token_counts(data)
        self._budget_pending = self._fresh and config.time_budget > 0  # max_steps is set after timing the first steps
        self._replan_steps: list[int] = []  # steps where max_steps is re-estimated (see plan_budget, can_replan)
        self._budget_times: list[float] = []  # seconds of each step timed for the time budget (see after_step)
        self._budget_spent = 0.0  # their sum: this run's training seconds, compile warm-up included
        self._planned_at = 0  # index into _budget_times of the last plan
        if self._budget_pending:
            config = replace(config, max_steps=PROVISIONAL_MAX_STEPS)  # the schedule stays in warmup/stable meanwhile
            self.config = config
        if self._fresh and ckpt.has_checkpoint(self.run_dir):
            raise CheckpointError(
                f"{self.run_dir} already holds a run ({ckpt.RUN_FILE}); continue it with --resume {self.run_dir} "
                "or choose a new --out_dir (nothing was overwritten)"
            )

        self.env: DistEnv = detect_distributed()
        if self._fresh and not self._budget_pending:
            config = replace(config, max_steps=min(config.max_steps, self.epoch_cap()))
            self.config = config
        device, device_reason = choose_device(config.device)
        self.device = init_distributed(self.env, device)
        self.precision = choose_precision(self.device, config.precision)
        self.device_reason = device_reason
        if self.env.is_main:
            logger.info("device: %s (%s)", self.device, device_reason)
            logger.info("precision: %s (%s)", self.precision.precision, self.precision.reason)

        torch.manual_seed(config.seed + self.env.rank)
        self.raw_model.to(self.device)
        self.optimizer = self._build_optimizer()
        self._base_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]  # the schedule multiplies these
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.use_grad_scaler else None
        self.schedule = config.schedule()
        self.step = 0
        self.best_val_loss: float | None = None
        self.train_loss_smooth: float | None = None  # the logged train loss (EMA); checkpointed so resume logs the same
        if _resume_from is not None:
            self._load_training_state(_resume_from)

        self.model: nn.Module = self.raw_model
        self._compiled = False
        self._compiled_whole = False  # compiled as one graph (not block by block): then the plain loss fuses better
        if config.compile:
            self.model = self._try_compile(self.raw_model)
        self.eval_model = self.model
        if self.env.is_distributed:
            ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda:") else None
            self.model = DDP(self.model, device_ids=ids)

        tb, scored = token_bytes, None
        if tb is None and tokenizer is not None:
            tb = tokenizer.token_bytes()
            if hasattr(tokenizer, "token_text_bytes"):  # text bytes can be 0 for a text token: score the text ids
                tb, scored = tokenizer.token_text_bytes(), tokenizer.text_ids()
        self.token_bytes = torch.tensor(np.array(tb, dtype=np.int64), device=self.device) if tb is not None else None
        self.scored_ids = torch.tensor(scored, device=self.device) if scored is not None else None

    # ------------------------------------------------------------------ setup
    def _build_name_swap(self, data: BatchSource, tokenizer: Any) -> NameSwap | None:
        """The ``new_names`` swap, from the tokenizer's pieces and the training ids (None when off).

        Without a tokenizer or countable training ids it is off, with a warning: a recipe's default should not
        stop a run that was built without them (the Python API's ``Trainer(model, data, config)``).
        """
        share = self.config.new_names
        if share <= 0:
            return None
        ids = _split_ids(data, "train")
        if tokenizer is None or ids is None:
            logger.warning("new_names is off: it needs the tokenizer%s to find the name tokens",
                           "" if ids is not None else " and the training ids (token shards or arrays)")
            return None
        swap = NameSwap.from_tokenizer(tokenizer, ids, share=share, seed=self.config.seed)
        if not swap.active:
            logger.warning("new_names: this tokenizer has no name tokens to swap; the windows are left as they are")
        return swap

    def calibrate_window_cache(self) -> Calibration | None:
        """``window_cache``: choose a GPT's cache knobs on the validation split and set them in its config (saved
        with the next checkpoint); None when off. The validation loss after it is measured on the text it was
        chosen on (two numbers fitted; the knobs stay off when they do not help)."""
        if not self.config.window_cache:
            return None
        ids = _split_ids(self.data, "val")
        if self.kind != "gpt" or ids is None or len(ids) < 2:
            logger.warning("window_cache is off: it needs a GPT and validation ids (token shards or arrays)")
            return None
        model = self.raw_model
        choice = calibrate(model, ids, block_size=model.config.block_size, batch_size=self.config.batch_size,
                           autocast=self.precision.autocast_context)
        model.config = replace(model.config, cache_theta=choice.theta, cache_lambda=choice.lam)
        return choice

    def _set_token_counts(self, data: BatchSource) -> None:
        """A ``head_split`` GPT orders its output layer by the training split's token counts, a ``head_bias`` one
        starts its logit biases from them (a resumed one has both in its weights); without countable ids the order
        stays by id and the biases 0, with a warning."""
        config = self.raw_model.config
        if not (getattr(config, "head_split", 0) or getattr(config, "head_bias", False)):
            return
        ids = _split_ids(data, "train")
        if ids is None:
            logger.warning("head_split / head_bias: no training ids to count (token shards or arrays); the output "
                           "layer's first level takes the lowest ids and its biases start at 0")
            return
        self.raw_model.set_token_counts(token_counts(ids, config.vocab_size))

    def _set_token_layout(self, tokenizer: Any) -> None:
        """A ``line_columns`` GPT reads its tokens' bytes from the tokenizer (a resumed one has them in its weights)."""
        if not getattr(self.raw_model.config, "line_columns", 0):
            return
        if tokenizer is not None:
            self.raw_model.set_token_layout(TokenLayout.from_tokenizer(tokenizer))
        elif not self.raw_model.has_token_layout:
            raise ConfigError(
                "line_columns needs the tokenizer's token bytes: pass the tokenizer (or call model.set_token_layout)"
            )

    def _build_typography_swap(self, tokenizer: Any) -> TypographySwap | None:
        """The ``typography`` swap, from the tokenizer's tokens (None when off; off with a warning without one)."""
        share = self.config.typography
        if share <= 0:
            return None
        if tokenizer is None:
            logger.warning("typography is off: it needs the tokenizer to re-set the tokens")
            return None
        swap = TypographySwap.from_tokenizer(tokenizer, share=share, seed=self.config.seed)
        return swap if swap.active else None

    def _augment_windows(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``typography`` then ``new_names`` on a batch: the windows ``x`` + last target, rewritten, split again."""
        if not torch.equal(x[:, 1:], y[:, :-1]):
            raise DataError("new_names and typography need targets that are the inputs shifted by one (plain windows "
                            "of text)")
        rows = torch.cat([x, y[:, -1:]], dim=1).cpu().numpy()  # (B, T+1)
        for swap in (self.typography_swap, self.name_swap):
            if swap is not None:
                rows = swap(rows)
        swapped = torch.from_numpy(rows).to(x.device)
        return swapped[:, :-1], swapped[:, 1:]

    def _check_compatible(self, data: BatchSource, tokenizer: Any) -> None:
        vocab = self.raw_model.config.vocab_size
        data_vocab = getattr(data, "vocab_size", None)
        if data_vocab is not None and int(data_vocab) != int(vocab):
            raise DataError(
                f"the data was encoded with vocab_size {data_vocab} but the model has vocab_size {vocab}; "
                "build the model with the tokenizer's vocab_size (or re-prepare the shards with this tokenizer)"
            )
        if tokenizer is not None:
            ckpt.check_tokenizer_matches(vocab, tokenizer)
        limit = self.raw_model.context_limit
        if limit is not None and data.block_size > limit:
            raise ConfigError(
                f"the data gives windows of block_size {data.block_size} but the model attends to at most {limit}; "
                "use the same --block_size for both"
            )

    @classmethod
    def resume(
        cls,
        run_dir: str | os.PathLike[str],
        data: BatchSource,
        *,
        overrides: dict[str, Any] | None = None,
        which: str = "last",
        tokenizer: Any = None,
        token_bytes: np.ndarray | None = None,
        show_progress: bool = True,
    ) -> Trainer:
        """Continue a run from its ``last`` checkpoint; ``overrides`` change TrainConfig fields (e.g. max_steps).

        Validates the whole checkpoint (weights, optimizer state, metadata)
        before anything is written.
        """
        run_dir = Path(run_dir)
        run = ckpt.read_run(run_dir)
        path = ckpt.resolve_checkpoint(run_dir, which)
        model, info = ckpt.load_model_from_checkpoint(path)
        ckpt.load_trainer_state(path)  # validate now: fail before writing anything
        saved = TrainConfig.from_dict(info.meta["train_config"])
        config = replace(saved, **(overrides or {}))
        if config.max_steps != saved.max_steps and config.use_cosine:
            logger.warning(
                "max_steps changed from %d to %d: the cosine schedule is stretched from step %d on",
                saved.max_steps, config.max_steps, info.step,
            )
        if info.step >= config.max_steps:
            raise ConfigError(
                f"{path} is at step {info.step}, already at max_steps {config.max_steps}; pass a larger --max_steps to train further"
            )
        if tokenizer is None and (run_dir / ckpt.TOKENIZER_DIR).is_dir():
            tokenizer = ckpt.load_run_tokenizer(run_dir)
        fp = run.get("tokenizer", {}).get("fingerprint")
        data_fp = getattr(getattr(data, "meta", None), "tokenizer_fingerprint", None)
        if fp and data_fp and fp != data_fp:
            raise DataError(
                "these shards were made with a different tokenizer than the run's (fingerprints differ); "
                "prepare shards with the run's tokenizer/ directory"
            )
        return cls(
            model,
            data,
            config,
            run_dir,
            tokenizer=tokenizer,
            token_bytes=token_bytes,
            run_info={k: v for k, v in run.items() if k not in ("format_version", "model", "train_config")},
            show_progress=show_progress,
            _resume_from=info,
        )

    def _load_training_state(self, info: ckpt.CheckpointInfo) -> None:
        tensors = ckpt.load_trainer_state(info.path)
        if "optimizer" in info.meta:
            ckpt.load_optimizer_state(self.optimizer, tensors, info.meta["optimizer"])
        scaler_state = info.meta.get("scaler")
        if self.scaler is not None and scaler_state:
            self.scaler.load_state_dict(scaler_state)
        saved_world = int(info.meta.get("world_size") or 1)
        if saved_world != self.env.world_size and self.env.is_main:
            per_rank = self.config.batch_size * self.config.grad_accum_steps
            logger.warning(
                "%s was trained on %d process(es), this run has %d: a step now sees %d sequences instead of %d",
                info.path, saved_world, self.env.world_size, per_rank * self.env.world_size, per_rank * saved_world,
            )
        if self.env.is_distributed and restore_rank_rng(tensors, self.env.rank):
            pass  # this rank's own stream, saved by every rank at that checkpoint
        elif self.env.is_main:
            ckpt.restore_rng(tensors)
        else:  # a checkpoint without this rank's state: a fresh, distinct stream per (seed, rank, step)
            torch.manual_seed(hash((self.config.seed, self.env.rank, info.step)) & 0x7FFF_FFFF)
        self.step = info.step
        self.best_val_loss = info.meta.get("best_val_loss")
        self.train_loss_smooth = info.meta.get("train_loss_smooth")
        logger.info("resuming %s from step %d", info.path, self.step)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "muon":
            # fp32 training keeps Newton-Schulz in fp32 too (by default it runs in bf16 where that is fast)
            ns_dtype = torch.float32 if self.precision.precision == "fp32" else None
            return MuonAdamW(muon_groups(self.raw_model, c.optim_config()), ns_dtype=ns_dtype)
        return adamw(self.raw_model.optimizer_groups(c.weight_decay), lr=c.lr, betas=(c.beta1, c.beta2))

    def _try_compile(self, model: nn.Module) -> nn.Module:
        """The model to train with ``torch.compile``: a GPT compiles its blocks (:meth:`GPT.compile_blocks`), the
        chunked loss and evaluation staying eager; other models are compiled whole."""
        try:
            if hasattr(model, "compile_blocks"):
                model.compile_blocks()
                compiled = model
            else:
                compiled = torch.compile(model)
        except Exception as exc:  # platform without a compiler toolchain
            logger.warning("torch.compile unavailable (%s); training uncompiled", exc)
            return model
        self._compiled = True
        self._compiled_whole = compiled is not model
        return compiled

    def _uncompile(self, exc: BaseException) -> None:
        logger.warning("torch.compile failed on the first step (%s); falling back to eager mode", exc)
        self._compiled = self._compiled_whole = False
        if hasattr(self.raw_model, "compile_blocks"):
            self.raw_model.compile_blocks(False)
        self.model = self.raw_model
        self.eval_model = self.raw_model
        if self.env.is_distributed:
            ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda:") else None
            self.model = DDP(self.raw_model, device_ids=ids)

    # ---------------------------------------------------------------- metadata
    def _model_meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.raw_model.config.to_dict()}

    def _write_run_files(self) -> None:
        """run.json + tokenizer copy (fresh runs only, rank 0)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = dict(self.run_info)
        if self.tokenizer is not None:
            ckpt.copy_tokenizer(self.tokenizer, self.run_dir, model_max_length=self.raw_model.context_limit)
            info["tokenizer"] = {
                "path": ckpt.TOKENIZER_DIR,
                "fingerprint": self.tokenizer.fingerprint,
                "vocab_size": self.tokenizer.vocab_size,
            }
        ckpt.write_run(self.run_dir, {"model": self._model_meta(), "train_config": self.config.to_dict(), **info})

    def save(self, *, val: EvalResult | None = None, best: bool = False) -> Path:
        """Checkpoint the current step (rank 0 only; other ranks return the would-be path)."""
        path = self.run_dir / ckpt.CHECKPOINTS_DIR / ckpt.checkpoint_name(self.step)
        rank_rng = gather_rng_states(self.env)  # every rank takes part; rank 0 saves them
        if not self.env.is_main:
            return path
        meta = {
            "model": self._model_meta(),
            "train_config": self.config.to_dict(),
            "best_val_loss": self.best_val_loss,
            "train_loss_smooth": self.train_loss_smooth,
            "val_loss": val.loss if val else None,
            "val": val.to_dict() if val else None,
            "precision": self.precision.precision,
            "world_size": self.env.world_size,
            "tokens_seen": self.step * self.tokens_per_step,
            "tokenizer_fingerprint": getattr(self.tokenizer, "fingerprint", None),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }
        return ckpt.save_checkpoint(
            self.run_dir, self.step, model=self.raw_model, meta=meta, optimizer=self.optimizer,
            extra_tensors=rank_rng, best=best, keep_last=self.config.keep_last,
        )

    @property
    def tokens_per_step(self) -> int:
        c = self.config
        return c.batch_size * c.grad_accum_steps * self.data.block_size * self.env.world_size

    # -------------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self, split: str = "val", iters: int | None = None) -> EvalResult:
        """Mean loss over ``iters`` fixed random windows (the same windows at every eval)."""
        iters = iters or self.config.eval_iters
        model = self.eval_model
        was_training = model.training
        model.eval()
        nats = torch.zeros((), dtype=torch.float64, device=self.device)
        counted_nats = torch.zeros((), dtype=torch.float64, device=self.device)
        nbytes = torch.zeros((), dtype=torch.float64, device=self.device)
        n_tokens = torch.zeros((), dtype=torch.float64, device=self.device)
        for i in range(iters):
            rng = np.random.default_rng((self.config.seed, _EVAL_STREAM, 0, i))  # one stream; each rank its rows
            x, y = rank_batch(self.data, split, self.config.batch_size, rng, self.env)
            x, y = x.to(self.device), y.to(self.device)
            with self.precision.autocast_context():
                logits, _ = model(x)  # (B, T, Vp)
            losses = token_nats(logits, y)  # (B*T,), 0 where y is -100
            nats += losses.sum()
            n_tokens += (y != -100).sum()  # ignored targets count nowhere
            if self.token_bytes is not None:
                c, b = nats_and_bytes(losses, y, self.token_bytes, self.scored_ids)
                counted_nats += c
                nbytes += b
        total, counted, total_bytes, count = all_reduce_sum(
            [nats.item(), counted_nats.item(), nbytes.item(), n_tokens.item()], self.device
        )
        if was_training:
            model.train()
        loss = total / count
        bpb = bits_per_byte(counted, int(total_bytes)) if self.token_bytes is not None and total_bytes > 0 else None
        return EvalResult(loss=loss, perplexity=perplexity(loss), bits_per_byte=bpb, tokens=int(count))

    # ------------------------------------------------------------------- train
    def _micro_batches(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        rng: WindowOrder  # the same on every rank; each keeps its rows
        if c.sampling == "epoch":
            rng = EpochOrder(c.seed, row=step * c.grad_accum_steps * c.batch_size * self.env.world_size)
        else:
            rng = np.random.default_rng((c.seed, 0, step))
        for _ in range(c.grad_accum_steps):
            x, y = rank_batch(self.data, "train", c.batch_size, rng, self.env)
            if self.name_swap is not None or self.typography_swap is not None:
                x, y = self._augment_windows(x, y)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)  # no-op if already there

    def train_step(self) -> StepLog:
        """One optimizer step (``grad_accum_steps`` micro-batches); advances ``self.step``."""
        lr = self.schedule.lr_at(self.step)
        factor = self.schedule.factor(self.step)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * factor if self.config.optimizer == "muon" else lr
            if group.get("muon"):
                group["momentum"] = muon_momentum(self.step, self.config.optim_config())
        if self.config.optimizer == "muon":
            lr = self.optimizer.param_groups[0]["lr"]  # the logged LR is the matrices'
        no_sync = getattr(self.model, "no_sync", None) if self.env.is_distributed else None
        loss = accumulate_gradients(
            self.model,
            self._micro_batches(self.step),
            self.config.grad_accum_steps,
            autocast=self.precision.autocast_context,
            scaler=self.scaler,
            no_sync=no_sync,
            loss_only=not self._compiled_whole,
        )
        if self.config.grad_clip > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        value = float(loss)
        if self.env.is_distributed:  # the global batch's loss, as one process would log it; every rank sees a NaN
            value = all_reduce_sum([value], self.device)[0] / self.env.world_size
        return StepLog(self.step, value, lr)

    def _log_eval(self, record: dict[str, Any]) -> None:
        if self.env.is_main:
            ckpt.append_metrics(self.run_dir, record)

    def _prepare_run_dir(self) -> None:
        """Rank 0, lock held: see :func:`~microtransformer.training.checkpoint.prepare_run_dir`."""
        ckpt.prepare_run_dir(self.run_dir, fresh=self._fresh, step=self.step, write_run_files=self._write_run_files)

    def fit(self, *, stop_at_step: int | None = None, time_limit_s: float | None = None) -> TrainResult:
        """Train until ``max_steps`` (or ``stop_at_step``), evaluating and checkpointing on the way.

        Ctrl-C (or SIGTERM) finishes the current step, saves a checkpoint and
        returns with ``interrupted=True`` and ``stop_signal`` set.
        ``time_limit_s`` stops (with an eval and a checkpoint) once that much
        wall time has passed: ``time_limited=True``. The run directory is
        locked for the whole call: a second writer gets
        :class:`~microtransformer.errors.DirectoryInUseError`.
        """
        lock = DirectoryLock(self.run_dir, purpose="mtx train") if self.env.is_main else contextlib.nullcontext()
        with lock:
            return self._fit(stop_at_step=stop_at_step, time_limit_s=time_limit_s)

    def _fit(self, *, stop_at_step: int | None, time_limit_s: float | None) -> TrainResult:
        end = self.config.max_steps if stop_at_step is None else min(stop_at_step, self.config.max_steps)
        result = TrainResult(run_dir=self.run_dir, step=self.step, precision=self.precision, best_val_loss=self.best_val_loss)
        if self.env.is_main:
            if self._fresh and ckpt.has_checkpoint(self.run_dir):  # another process finished a run here since __init__
                raise CheckpointError(f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir}")
            self._prepare_run_dir()
            self._fresh = False  # a second fit() continues this run
        barrier()
        self.raw_model.train()
        bar = progress_bar(
            total=self.config.max_steps, initial=self.step, desc="training", enabled=self.show_progress and self.env.is_main
        )
        t_start = time.perf_counter()
        steps_run = 0
        train_time = 0.0
        smooth = self.train_loss_smooth
        val: EvalResult | None = None
        with StopFlag() as stop:
            while self.step < end:
                if self._stop_requested(stop):
                    result.interrupted = True
                    result.stop_signal = stop.signum or signal.SIGINT
                    break
                t_step = time.perf_counter()
                try:
                    log = self.train_step()
                except Exception as exc:
                    if self._compiled and steps_run == 0 and not isinstance(exc, (MemoryError,)):
                        self.optimizer.zero_grad(set_to_none=True)
                        self._uncompile(exc)
                        continue
                    raise
                if not math.isfinite(log.loss):
                    raise ConfigError(
                        f"the loss became {log.loss} at step {log.step}; lower --lr (now {self.config.lr}) "
                        "or use --precision fp32, then --resume from the last good checkpoint"
                    )
                steps_run += 1
                seconds = time.perf_counter() - t_step
                train_time += seconds
                if self.after_step(seconds):
                    end = self.config.max_steps if stop_at_step is None else min(stop_at_step, self.config.max_steps)
                    bar.total = self.config.max_steps
                result.history.append(log)
                smooth = log.loss if smooth is None else 0.9 * smooth + 0.1 * log.loss
                self.train_loss_smooth = smooth
                elapsed = time.perf_counter() - t_start
                tps = steps_run * self.tokens_per_step / max(train_time, 1e-9)  # excludes eval/checkpoint time
                bar.update(1)
                bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{log.lr:.2e}", tok_s=f"{tps:,.0f}")
                if time_limit_s is not None and self.step < end:
                    over = elapsed > time_limit_s
                    if self.env.is_distributed:  # every rank must agree to stop
                        over = all_reduce_sum([1.0 if over else 0.0], self.device)[0] > 0
                    if over:
                        result.time_limited = True
                        end = self.step
                        if self.env.is_main:
                            logger.warning("time limit of %.0f s reached at step %d; stopping", time_limit_s, self.step)
                if self.step == self.config.max_steps:
                    self.calibrate_window_cache()
                if self.step % self.config.eval_interval == 0 or self.step == end:
                    val = self.evaluate("val")
                    is_best = self.best_val_loss is None or val.loss < self.best_val_loss
                    if is_best:
                        self.best_val_loss = val.loss
                    result.evals.append((self.step, val))
                    if self.env.is_main:
                        logger.info("step %d: train loss %.4f | val %s | %.0f tok/s", self.step, smooth, val, tps)
                    self._log_eval({"step": self.step, "train_loss": smooth, "lr": log.lr, "tokens_per_sec": tps, **{f"val_{k}": v for k, v in val.to_dict().items()}})
                    result.last_checkpoint = self.save(val=val, best=is_best)
            saved_now = result.last_checkpoint is not None and result.last_checkpoint.name == ckpt.checkpoint_name(self.step)
            if result.interrupted and not saved_now:
                result.last_checkpoint = self.save(val=None, best=False)
            if result.interrupted and self.env.is_main:
                logger.warning("interrupted: saved %s; continue with `mtx train --resume %s`", result.last_checkpoint, self.run_dir)
        bar.close()
        barrier()  # ranks leave together, after rank 0's last save: torchrun stops every rank once one has exited
        result.step = self.step
        result.best_val_loss = self.best_val_loss
        result.tokens_per_sec = steps_run * self.tokens_per_step / max(train_time, 1e-9)
        result.train_seconds = train_time
        return result

    @property
    def budget_pending(self) -> bool:
        """Whether a time budget still waits for timed steps to fix ``max_steps``."""
        return self._budget_pending

    def after_step(self, seconds: float) -> bool:
        """Count a training step's ``seconds`` against ``time_budget``; returns whether ``max_steps`` changed.

        The first plan comes once enough steps are timed (:func:`budget_calibrated`;
        the first step, which pays warm-up, is left out of the estimate); re-plans
        when 25, 50, 75 and 90 % of the budget should be spent use the steps since
        the previous plan, while the run has steps left (:meth:`can_replan`). Whoever
        drives :meth:`train_step` calls this after each step (``fit`` does; so does
        an interleaved benchmark). Under DDP every rank plans at the same step.
        """
        if not (self._budget_pending or self._replan_steps):
            return False
        times = self._budget_times
        times.append(seconds)
        self._budget_spent += seconds
        spent = self._budget_spent
        if self._budget_pending:
            ready = budget_calibrated(len(times), spent, self.config.time_budget)
            if self.env.is_distributed:  # plan_budget all-reduces: every rank must enter it at the same step
                ready = all_reduce_sum([1.0 if ready else 0.0], self.device)[0] > 0
            if not ready:
                return False
            self.plan_budget(times[1:] or times, spent)
        elif self.step < self._replan_steps[0]:
            return False
        else:
            self._replan_steps.pop(0)
            if not self.can_replan():
                return False
            self.plan_budget(times[self._planned_at :], spent)  # recent steps: the machine may have sped up
        self._planned_at = len(times)
        return True

    def plan_budget(self, step_times: list[float], train_time: float) -> int:
        """Set ``max_steps`` so the run's training time fits ``time_budget``; returns it.

        The step time is the mean of ``step_times``; under DDP it and the time
        spent are averaged over ranks, so every rank plans the same steps (and
        re-plans at the same steps). The time already spent, compile warm-up
        included, counts against the budget.
        """
        per_step = sum(step_times) / len(step_times)  # the mean: what the remaining steps will sum to
        if self.env.is_distributed:  # every rank must plan the same steps
            per_step, train_time = (v / self.env.world_size for v in all_reduce_sum([per_step, train_time], self.device))
        budget = self.config.time_budget
        per_step = max(per_step, 1e-9)
        remaining = max(0.0, budget - train_time - self.calibration_reserve(per_step))
        max_steps = min(self.step + max(1, int(remaining / per_step)), max(self.epoch_cap(), self.step + 1))
        self._replan_steps = [  # re-estimate when these shares of the budget should be spent
            self.step + int((f * budget - train_time) / per_step) for f in BUDGET_REPLAN_AT if f * budget > train_time
        ]
        self.config = replace(self.config, max_steps=max_steps, **self._schedule_kept(max_steps))
        self.schedule = self.config.schedule()
        self._budget_pending = False
        if self.env.is_main:
            logger.info(
                "time budget %.0f s: %.3f s/step, training for %d steps in all", self.config.time_budget, per_step, max_steps
            )
            if ckpt.is_run_dir(self.run_dir):  # a run driven by fit(): its run.json records the planned length
                run = ckpt.read_run(self.run_dir)
                run["train_config"] = self.config.to_dict()
                ckpt.write_run(self.run_dir, run)
        return max_steps

    def calibration_reserve(self, per_step: float) -> float:
        """Seconds a time budget keeps for :meth:`calibrate_window_cache` after the last step (0 when it is off),
        estimated from the step time: ``CALIBRATION_STEP_SHARE`` of a step per validation token it will read.

        Why: the calibration is part of training the model (it fits two numbers), so it comes out of the budget."""
        if not self.config.window_cache or self.kind != "gpt":
            return 0.0
        ids = _split_ids(self.data, "val")
        tokens = 0 if ids is None else min(len(ids), CALIBRATION_MAX_TOKENS)
        rank_tokens = self.tokens_per_step / self.env.world_size  # each rank calibrates on the whole split
        return CALIBRATION_STEP_SHARE * per_step * tokens / rank_tokens

    def epoch_cap(self) -> int:
        """The most steps ``max_epochs`` passes over the training split allow (a huge number when uncapped).

        Why: a small corpus read too many times is fitted at the expense of new text (the speedrun's books get
        worse on the held-out one past about three passes), so a faster machine given the same time budget
        should stop there rather than train on.
        """
        c = self.config
        if c.max_epochs <= 0:
            return PROVISIONAL_MAX_STEPS
        num_tokens = getattr(self.data, "num_tokens", None)
        if num_tokens is None:
            raise ConfigError("max_epochs needs a data source that knows its size (num_tokens); use max_steps")
        return max(1, int(c.max_epochs * num_tokens("train") / self.tokens_per_step))

    def _schedule_kept(self, max_steps: int) -> dict[str, Any]:
        """The schedule fields that keep the LR where it is when ``max_steps`` changes at ``self.step``, saved
        with it so a resumed run follows the same schedule: a WSD run inside its warmdown gets a new ratio
        (:func:`wsd_replanned_ratio`), a cosine run past its warmup an anchor (:func:`cosine_lr_factor`)."""
        c = self.config
        if not c.use_cosine:
            return {}
        if c.lr_schedule == "wsd":
            ratio = wsd_replanned_ratio(self.step, total_steps=c.max_steps, warmdown_ratio=c.warmdown_ratio, new_total=max_steps)
            return {"warmdown_ratio": ratio}
        if self.step <= c.warmup_steps:
            return {}
        progress = cosine_progress(
            self.step, warmup_steps=c.warmup_steps, total_steps=c.max_steps,
            from_step=c.cosine_from_step, from_progress=c.cosine_from_progress,
        )
        return {"cosine_from_step": self.step, "cosine_from_progress": progress}

    def can_replan(self) -> bool:
        """Whether ``max_steps`` may still change: until the run's end (the LR bends at a re-plan but does
        not jump, see :meth:`_schedule_kept`)."""
        return self.step < self.config.max_steps

    def _stop_requested(self, stop: StopFlag) -> bool:
        if not self.env.is_distributed:
            return stop.requested
        return all_reduce_sum([1.0 if stop.requested else 0.0], self.device)[0] > 0
