"""Where a pre-trained auto-encoder is, and how to read it: runs in the one run format, and earlier folders.

Pre-training writes the run format of ``mtx train``
(:mod:`microtransformer.training.checkpoint`): ``run.json``,
``checkpoints/step_N/``, ``last.json``/``best.json``, ``metrics.jsonl``.
A checkpoint is named by its run directory (``ckpt/``, best by default), a
step directory (``ckpt/checkpoints/step_000200``), or the names the earlier
layout had on disk, which keep working: ``ckpt/checkpoint_step_200``,
``ckpt/checkpoint_best``. Folders written by the earlier release
(``checkpoint_step_N/`` with ``config.json`` + ``training_state.json``) load
as they are.

>>> ckpt = open_checkpoint("ckpt/checkpoint_step_1000")  # doctest: +SKIP
>>> model = ckpt.load_model()  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from microtransformer.autoencoder.config import move_pattern
from microtransformer.autoencoder.model import AutoEncoderConfig, ChunkAutoEncoder
from microtransformer.autoencoder.results import PretrainHistory
from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.io import read_json
from microtransformer.training import checkpoint as ckpt

__all__ = ["KIND", "AutoEncoderCheckpoint", "load_autoencoder", "open_checkpoint"]

KIND = "chunk_autoencoder"  # run.json's model kind
# the earlier layout: checkpoint_step_N/{model.safetensors, config.json, optimizer.safetensors, training_state.json}
LEGACY_CONFIG = "config.json"
LEGACY_STATE = "training_state.json"
LEGACY_OPTIMIZER = "optimizer.safetensors"


@dataclass
class AutoEncoderCheckpoint:
    """One saved step of a pre-training run, either layout: its configs, data record and state."""

    path: Path
    step: int
    model_config: AutoEncoderConfig
    pretrain: dict[str, Any]  # PretrainConfig fields as saved (read with PretrainConfig.from_dict)
    data: dict[str, Any] | None  # where the corpus came from (the CLI's record)
    meta: dict[str, Any]  # meta.json, or the earlier training_state.json in this release's names
    run_dir: Path | None = None  # None for a folder of the earlier layout
    history_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def legacy(self) -> bool:
        return self.run_dir is None

    @property
    def home(self) -> Path:
        """The folder a resumed run writes to by default: the run, or the earlier layout's checkpoint folder."""
        return self.run_dir if self.run_dir is not None else self.path.parent

    def load_model(self, map_location: str | torch.device = "cpu") -> ChunkAutoEncoder:
        """The network in eval mode (safetensors + JSON, no pickle)."""
        model = ChunkAutoEncoder(self.model_config)
        try:
            if self.legacy:
                state = load_file(str(self.path / ckpt.MODEL_FILE), device=str(map_location))
            else:
                state = ckpt.load_model_tensors(ckpt.CheckpointInfo(self.path, self.meta))
            model.load_state_dict(state)
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"cannot load weights from {self.path / ckpt.MODEL_FILE}: {exc}") from exc
        return model.to(map_location).eval()

    def load_state(self) -> dict[str, torch.Tensor]:
        """Optimizer, RNG and collision-table tensors (empty for an earlier folder saved without them)."""
        if not self.legacy:
            return ckpt.load_trainer_state(self.path)
        path = self.path / LEGACY_OPTIMIZER
        if not path.is_file():
            return {}
        try:
            return load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path} is damaged ({exc}); resume from another checkpoint") from exc

    def history(self) -> PretrainHistory:
        """The run's train log and evaluations up to this step."""
        return PretrainHistory.from_records(self.history_records)


def open_checkpoint(path: str | os.PathLike[str], which: str = "best") -> AutoEncoderCheckpoint:
    """The checkpoint ``path`` names (a run dir gives its ``which``: ``best``, ``last`` or a step).

    In a folder of the earlier layout that a resumed run has made a run dir,
    ``checkpoint_best`` and ``checkpoint_step_N`` name the run's checkpoints
    first, the earlier folders of the same name when the run has no such one.
    """
    path = Path(path)
    legacy = (path / LEGACY_CONFIG).is_file() and not (path / ckpt.META_FILE).is_file()
    if ckpt.is_run_dir(path.parent) and ckpt.is_checkpoint_alias(path.name):
        try:
            return _open_run(path.parent, path.name, path)
        except CheckpointError:
            if not legacy:
                raise
    if legacy:
        return _open_legacy(path)
    run_dir, which = ckpt.locate_run(path, which)
    return _open_run(run_dir, which, path)


def _open_run(run_dir: Path, which: str, path: Path) -> AutoEncoderCheckpoint:
    """Checkpoint ``which`` of the run in ``run_dir`` (``path``: what the user named, for messages)."""
    if not ckpt.is_run_dir(run_dir):
        raise CheckpointError(
            f"{path} is not an auto-encoder checkpoint; pass the --checkpoint_dir of `mtx autoencoder pretrain` "
            "or one of its checkpoints (checkpoint_best, checkpoint_step_N)"
        )
    run = ckpt.read_run(run_dir)
    if run["model"]["kind"] != KIND:
        raise CheckpointError(f"{run_dir} is a {run['model']['kind']!r} run, not an auto-encoder pre-training run")
    info = ckpt.read_checkpoint_meta(ckpt.resolve_checkpoint(run_dir, which))
    try:
        model_config = AutoEncoderConfig.from_dict(info.meta["model"]["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{info.path / ckpt.META_FILE} has an unusable model config ({exc})") from exc
    return AutoEncoderCheckpoint(
        path=info.path, step=info.step, model_config=model_config, pretrain=dict(info.meta.get("train_config") or {}),
        data=run.get("data"), meta=info.meta, run_dir=run_dir,
        history_records=ckpt.read_metrics(run_dir, up_to_step=info.step),
    )


def load_autoencoder(path: str | os.PathLike[str], which: str = "best", map_location: str | torch.device = "cpu") -> ChunkAutoEncoder:
    """The network of a checkpoint (see :func:`open_checkpoint` for the names it takes), in eval mode."""
    return open_checkpoint(path, which).load_model(map_location)


def _open_legacy(path: Path) -> AutoEncoderCheckpoint:
    """A ``checkpoint_step_N``/``checkpoint_best`` folder of the earlier layout."""
    try:
        config = read_json(path / LEGACY_CONFIG)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"the checkpoint config {path / LEGACY_CONFIG} is damaged or not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / LEGACY_CONFIG} is not an auto-encoder checkpoint config (not a JSON object)")
    if not (path / ckpt.MODEL_FILE).is_file():
        raise CheckpointError(f"{path} has no {ckpt.MODEL_FILE}: the checkpoint is incomplete; use another one")
    try:
        model, pretrain = move_pattern(dict(config["model"]), dict(config.get("pretrain") or {}))
        model_config = AutoEncoderConfig.from_dict(model)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / LEGACY_CONFIG} is damaged or not an auto-encoder config: {exc}") from exc
    state: dict[str, Any] = {}
    if (path / LEGACY_STATE).is_file():
        try:
            state = read_json(path / LEGACY_STATE)
            int(state["step"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} has a damaged {LEGACY_STATE} ({exc})") from exc
    history = PretrainHistory.from_json(state)
    records = [t.to_record() for t in history.train] + [e.to_record() for e in history.evals]
    records.sort(key=lambda r: (r["step"], "loss" not in r))  # per step: the train line, then the evaluation
    best = state.get("best")
    meta = {**state, "best": _legacy_eval_record(best) if best else None}
    return AutoEncoderCheckpoint(
        path=path, step=int(state.get("step", 0)), model_config=model_config, pretrain=pretrain,
        data=config.get("data"), meta=meta, run_dir=None, history_records=records,
    )


def _legacy_eval_record(record: dict[str, Any]) -> dict[str, Any]:
    """An evaluation record with the earlier name of the exact-chunk rate renamed."""
    return {("val_exact_chunk_rate" if k == "val_exact_rate" else k): v for k, v in record.items()}
