"""DDP helpers: env detection and the split of a global batch (``torchrun`` runs end to end: ``test_torchrun.py``)."""

from __future__ import annotations

import pytest
import torch

from microtransformer.errors import ConfigError
from microtransformer.training.distributed import detect_distributed


def test_detect_distributed_env():
    assert detect_distributed({}).world_size == 1
    env = detect_distributed({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert (env.rank, env.local_rank, env.world_size, env.is_main) == (1, 1, 2, False)
    with pytest.raises(ConfigError):
        detect_distributed({"RANK": "2", "WORLD_SIZE": "2"})


def test_rank_batch_gives_each_rank_its_rows_of_one_global_batch():
    import numpy as np

    from microtransformer.training.distributed import DistEnv, rank_batch

    class Plain:  # a data source that knows nothing of ranks
        def get_batch(self, split, batch_size, rng):
            x = torch.from_numpy(rng.integers(0, 1000, size=(batch_size, 4)))
            return x, x + 1

    whole, _ = Plain().get_batch("train", 6, np.random.default_rng(1))
    rows = [rank_batch(Plain(), "train", 2, np.random.default_rng(1), DistEnv(rank=r, world_size=3))[0] for r in range(3)]
    assert torch.equal(torch.cat(rows), whole)
