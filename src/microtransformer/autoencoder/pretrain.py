"""Pre-train the chunk auto-encoder: its config, the loop, checkpoints in the run format, exact resume.

The tokenizer needs a network that turns every frequent chunk into a code
it decodes back exactly; this trains one on the chunks of a corpus
(:mod:`.dataset`: the split and the sampler).

**Run format.** ``checkpoint_dir`` becomes a run directory like ``mtx
train``'s (:mod:`microtransformer.training.checkpoint`): step checkpoints,
``last``/``best`` pointers (best = highest validation char accuracy),
``metrics.jsonl``. The loop shares the language-model trainer's pieces: the
learning-rate schedule, the fused AdamW, Ctrl-C/SIGTERM (finish the step,
save, stop), the progress bar, the RNG state in checkpoints.

**Resume.** ``resume="ckpt/checkpoint_step_1000"`` with ``steps=2000``
continues at step 1001 with the same weights, optimizers, RNG, sampler and
collision table, and ends with ``checkpoint_step_2000``. The cosine schedule
is planned over the current ``steps``; resuming with the original ``steps``
reproduces an uninterrupted run bit for bit (on CPU), which rests on the
sampler's draw order (:class:`~microtransformer.autoencoder.dataset.ChunkSampler`).

**Freezing the codes.** With ``encoder_fraction < 1`` the encoder's learning
rate decays to zero over that share of the steps and the encoder is then
frozen (no encoder backward: later steps are faster) while the decoder keeps
learning fixed codes. Why: a code flips when any of its dimensions crosses a
rounding boundary, so while the encoder trains the decoder chases moving
codes. ``separation_weight > 0`` pushes colliding strings apart before the
freeze (:mod:`.separation`). Measured effects: ``docs/benchmarks.md``.

>>> result = pretrain_autoencoder(["some text " * 100], model_config=AutoEncoderConfig.preset("tiny"),
...     config=PretrainConfig(steps=20), checkpoint_dir=None, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from microtransformer.autoencoder.checkpoint import (
    KIND,
    AutoEncoderCheckpoint,
    open_checkpoint,
)
from microtransformer.autoencoder.config import AutoEncoderConfig, PretrainConfig
from microtransformer.autoencoder.dataset import ChunkDataset, ChunkSampler
from microtransformer.autoencoder.evaluate import evaluate_chunks
from microtransformer.autoencoder.model import AutoEncoderOutput, ChunkAutoEncoder
from microtransformer.autoencoder.results import EvalLog, PretrainHistory, TrainLog
from microtransformer.autoencoder.separation import CollisionTable, separation_loss
from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.io import DirectoryLock
from microtransformer.training import checkpoint as ckpt
from microtransformer.training.loop import StopFlag, adamw, progress_bar
from microtransformer.training.schedule import LRSchedule

__all__ = ["PretrainConfig", "PretrainResult", "Pretrainer", "pretrain_autoencoder"]

logger = logging.getLogger(__name__)

COLLISIONS_KEY = "separation.last_code"
@dataclass
class PretrainResult:
    """What :func:`pretrain_autoencoder` returns; ``model`` is the final model (eval mode)."""

    model: ChunkAutoEncoder
    step: int
    run_dir: Path | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_val_char_accuracy: float | None
    last_eval: EvalLog | None
    history: PretrainHistory
    seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM (after saving)
    stop_signal: int | None = None
    time_limited: bool = False  # stopped by max_seconds (after saving)


@dataclass
class StepStats:
    """One step's training figures (per batch)."""

    loss: float
    char_accuracy: float
    distinct_codes: float
    distinct_chunks: float
    collision_pairs: int


class _RunningMeans:
    """Means of the step figures since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = self.char_accuracy = self.distinct_codes = self.distinct_chunks = self.collision_pairs = 0.0
        self.n = 0

    def add(self, s: StepStats) -> None:
        self.loss += s.loss
        self.char_accuracy += s.char_accuracy
        self.distinct_codes += s.distinct_codes
        self.distinct_chunks += s.distinct_chunks
        self.collision_pairs += s.collision_pairs
        self.n += 1

    def log(self, step: int, lr: float, encoder_lr: float, elapsed_s: float) -> TrainLog:
        n = self.n
        record = TrainLog(
            step=step, loss=self.loss / n, char_accuracy=self.char_accuracy / n, lr=lr, encoder_lr=encoder_lr,
            distinct_codes=self.distinct_codes / n, distinct_chunks=self.distinct_chunks / n,
            collision_pairs=self.collision_pairs / n, elapsed_s=elapsed_s,
        )
        self.reset()
        return record


class Pretrainer:
    """The state of one pre-training run: model, optimizers, schedules, sampler, collision table, history."""

    def __init__(self, dataset: ChunkDataset, model_config: AutoEncoderConfig, config: PretrainConfig, device: str = "cpu") -> None:
        if dataset.max_chunk_len != model_config.max_chunk_len:
            raise ConfigError(
                f"dataset chunks are capped at {dataset.max_chunk_len} bytes but the model's max_chunk_len is "
                f"{model_config.max_chunk_len}; build the dataset with the model's max_chunk_len"
            )
        self.dataset, self.config, self.device = dataset, config, torch.device(device)
        self.fingerprint = dataset.fingerprint
        torch.manual_seed(config.seed)
        self.model = ChunkAutoEncoder(model_config).to(self.device)
        memory = [self.model.decoder.memory.weight] if self.model.decoder.memory is not None else []
        groups = [
            {"params": list(self.model.encoder.parameters()), "name": "encoder"},
            {"params": [p for p in self.model.decoder.parameters() if all(p is not q for q in memory)], "name": "decoder"},
        ]
        self.optimizer = adamw(groups, lr=config.lr, weight_decay=config.weight_decay)
        # the code memory takes sparse gradients: its own SparseAdam
        self.memory_optimizer = torch.optim.SparseAdam(memory, lr=config.memory_lr) if memory else None
        self._dense_params = [p for p in self.model.parameters() if all(p is not q for q in memory)]
        self.sampler = ChunkSampler(
            dataset, batch_size=config.batch_size, sample_alpha=config.sample_alpha, piece_share=config.piece_share,
            n_pieces=config.n_pieces, augment_share=config.augment_share, seed=config.seed,
        )
        self.collisions = CollisionTable(len(self.sampler.strings)) if config.separation_weight > 0 else None
        self.val_chunks, self.val_counts = dataset.validation_set(config.val_max_unique)
        c = config
        schedule = LRSchedule(lr=c.lr, warmup_steps=c.warmup_steps, total_steps=c.steps, min_ratio=c.min_lr_ratio)
        self._decoder_schedule = replace(schedule, lr=c.decoder_lr_mult * c.lr)
        self._memory_schedule = replace(schedule, lr=c.memory_lr)
        self._encoder_schedule = schedule if c.encoder_fraction >= 1.0 else replace(schedule, total_steps=self.encoder_steps, min_ratio=0.0)
        self.step = 0
        self._encoder_trainable = True
        self.best: EvalLog | None = None
        self.last_eval: EvalLog | None = None
        self.history = PretrainHistory()
        self.elapsed = 0.0

    # ---------------------------------------------------------------- schedules (1-based steps)
    @property
    def encoder_steps(self) -> int:
        c = self.config
        return c.steps if c.encoder_fraction >= 1.0 else max(1, round(c.encoder_fraction * c.steps))

    def lr_at(self, step: int) -> float:
        """Decoder learning rate: warmup + cosine over ``steps`` (times ``decoder_lr_mult``)."""
        return self._decoder_schedule.lr_at(step - 1)

    def memory_lr_at(self, step: int) -> float:
        return self._memory_schedule.lr_at(step - 1)

    def encoder_lr_at(self, step: int) -> float:
        """Like the decoder's, but with ``encoder_fraction < 1`` it decays to zero over that share of the steps, then 0."""
        if self.config.encoder_fraction < 1.0 and step > self.encoder_steps:
            return 0.0
        return self._encoder_schedule.lr_at(step - 1)

    # ---------------------------------------------------------------- one step
    def train_step(self) -> StepStats:
        c = self.config
        self.step += 1
        enc_lr = self.encoder_lr_at(self.step)
        self.optimizer.param_groups[0]["lr"] = enc_lr
        self.optimizer.param_groups[1]["lr"] = self.lr_at(self.step)
        if self.memory_optimizer is not None:
            self.memory_optimizer.param_groups[0]["lr"] = self.memory_lr_at(self.step)
        frozen = enc_lr == 0.0
        if frozen == self._encoder_trainable:  # freeze/unfreeze: no encoder backward while frozen
            self.model.encoder.requires_grad_(not frozen)
            self._encoder_trainable = not frozen
        self.model.encoder.train(not frozen)  # frozen: fixed codes (BatchNorm uses its running stats)
        rows, x, augmented = self.sampler.draw()  # (B,), (B, T)
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
            is_byte = x != 256
            acc = float(((out.logits.argmax(-1) == x) & is_byte).sum()) / max(int(is_byte.sum()), 1)
        return StepStats(
            loss=out.loss.item(), char_accuracy=acc, distinct_codes=float(torch.unique(out.indices.detach().cpu()).numel()),
            distinct_chunks=float(torch.unique(rows).numel()), collision_pairs=n_pairs,
        )

    def _separation(self, out: AutoEncoderOutput, rows: torch.Tensor, augmented: list[int]) -> tuple[torch.Tensor, int]:
        """Separation loss between the batch's strings and the other strings last seen at their codes;
        the partners are re-encoded so both sides move."""
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
        z_partner = self.model.encoder.pre_quantize(self.sampler.x_all[partner_rows].to(self.device))  # (P, D)
        with torch.no_grad():
            self.collisions.update(partner_rows, fsq(z_partner)[1].tolist())
        loss = separation_loss(fsq.bound(out.latent[mine].float()), fsq.bound(z_partner.float()), self.config.separation_margin)
        return loss.sum() / len(rows), len(pairs)

    def evaluate(self) -> EvalLog:
        """Network alone on the validation split (occurrence-weighted); tracks the best."""
        v = evaluate_chunks(self.model, self.val_chunks, self.val_counts)
        record = EvalLog(
            step=self.step, char_accuracy=v.char_accuracy, exact_chunk_rate=v.exact_chunk_rate, loss=v.loss,
            distinct_codes=float(v.distinct_codes), chunks=float(v.unique_chunks),
        )
        self.history.evals.append(record)
        self.last_eval = record
        return record

    # ---------------------------------------------------------------- saving and resuming
    def save(self, run_dir: Path, *, best: bool) -> Path:
        """A step checkpoint in ``run_dir`` (the run format), ``best`` updating the best pointer."""
        meta: dict[str, Any] = {
            "model": {"kind": KIND, "config": self.model.config.to_dict()},
            "train_config": self.config.to_dict(),
            "best": self.best.to_record() if self.best else None,
            "val": self.last_eval.to_record() if self.last_eval and self.last_eval.step == self.step else None,
            "elapsed_s": round(self.elapsed, 3),
            "dataset": {"fingerprint": self.fingerprint},
        }
        meta["val_loss"] = meta["val"]["val_loss"] if meta["val"] else None
        extra: dict[str, torch.Tensor] = {}
        if self.memory_optimizer is not None:
            tensors, meta["memory_optimizer"] = ckpt.optimizer_tensors(self.memory_optimizer, prefix="memory_optimizer")
            extra.update(tensors)
        if self.collisions is not None:
            extra[COLLISIONS_KEY] = self.collisions.last_code
        return ckpt.save_checkpoint(
            run_dir, self.step, model=self.model, meta=meta, optimizer=self.optimizer, extra_tensors=extra,
            generators={"sampler": self.sampler.generator}, best=best, keep_last=self.config.keep_last,
        )

    def load(self, source: AutoEncoderCheckpoint) -> None:
        """Continue from ``source``: weights, optimizers, RNG, sampler, collision table, best and history."""
        if source.model_config != self.model.config:
            raise CheckpointError(
                f"{source.path} was trained with a different model config; resume with the checkpoint's config "
                "(the CLI does this when --config is left out)"
            )
        self.model.load_state_dict(source.load_model(self.device).state_dict())
        tensors, meta = source.load_state(), source.meta
        if "optimizer" in meta and tensors:
            ckpt.load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
            if self.memory_optimizer is not None and "memory_optimizer" in meta:
                ckpt.load_optimizer_state(self.memory_optimizer, tensors, meta["memory_optimizer"], prefix="memory_optimizer")
            for g in self.optimizer.param_groups:  # the new run's hyper-parameters win (lr is set per step)
                g["weight_decay"] = self.config.weight_decay
        ckpt.restore_rng(tensors, {"sampler": self.sampler.generator})
        if self.collisions is not None and COLLISIONS_KEY in tensors:
            self.collisions.load_state(tensors[COLLISIONS_KEY])
        self.step = source.step
        self.best = EvalLog.from_record(meta["best"]) if meta.get("best") else None
        self.history = source.history()
        self.elapsed = float(meta.get("elapsed_s", 0.0))
        old_fp = (meta.get("dataset") or {}).get("fingerprint")
        if old_fp and old_fp != self.fingerprint:
            logger.warning("resuming on different data than %s was trained on (dataset fingerprint changed)", source.path)
        logger.info("resumed from %s at step %d", source.path, self.step)


def pretrain_autoencoder(
    documents: Iterable[str] | None = None,
    *,
    dataset: ChunkDataset | None = None,
    model_config: AutoEncoderConfig | None = None,
    config: PretrainConfig | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
    run_info: Mapping[str, Any] | None = None,
) -> PretrainResult:
    """Train a :class:`ChunkAutoEncoder` on the chunks of ``documents`` (or a ready ``dataset``).

    ``checkpoint_dir=None`` trains in memory only (used when a tokenizer is
    trained in one call). ``resume`` names a checkpoint (see
    :func:`~microtransformer.autoencoder.checkpoint.open_checkpoint`); its
    model config is used unless ``model_config`` is given, and its
    pre-training config unless ``config`` is. ``run_info`` (JSON-able, e.g.
    ``{"data": ...}``, where the corpus came from) goes into ``run.json``.
    ``checkpoint_dir`` is locked while this runs (a second writer gets
    :class:`~microtransformer.errors.DirectoryInUseError`) and what a killed
    run left half-written there is removed first.
    """
    if checkpoint_dir is None:
        return _pretrain(documents, dataset, model_config, config, None, resume, device, progress, run_info)
    run_dir = Path(checkpoint_dir)
    with DirectoryLock(run_dir, purpose="mtx autoencoder pretrain"):  # one writer per run directory
        return _pretrain(documents, dataset, model_config, config, run_dir, resume, device, progress, run_info)


def _pretrain(
    documents: Iterable[str] | None,
    dataset: ChunkDataset | None,
    model_config: AutoEncoderConfig | None,
    config: PretrainConfig | None,
    run_dir: Path | None,
    resume: str | os.PathLike[str] | None,
    device: str,
    progress: bool,
    run_info: Mapping[str, Any] | None,
) -> PretrainResult:
    source = open_checkpoint(resume, "last") if resume is not None else None
    if source is not None:
        if source.legacy and "step" not in source.meta:
            raise CheckpointError(f"{source.path} has no training_state.json: the checkpoint is incomplete; resume from another")
        config = config or PretrainConfig.from_dict(source.pretrain)
        model_config = model_config or source.model_config
        if source.step >= config.steps:
            raise ConfigError(f"{source.path} is already at step {source.step}; pass --steps larger than that to train further")
    config, model_config = config or PretrainConfig(), model_config or AutoEncoderConfig()
    if dataset is None:
        if documents is None:
            raise ConfigError("pass documents or a ChunkDataset to pre-train on")
        dataset = ChunkDataset.from_documents(
            documents, max_chunk_len=model_config.max_chunk_len, val_fraction=config.val_fraction,
            split_block_chars=config.split_block_chars, seed=config.seed, pattern=model_config.pattern,
        )
    s = dataset.summary()
    logger.info(
        "chunk dataset: %d unique train chunks (%d occurrences), %d unique val chunks (%d occurrences, %.1f%% unseen)",
        s["train_unique"], s["train_occurrences"], s["val_unique"], s["val_occurrences"], 100 * s["val_unseen_occurrence_rate"],
    )
    trainer = Pretrainer(dataset, model_config, config, device)
    if source is not None:
        trainer.load(source)
    logger.info("auto-encoder: %d parameters, codebook %d codes", trainer.model.num_params(), trainer.model.codebook_size)
    if run_dir is not None:
        _prepare_run_dir(run_dir, trainer, source, {**dict(run_info or {}), "dataset": s})
    return _loop(trainer, run_dir, progress)


def _prepare_run_dir(run_dir: Path, trainer: Pretrainer, source: AutoEncoderCheckpoint | None, run_info: dict[str, Any]) -> None:
    """Start ``run_dir`` (or, resuming that same run, trim it to the step); lock held.

    A run resumed into another folder (or from a folder of the earlier
    layout) starts there with its history so far and a copy of the
    checkpoint it resumes from, so its ``last``/``best`` names work at once.
    """
    same_run = source is not None and source.run_dir is not None and source.run_dir.resolve() == run_dir.resolve()
    if not same_run and ckpt.has_checkpoint(run_dir):
        raise CheckpointError(
            f"{run_dir} already holds a pre-training run; continue it with --resume {run_dir} "
            "or choose a new --checkpoint_dir (nothing was overwritten)"
        )

    def write_run_files() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        model = {"kind": KIND, "config": trainer.model.config.to_dict()}
        ckpt.write_run(run_dir, {"model": model, "train_config": trainer.config.to_dict(), **run_info})
        for record in source.history_records if source is not None else ():
            ckpt.append_metrics(run_dir, record)

    ckpt.prepare_run_dir(run_dir, fresh=not same_run, step=trainer.step, write_run_files=write_run_files)
    if source is not None and not same_run:
        trainer.save(run_dir, best=trainer.best is not None and trainer.best.step == trainer.step)


def _loop(trainer: Pretrainer, run_dir: Path | None, progress: bool) -> PretrainResult:
    """Train to ``steps`` (or ``max_seconds``, or a stop signal), logging, evaluating and checkpointing."""
    c = trainer.config
    result = PretrainResult(trainer.model, trainer.step, run_dir, None, None, None, None, trainer.history)
    means = _RunningMeans()
    start, elapsed0 = time.perf_counter(), trainer.elapsed
    bar = progress_bar(total=c.steps, initial=trainer.step, desc="pretrain", enabled=progress)
    try:
        with StopFlag() as stop:
            while trainer.step < c.steps:
                stats = trainer.train_step()
                if not math.isfinite(stats.loss):
                    raise CheckpointError(
                        f"loss became {stats.loss} at step {trainer.step}; lower --lr or resume from an earlier checkpoint"
                    )
                means.add(stats)
                bar.update(1)
                trainer.elapsed = elapsed0 + time.perf_counter() - start
                result.time_limited = c.max_seconds > 0 and time.perf_counter() - start >= c.max_seconds
                result.interrupted, result.stop_signal = stop.requested, stop.signum
                stopping = result.time_limited or result.interrupted
                _after_step(trainer, run_dir, means, bar, stopping, result)
                if stopping:
                    why = f"max_seconds={c.max_seconds} reached" if result.time_limited else "stopped by a signal"
                    logger.warning("stopping at step %d of %d: %s (continue with --resume)", trainer.step, c.steps, why)
                    break
    finally:
        bar.close()
    trainer.model.eval()
    result.step, result.seconds, result.last_eval = trainer.step, time.perf_counter() - start, trainer.last_eval
    result.best_val_char_accuracy = trainer.best.char_accuracy if trainer.best else None
    if run_dir is not None and (run_dir / "best.json").is_file():
        result.best_checkpoint = ckpt.resolve_checkpoint(run_dir, "best")
    return result


def _after_step(trainer: Pretrainer, run_dir: Path | None, means: _RunningMeans, bar: Any, stopping: bool, result: PretrainResult) -> None:
    """The log line, the evaluation and the checkpoint that are due after a step."""
    c, step = trainer.config, trainer.step
    if step % c.log_every == 0 or step == c.steps or stopping:
        log = means.log(step, trainer.lr_at(step), trainer.encoder_lr_at(step), round(trainer.elapsed, 3))
        trainer.history.train.append(log)
        if run_dir is not None:
            ckpt.append_metrics(run_dir, log.to_record())
        bar.set_postfix(loss=f"{log.loss:.3f}", acc=f"{log.char_accuracy:.3f}", codes=f"{log.distinct_codes:.0f}/{log.distinct_chunks:.0f}")
    is_ckpt = step % c.checkpoint_every == 0 or step == c.steps or stopping
    if not (step % c.eval_every == 0 or is_ckpt):
        return
    ev = trainer.evaluate()
    improved = trainer.best is None or ev.char_accuracy > trainer.best.char_accuracy
    if improved:
        trainer.best = ev
    logger.info(
        "step %d: val char acc %.4f, exact %.4f, loss %.4f, %d codes for %d chunks%s",
        step, ev.char_accuracy, ev.exact_chunk_rate, ev.loss, int(ev.distinct_codes or 0), int(ev.chunks or 0),
        " (best)" if improved else "",
    )
    if run_dir is not None:
        ckpt.append_metrics(run_dir, ev.to_record())
        if is_ckpt or improved:  # a better model between step checkpoints is kept at once
            result.last_checkpoint = trainer.save(run_dir, best=improved)
