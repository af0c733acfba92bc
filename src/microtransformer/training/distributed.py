"""Data-parallel training under ``torchrun`` (DDP), and a no-op without it.

``torchrun --nproc_per_node N -m microtransformer.cli.main train ...`` sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in each process's environment;
:func:`detect_distributed` reads them, so the same command works with plain
``mtx train`` (world size 1, nothing initialised). Backend: ``nccl`` on CUDA,
``gloo`` on CPU.

Only rank 0 writes checkpoints and logs progress; every rank computes the
same eval (all-reduced) so all ranks take the same decisions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

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
