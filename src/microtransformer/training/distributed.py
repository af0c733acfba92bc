"""Data-parallel training under ``torchrun`` (DDP), and a no-op without it.

``torchrun --nproc_per_node N -m microtransformer.cli.main train ...`` sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in each process's environment;
:func:`detect_distributed` reads them, so the same command works with plain
``mtx train`` (world size 1, nothing initialised). Backend: ``nccl`` on CUDA,
``gloo`` on CPU.

Only rank 0 writes checkpoints and logs progress; every rank computes the
same eval (all-reduced) so all ranks take the same decisions. The data of a
step is one global batch that every rank draws from the same seed, each
keeping its own rows (:func:`rank_batch`), so N ranks with batch B train on
what one process with batch N*B would, and no two ranks share a draw. Each
rank's torch RNG (dropout) is gathered into every checkpoint
(:func:`gather_rng_states`), so ``--resume`` continues every rank exactly.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from microtransformer.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect_distributed(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read torchrun's env vars; ``DistEnv()`` (rank 0 of 1) when they are absent.

    >>> detect_distributed({})
    DistEnv(rank=0, local_rank=0, world_size=1)
    >>> detect_distributed({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}).is_main
    False
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return DistEnv()
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ConfigError(f"RANK/LOCAL_RANK/WORLD_SIZE must be integers ({exc}); launch with torchrun") from exc
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={world}; launch with torchrun")
    return DistEnv(rank=rank, local_rank=local, world_size=world)


def refuse_distributed(command: str, environ: Mapping[str, str] | None = None) -> None:
    """A :class:`ConfigError` when ``command`` (which trains on one process only) was started by ``torchrun``."""
    env = detect_distributed(environ)
    if env.is_distributed:
        raise ConfigError(
            f"{command} runs on one process, but torchrun started {env.world_size} (WORLD_SIZE={env.world_size}); "
            f"run it without torchrun (on CUDA it uses one GPU; choose it with CUDA_VISIBLE_DEVICES)"
        )


def init_distributed(env: DistEnv, device: str) -> str:
    """Initialise the process group if ``env`` is distributed; returns this rank's device.

    On CUDA each rank takes ``cuda:LOCAL_RANK``.
    """
    if not env.is_distributed:
        return device
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        device = f"cuda:{env.local_rank}"
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
        logger.info("initialised %s process group: rank %d of %d", backend, env.rank, env.world_size)
    return device


def destroy_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: str) -> list[float]:
    """Sum a few floats over ranks (identity when not distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _takes_rank(get_batch: Any) -> bool:
    try:
        params = inspect.signature(get_batch).parameters
    except (TypeError, ValueError):
        return False
    return "world_size" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def rank_batch(data: Any, split: str, batch_size: int, rng: Any, env: DistEnv) -> tuple[Any, Any]:
    """This rank's ``batch_size`` rows of one global batch of ``batch_size * world_size`` drawn from ``rng``.

    A data source whose ``get_batch`` takes ``rank``/``world_size`` (ours do)
    reads only this rank's windows; any other one is asked for the whole
    global batch and this rank keeps its rows, with the same result.
    """
    if not env.is_distributed:
        return data.get_batch(split, batch_size, rng)
    if _takes_rank(data.get_batch):
        return data.get_batch(split, batch_size, rng, rank=env.rank, world_size=env.world_size)
    x, y = data.get_batch(split, batch_size * env.world_size, rng)
    rows = slice(env.rank * batch_size, (env.rank + 1) * batch_size)
    return x[rows], y[rows]


def gather_rng_states(env: DistEnv) -> dict[str, Any]:
    """Every rank's torch RNG state as ``rng.rank<r>.*`` tensors, on every rank (empty without DDP).

    Called by every rank at each checkpoint; rank 0 saves the result, so a
    resumed run gives each rank its own dropout stream back.
    """
    if not env.is_distributed:
        return {}
    import torch.distributed as dist

    from microtransformer.training.checkpoint import rng_tensors

    states: list[Any] = [None] * env.world_size
    dist.all_gather_object(states, rng_tensors())  # a few KB per rank
    return {f"rng.rank{r}.{name[len('rng.'):]}": t for r, mine in enumerate(states) for name, t in mine.items()}


def restore_rank_rng(tensors: Mapping[str, Any], rank: int) -> bool:
    """Restore this rank's saved torch RNG state; False when the checkpoint has none for this rank."""
    from microtransformer.training.checkpoint import restore_rng

    prefix = f"rng.rank{rank}."
    mine = {"rng." + k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not mine:
        return False
    restore_rng(mine)
    return True
