"""DDP: env detection, and a real 2-process gloo run on CPU (ranks stay in sync, rank 0 saves)."""

from __future__ import annotations

import socket

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


def _worker(rank: int, port: int, run_dir: str, out_dir: str) -> None:
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from lm_testkit import make_config, make_data, make_model

    from microtransformer.training.distributed import destroy_distributed
    from microtransformer.training.trainer import Trainer

    trainer = Trainer(make_model(), make_data(), make_config(max_steps=3, eval_interval=3), run_dir, show_progress=False)
    result = trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in trainer.raw_model.parameters()])
    torch.save({"params": flat, "step": result.step}, f"{out_dir}/rank{rank}.pt")
    destroy_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    import torch.multiprocessing as mp

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    run_dir = tmp_path / "run"
    mp.spawn(_worker, args=(_free_port(), str(run_dir), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] == 3
    assert torch.equal(r0["params"], r1["params"])  # gradients were all-reduced
    assert (run_dir / "last.json").is_file()  # rank 0 wrote the checkpoint
