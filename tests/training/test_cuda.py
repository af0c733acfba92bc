"""The `ours` recipe on a CUDA GPU: the options, compiled blocks, bf16 autocast, Muon and exact resume.

Skipped without CUDA (CI has none); run on a GPU machine with
``python -m pytest -q -p no:randomly tests/training/test_cuda.py``.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from microtransformer.models import GPT, GPTConfig
from microtransformer.training.optim import MuonAdamW, muon_groups, OptimConfig
from microtransformer.training.recipes import RECIPES
from microtransformer.training.trainer import Trainer

from gpt_testkit import eager_and_compiled_grads
from lm_testkit import VOCAB, assert_split_run_equals_full, make_config, make_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# cuBLAS is bitwise repeatable only with a fixed workspace; read when CUDA starts, which is after collection
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

SHAPE = dict(vocab_size=VOCAB, n_layer=3, n_head=2, n_embd=64, block_size=32)
OURS = {**RECIPES["ours"].model, **SHAPE}
VARIANTS = {
    "ours": OURS,
    "nanochat": {**RECIPES["nanochat"].model, **SHAPE},
    "ours+attn_chunk": {**OURS, "attn_chunk": 8},
}


def gpt(options: dict, device: str = "cuda") -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(**options))
    with torch.no_grad():  # the scaled init zeroes the residual projections: give them weights so the blocks matter
        for name, p in m.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("ve_gate.weight"):
                p.normal_(0, 0.05)
    return m.to(device)


@pytest.fixture(autouse=True)
def _exact_fp32_matmuls():
    """TF32 would make the fp32 comparisons below loose; the tests compare math, not speed."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("name", VARIANTS)
def test_cuda_logits_match_cpu_and_cached_decoding_matches_recompute(name: str) -> None:
    options = VARIANTS[name]
    m, cpu = gpt(options).eval(), gpt(options, "cpu").eval()
    x = torch.randint(0, VOCAB, (2, 24))
    full = m(x.cuda()).logits
    torch.testing.assert_close(full.cpu(), cpu(x).logits, atol=1e-4, rtol=1e-4)
    cache = m.new_cache(2)
    xc = x.cuda()
    parts = [m(xc[:, :8], cache=cache).logits] + [m(xc[:, t : t + 1], cache=cache).logits for t in range(8, 24)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-4, rtol=1e-4)
    greedy = m.generate(xc[:1, :4], max_new_tokens=12, temperature=0.0)
    assert greedy.shape == (1, 16) and greedy.device.type == "cuda"
    ids = xc[:1, :4]
    for _ in range(12):  # recompute without a cache: the same greedy tokens
        ids = torch.cat([ids, m(ids).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(greedy, ids)


@pytest.mark.parametrize("name", VARIANTS)
def test_bf16_autocast_loss_is_close_to_fp32_and_trains(name: str) -> None:
    m = gpt(VARIANTS[name]).train()
    x, y = torch.randint(0, VOCAB, (4, 32), device="cuda"), torch.randint(0, VOCAB, (4, 32), device="cuda")
    fp32 = m(x, y, loss_only=True).loss
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = m(x, y, loss_only=True).loss
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16)
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0.02)
    bf16.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("gcc")), reason="torch.compile needs a C compiler")
def test_compiled_blocks_give_the_eager_loss_and_gradients_on_cuda() -> None:
    m = gpt(OURS).train()
    x, y = torch.randint(0, VOCAB, (4, 32), device="cuda"), torch.randint(0, VOCAB, (4, 32), device="cuda")
    eager, compiled, eager_grads, grads = eager_and_compiled_grads(m, x, y)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    # Triton's kernels sum in another order than eager CUDA's: compare each gradient as a whole, relative to its norm
    errors = {n: float((g - eager_grads[n]).norm() / eager_grads[n].norm().clamp_min(1e-12)) for n, g in grads.items()}
    assert max(errors.values()) < 1e-3, errors


def test_muon_step_on_cuda_matches_cpu() -> None:
    """Newton-Schulz in bf16 on both devices: the same update up to bf16 rounding."""
    models = [gpt(OURS, "cpu"), gpt(OURS, "cpu").cuda()]
    x, y = torch.randint(0, VOCAB, (4, 32)), torch.randint(0, VOCAB, (4, 32))
    for m in models:
        device = next(m.parameters()).device
        opt = MuonAdamW(muon_groups(m, OptimConfig()))
        m(x.to(device), y.to(device), loss_only=True).loss.backward()
        opt.step()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(b.detach().cpu(), a.detach(), atol=2e-3, rtol=2e-2, msg=name)


@pytest.fixture
def deterministic():
    """torch's deterministic kernels (the embedding's backward otherwise adds with atomics, in any order)."""
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def test_ours_trains_on_cuda_in_bf16_and_resumes_exactly(tmp_path, deterministic) -> None:
    """Bitwise, as on the CPU."""
    data = make_data(block_size=32)
    train = {k: v for k, v in RECIPES["ours"].train.items() if k not in ("batch_size", "compile")}
    cfg = make_config(**{**train, "max_steps": 8, "eval_interval": 3, "device": "auto", "precision": "auto"})
    full_trainer = Trainer(gpt(OURS, "cpu"), data, cfg, tmp_path / "full", show_progress=False)
    assert full_trainer.device.startswith("cuda") and full_trainer.precision.precision == "bf16"
    full = full_trainer.fit()
    first = Trainer(gpt(OURS, "cpu"), data, cfg, tmp_path / "split", show_progress=False).fit(stop_at_step=4)
    second = Trainer.resume(tmp_path / "split", data, show_progress=False).fit()
    assert_split_run_equals_full(full, first, second, tmp_path / "full", tmp_path / "split")
    assert full.history[-1].loss < full.history[0].loss
