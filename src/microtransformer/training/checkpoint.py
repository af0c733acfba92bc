"""Run directories and checkpoints: safetensors + JSON, written atomically, no pickle.

Layout of a run directory (everything sampling needs is inside it); every
trainer writes this one format (``mtx train`` and ``mtx autoencoder pretrain``)::

    run_dir/
      run.json                     marks a run dir: model kind/config, train config, tokenizer info
      tokenizer/                   copy of the tokenizer the model was trained with (LM runs)
      metrics.jsonl                one JSON record per log/eval line, trimmed to the step on resume
      checkpoints/step_000200/
        model.safetensors          weights (uncompiled names, tied weights stored once)
        trainer_state.safetensors  optimizer tensors + RNG states (torch, and any sampler generator)
        meta.json                  step, metrics, optimizer hyper-params, aliases; written last
      last.json, best.json         pointers to a checkpoint directory

Why this shape: safetensors cannot execute code on load (a pickled ``.pt``
can), JSON is readable and diffable, and a checkpoint *directory* is
renamed into place only when complete, so a crash or Ctrl-C mid-save never
leaves a half-written checkpoint behind. ``last``/``best`` are tiny JSON
pointers updated with an atomic rename after the directory exists.

Optimizer state is split: every tensor (``exp_avg``, ``exp_avg_sq``, ``step``)
goes to safetensors under ``optimizer.state.<param index>.<name>``, everything
else (``param_groups``: lr, betas, eps, ...) to JSON, so resuming restores
AdamW bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save

from microtransformer.errors import CheckpointError, TokenizerError
from microtransformer.io import (
    atomic_replace_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    member_path,
    read_json,
    remove_stale_temporaries,
)
from microtransformer.models import MODEL_KINDS, build_model, config_from_dict, unwrap_model
from microtransformer.tokenization import MicroTransformerTokenizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
RUN_FILE = "run.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.safetensors"
META_FILE = "meta.json"
CHECKPOINTS_DIR = "checkpoints"
TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.jsonl"
POINTERS = ("last", "best")
# names of ``checkpoint_dir/checkpoint_step_N`` and ``checkpoint_best`` (the pre-training's earlier layout) work too
_ALIAS_STEP_PREFIX = "checkpoint_step_"
_ALIAS_POINTERS = {"checkpoint_best": "best", "checkpoint_last": "last"}


# --------------------------------------------------------------------- tensors
def model_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict of the unwrapped model, shared tensors stored once.

    Returns ``(tensors, aliases)`` where ``aliases[name] = kept_name`` for tied
    weights (GPT's ``lm_head.weight`` -> ``transformer.wte.weight``):
    safetensors refuses to store two names for one storage.
    """
    sd = unwrap_model(model).state_dict()
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...], torch.dtype], str] = {}
    for name, t in sd.items():
        key = (t.data_ptr(), tuple(t.shape), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu").contiguous()
    return tensors, aliases


def optimizer_tensors(
    optimizer: torch.optim.Optimizer, prefix: str = "optimizer"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors (``<prefix>.state.<i>.<name>``) and JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.state.{idx}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any], prefix: str = "optimizer"
) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{prefix}.state."
    for name, t in tensors.items():
        if not name.startswith(prefix):
            continue
        idx, key = name[len(prefix) :].split(".", 1)
        state.setdefault(int(idx), {})[key] = t
    for idx, extra in info.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in info["param_groups"]]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"the optimizer state does not fit this model ({exc}); resume with the same model config") from exc


def rng_tensors(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, torch.Tensor]:
    """Torch CPU (and CUDA) RNG states, and those of ``generators`` (``rng.<name>``): draws continue as if never stopped."""
    out = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.torch_cuda.{i}"] = s
    for name, generator in (generators or {}).items():
        out[f"rng.{name}"] = generator.get_state()
    return out


def restore_rng(tensors: dict[str, torch.Tensor], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`rng_tensors`; a generator whose state was not saved is left as it is."""
    for name, generator in (generators or {}).items():
        if f"rng.{name}" in tensors:
            generator.set_state(tensors[f"rng.{name}"])
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda = sorted((k for k in tensors if k.startswith("rng.torch_cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete. Use another checkpoint in {path.parent.parent} or retrain")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises SafetensorError / OSError on damage
        raise CheckpointError(
            f"{path} is damaged or truncated ({exc}); use another checkpoint "
            f"(ls {path.parent.parent}) or retrain"
        ) from exc


# ----------------------------------------------------------------- run dirs
@dataclass(frozen=True)
class CheckpointInfo:
    """A loaded checkpoint's ``meta.json`` and where it lives."""

    path: Path
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def read_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``run.json`` of ``run_dir``; a typed error if the directory is not a run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; pass the --out_dir that `mtx train` wrote to")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} has no {RUN_FILE}, so it is not a microtransformer run directory (or its metadata was deleted); "
            f"pass the directory `mtx train --out_dir` created (it holds {RUN_FILE}, {TOKENIZER_DIR}/ and {CHECKPOINTS_DIR}/)"
        )
    try:
        run = read_json(path)
        _ = run["model"]["kind"], run["model"]["config"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(f"{path} is damaged ({exc}); restore it or retrain") from exc
    if int(run.get("format_version", 1)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer microtransformer; upgrade to load it")
    return run


def write_run(run_dir: Path, run: dict[str, Any]) -> None:
    atomic_write_json(run_dir / RUN_FILE, {"format_version": FORMAT_VERSION, **run})


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete step checkpoints (those with ``meta.json``), oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / META_FILE).is_file())


def has_checkpoint(run_dir: str | os.PathLike[str]) -> bool:
    """True once a run has saved a complete checkpoint (before that it can be restarted in place)."""
    return bool(list_checkpoints(run_dir))


def append_metrics(run_dir: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Add one record (a JSON line) to the run's ``metrics.jsonl``."""
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(record)) + "\n")


def read_metrics(run_dir: str | os.PathLike[str], up_to_step: int | None = None) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (those with ``step <= up_to_step``); a line cut short by a kill is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if up_to_step is None or step <= up_to_step:
            records.append(record)
    return records


def prepare_run_dir(run_dir: Path, *, fresh: bool, step: int, write_run_files: Callable[[], None]) -> None:
    """Lock held: clear what a killed run left, then write (fresh) or trim (resume) the run files.

    A fresh run in a folder whose earlier run never saved a checkpoint
    starts over in place. On resume, ``metrics.jsonl`` keeps only the
    records up to the resumed step, so no step is logged twice.
    """
    for d in (run_dir, run_dir / CHECKPOINTS_DIR, run_dir / TOKENIZER_DIR):
        remove_stale_temporaries(d)
    metrics = run_dir / METRICS_FILE
    if fresh:
        if is_run_dir(run_dir):
            logger.warning("%s holds a run that never saved a checkpoint; starting it again in place", run_dir)
        metrics.unlink(missing_ok=True)
        write_run_files()
        return
    if metrics.is_file():
        atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in read_metrics(run_dir, up_to_step=step)))


def _pointer_target(run_dir: Path, pointer: Path) -> Path:
    """The checkpoint a ``last.json``/``best.json`` names: ``checkpoints/<plain name>`` inside the run, nothing else."""
    try:
        value = read_json(pointer)["checkpoint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer} is damaged ({exc}); pass --checkpoint step_N instead") from exc
    head, sep, name = value.partition("/") if isinstance(value, str) else ("", "", "")
    if head != CHECKPOINTS_DIR or not sep:
        raise CheckpointError(
            f"{pointer} names {value!r}, not a checkpoint inside {run_dir / CHECKPOINTS_DIR}; "
            "pass --checkpoint step_N instead"
        )
    return member_path(run_dir / CHECKPOINTS_DIR, name, manifest=pointer.name, error=CheckpointError)


def normalize_checkpoint_name(which: str) -> str:
    """``step_300``, ``300`` and ``checkpoint_step_300`` -> ``step_000300`` (the on-disk name);
    ``checkpoint_best``/``checkpoint_last`` -> ``best``/``last``; ``last``/``best`` unchanged."""
    which = _ALIAS_POINTERS.get(which, which)
    for prefix in (_ALIAS_STEP_PREFIX, "step_"):
        if which.startswith(prefix):
            which = which[len(prefix) :]
            break
    return checkpoint_name(int(which)) if which.isdigit() else which


def is_checkpoint_alias(name: str) -> bool:
    """Whether ``name`` names a checkpoint of a run (``last``, ``best``, ``step_N``, ``checkpoint_step_N``, ...)."""
    return normalize_checkpoint_name(name) in POINTERS or normalize_checkpoint_name(name).startswith("step_")


def resolve_checkpoint(run_dir: str | os.PathLike[str], which: str = "last") -> Path:
    """The checkpoint directory for ``which``: ``last``, ``best``, or a step (``step_N`` or ``N``).

    ``best`` falls back to ``last`` (and ``last`` to the newest complete
    step) with a log line, so a run stopped before its first eval still loads.
    """
    run_dir = Path(run_dir)
    read_run(run_dir)
    which = normalize_checkpoint_name(which)
    if which.startswith("step_"):
        path = member_path(run_dir / CHECKPOINTS_DIR, which, manifest="--checkpoint", error=CheckpointError)
        if not (path / META_FILE).is_file():
            names = ", ".join(p.name for p in list_checkpoints(run_dir)) or "none"
            raise CheckpointError(f"no complete checkpoint {which} in {run_dir}; available: {names}")
        return path
    if which not in POINTERS:
        raise CheckpointError(f"unknown checkpoint {which!r}; use last, best or step_N")
    for name in ((which, "last") if which == "best" else (which,)):
        pointer = run_dir / f"{name}.json"
        if pointer.is_file():
            path = _pointer_target(run_dir, pointer)
            if (path / META_FILE).is_file():
                if name != which:
                    logger.info("no %s checkpoint in %s yet; using %s", which, run_dir, name)
                return path
            logger.warning("%s points at %s, which is incomplete; falling back", pointer, path)
    complete = list_checkpoints(run_dir)
    if not complete:
        raise CheckpointError(
            f"{run_dir} has no checkpoint yet (it stopped before its first save), so there is nothing to resume "
            f"or sample; start it again in place with the same `mtx train --out_dir {run_dir} ...` command"
        )
    return complete[-1]


def read_checkpoint_meta(path: Path) -> CheckpointInfo:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path} has no {META_FILE}: the checkpoint is incomplete; use another one or retrain")
    try:
        meta = read_json(meta_path)
        _ = int(meta["step"]), meta["model"]["kind"], meta["model"]["config"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{meta_path} is damaged ({exc}); use another checkpoint or retrain") from exc
    if int(meta.get("format_version", 1)) > FORMAT_VERSION:
        raise CheckpointError(f"{meta_path} was written by a newer microtransformer; upgrade to load it")
    return CheckpointInfo(path, meta)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    *,
    model: nn.Module,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    best: bool = False,
    keep_last: int = 5,
) -> Path:
    """Write ``checkpoints/step_<step>`` atomically, update ``last`` (and ``best``), prune old ones.

    ``meta`` must hold ``model`` (``{"kind", "config"}``); step, aliases and
    optimizer hyper-parameters are added here. The torch RNG and the states
    of ``generators`` go with the optimizer tensors. Returns the checkpoint path.
    """
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)

    def write(tmp: Path) -> None:
        weights, aliases = model_tensors(model)
        _save_safetensors(tmp / MODEL_FILE, weights, {"format": "pt"})
        state: dict[str, torch.Tensor] = dict(rng_tensors(generators))
        full_meta = {**meta, "format_version": FORMAT_VERSION, "step": step, "aliases": aliases}
        if optimizer is not None:
            opt_t, opt_json = optimizer_tensors(optimizer)
            state.update(opt_t)
            full_meta["optimizer"] = opt_json
        state.update(extra_tensors or {})
        _save_safetensors(tmp / STATE_FILE, state)
        atomic_write_json(tmp / META_FILE, full_meta)  # last: marks the checkpoint complete

    # an existing step dir (e.g. Ctrl-C right after an eval saved it) is swapped out atomically
    final = atomic_replace_dir(root / name, write)
    pointer = {"checkpoint": f"{CHECKPOINTS_DIR}/{name}", "step": step, "val_loss": meta.get("val_loss")}
    atomic_write_json(run_dir / "last.json", pointer)
    if best:
        atomic_write_json(run_dir / "best.json", pointer)
    prune_checkpoints(run_dir, keep_last)
    logger.debug("saved checkpoint %s", final)
    return final


def _pointer_targets(run_dir: Path) -> set[str]:
    names = set()
    for p in POINTERS:
        try:
            names.add(_pointer_target(run_dir, run_dir / f"{p}.json").name)
        except (OSError, CheckpointError):
            pass
    return names


def prune_checkpoints(run_dir: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete step checkpoints beyond the newest ``keep_last``; never ``last``/``best`` targets."""
    run_dir = Path(run_dir)
    steps = list_checkpoints(run_dir)
    protected = _pointer_targets(run_dir)
    doomed = [p for p in steps[: max(0, len(steps) - keep_last)] if p.name not in protected]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed


def load_model_tensors(info: CheckpointInfo) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint, tied names restored (any model kind)."""
    tensors = _load_safetensors(info.path / MODEL_FILE)
    for name, target in info.meta.get("aliases", {}).items():
        if target in tensors:
            tensors[name] = tensors[target]
    return tensors


def load_model_from_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the language model of a checkpoint directory and load its weights (strict)."""
    info = read_checkpoint_meta(path)
    kind, cfg = info.meta["model"]["kind"], info.meta["model"]["config"]
    if kind not in MODEL_KINDS:
        raise CheckpointError(
            f"{path} holds a {kind!r} model, not a language model ({', '.join(MODEL_KINDS)}); "
            "an auto-encoder run is read by `mtx autoencoder export/eval/analyze`"
        )
    try:
        model = build_model(kind, config_from_dict(kind, cfg))
    except Exception as exc:
        raise CheckpointError(f"{path / META_FILE} has an unusable model config ({exc}); retrain") from exc
    tensors = load_model_tensors(info)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path / MODEL_FILE} does not match the model config in {path / META_FILE} ({exc}); "
            "the files come from different runs: use another checkpoint or retrain"
        ) from exc
    return model.to(map_location), info


def load_trainer_state(path: Path) -> dict[str, torch.Tensor]:
    """Optimizer and RNG tensors of a checkpoint (for ``--resume``)."""
    return _load_safetensors(path / STATE_FILE)


def copy_tokenizer(tokenizer: Any, run_dir: Path, model_max_length: int | None = None) -> Path:
    """Save ``tokenizer`` into ``run_dir/tokenizer`` so the run dir is self-contained.

    ``model_max_length`` (the model's context, when it has one) goes into the
    copy's Hugging Face ``tokenizer_config.json``; the caller's tokenizer is unchanged.
    """
    previous = getattr(tokenizer, "model_max_length", None)
    if model_max_length is not None:
        tokenizer.model_max_length = model_max_length
    try:
        return Path(tokenizer.save(run_dir / TOKENIZER_DIR))
    finally:
        if model_max_length is not None:
            tokenizer.model_max_length = previous


def load_run_tokenizer(run_dir: str | os.PathLike[str], tokenizer_path: str | os.PathLike[str] | None = None) -> Any:
    """The tokenizer saved in the run dir (or ``tokenizer_path``), checked against ``run.json``."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    path = Path(tokenizer_path) if tokenizer_path else run_dir / TOKENIZER_DIR
    try:
        tok = MicroTransformerTokenizer.from_pretrained(path)
    except TokenizerError as exc:
        raise CheckpointError(f"cannot load the run's tokenizer: {exc}") from exc
    check_tokenizer_matches(run["model"]["config"]["vocab_size"], tok, where=str(path))
    want = run.get("tokenizer", {}).get("fingerprint")
    if want and tok.fingerprint != want:
        logger.warning(
            "tokenizer %s has a different fingerprint than the one this run was trained with; outputs may be garbled",
            path,
        )
    return tok


def check_tokenizer_matches(model_vocab_size: int, tokenizer: Any, *, where: str = "the tokenizer") -> None:
    """Typed error when the tokenizer's vocab differs from the model's (ids would be misread)."""
    if int(tokenizer.vocab_size) != int(model_vocab_size):
        raise CheckpointError(
            f"{where} has vocab_size {tokenizer.vocab_size} but the model was trained with vocab_size "
            f"{model_vocab_size}: this is not the tokenizer the model was trained with. Use the run's own "
            "tokenizer/ directory (drop --tokenizer_path) or retrain the model with this tokenizer"
        )


def checkpoint_files(path: Path) -> Iterable[Path]:
    return (path / MODEL_FILE, path / STATE_FILE, path / META_FILE)


def locate_run(path: str | os.PathLike[str], which: str = "best") -> tuple[Path, str]:
    """``(run_dir, which)`` for a run directory, or for one of its checkpoint directories.

    A name of a checkpoint inside a run dir that is not a directory of its own
    (``runs/a/checkpoint_step_300``, ``runs/a/best``) works too.

    >>> locate_run("runs/a/checkpoints/step_000300")  # doctest: +SKIP
    (PosixPath('runs/a'), 'step_000300')
    """
    path = Path(path)
    run_dir = path.parent.parent
    if not is_run_dir(path) and (path / META_FILE).is_file() and path.parent.name == CHECKPOINTS_DIR and is_run_dir(run_dir):
        return run_dir, path.name
    if not path.exists() and is_run_dir(path.parent) and is_checkpoint_alias(path.name):  # runs/a/checkpoint_step_300
        return path.parent, path.name
    return path, which


def load_run(
    run_dir: str | os.PathLike[str],
    which: str = "best",
    *,
    tokenizer_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, Any, CheckpointInfo]:
    """Model + tokenizer + checkpoint info from a run directory (or one of its checkpoint dirs): all sampling needs.

    The tokenizer is the run's own copy unless ``tokenizer_path`` is given;
    either way its vocab must match the model's, else :class:`CheckpointError`.
    """
    run_dir, which = locate_run(run_dir, which)
    kind = read_run(run_dir)["model"]["kind"]
    if kind not in MODEL_KINDS:
        raise CheckpointError(
            f"{run_dir} is a {kind!r} run, not a language model ({', '.join(MODEL_KINDS)}); "
            "an auto-encoder run is read by `mtx autoencoder export/eval/analyze`"
        )
    if tokenizer_path is None and not (run_dir / TOKENIZER_DIR).is_dir():
        raise CheckpointError(
            f"{run_dir} has no {TOKENIZER_DIR}/ (the run was trained without a tokenizer); pass --tokenizer_path "
            "with the tokenizer the data was encoded with"
        )
    path = resolve_checkpoint(run_dir, which)
    model, info = load_model_from_checkpoint(path, map_location=device)
    tok = load_run_tokenizer(run_dir, tokenizer_path)
    check_tokenizer_matches(model.config.vocab_size, tok, where=str(tokenizer_path or run_dir / TOKENIZER_DIR))  # type: ignore[union-attr]
    model.eval()
    return model, tok, info
