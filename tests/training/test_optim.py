"""Muon + AdamW: Newton-Schulz orthogonalises, one step matches a hand computation, AdamW matches torch's."""

from __future__ import annotations

import math

import pytest
import torch

from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig, LSTMConfig, LSTMLanguageModel
from microtransformer.training.optim import MuonAdamW, OptimConfig, muon_groups, muon_momentum, newton_schulz
from microtransformer.training.trainer import TrainConfig


@pytest.mark.parametrize("method", ["quintic", "polar_express"])
@pytest.mark.parametrize("shape", [(16, 16), (48, 16), (16, 64)])
def test_newton_schulz_gives_singular_values_near_one(shape, method) -> None:
    """A gradient-like matrix with singular values spread over two decades (condition number 100) comes back
    with all of them in Muon's band around one, and close to its exact polar factor ``U V^T``."""
    torch.manual_seed(0)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k))
    g = u @ torch.diag(torch.logspace(0, 2, k)) @ v.T
    q = newton_schulz(g, dtype=torch.float32, method=method)
    s = torch.linalg.svdvals(q)
    assert float(s.min()) > 0.5 and float(s.max()) < 1.3, s
    cos = torch.nn.functional.cosine_similarity(q.flatten(), (u @ v.T).flatten(), dim=0)
    assert float(cos) > 0.95


@pytest.mark.parametrize("method", ["quintic", "polar_express"])
@pytest.mark.parametrize("shape", [(48, 16), (16, 64)])
def test_a_stack_of_matrices_is_orthogonalised_matrix_by_matrix(shape, method) -> None:
    """Each matrix of a stack is scaled by its own norm (a large one does not shrink the others' steps)."""
    torch.manual_seed(0)
    gs = torch.randn(3, *shape) * torch.tensor([1.0, 30.0, 0.01])[:, None, None]
    stacked = newton_schulz(gs, dtype=torch.float64, method=method)
    for g, q in zip(gs, stacked):
        torch.testing.assert_close(q, newton_schulz(g, dtype=torch.float64, method=method))


def test_muon_steps_same_shape_matrices_together_as_it_would_one_by_one() -> None:
    """Three weights, two of one shape (orthogonalised as a stack): each moves as a Muon step on it alone would."""
    torch.manual_seed(0)
    ws = [torch.nn.Parameter(torch.randn(*s, dtype=torch.float64)) for s in ((24, 8), (24, 8), (8, 16))]
    together = MuonAdamW([{"params": ws, "muon": True, "lr": 0.1, "momentum": 0.9}], ns_dtype=torch.float64)
    alone = [torch.nn.Parameter(w.detach().clone()) for w in ws]
    singles = [MuonAdamW([{"params": [w], "muon": True, "lr": 0.1, "momentum": 0.9}], ns_dtype=torch.float64)
               for w in alone]
    for _ in range(3):
        grads = [torch.randn_like(w) for w in ws]
        for w, a, g in zip(ws, alone, grads):
            w.grad, a.grad = g.clone(), g.clone()
        together.step()
        for opt in singles:
            opt.step()
    for w, a in zip(ws, alone):
        torch.testing.assert_close(w.detach(), a.detach())


def test_one_muon_step_equals_the_hand_computation() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(24, 8))
    g = torch.randn(24, 8)
    w0 = w.detach().clone()
    opt = MuonAdamW([{"params": [w], "muon": True, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}], ns_dtype=torch.float32)
    for step in range(2):
        w.grad = g.clone()
        opt.step()
    buf1 = 0.1 * g
    buf2 = 0.9 * buf1 + 0.1 * g
    expect = w0.clone()
    for buf in (buf1, buf2):
        u = 0.1 * g + 0.9 * buf  # Nesterov
        expect -= 0.1 * math.sqrt(24 / 8) * newton_schulz(u, dtype=torch.float32)
    torch.testing.assert_close(w.detach(), expect)


@pytest.mark.parametrize("shape", [(24, 8), (8, 24)])
def test_a_normuon_step_equals_the_hand_computation(shape) -> None:
    """NorMuon: each of the longer side's vectors divided by the root of an EMA (beta2) of its mean square, the
    whole update rescaled to the orthogonalised update's norm; Polar Express orthogonalises."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(*shape))
    grads = [torch.randn(*shape), torch.randn(*shape)]
    w0 = w.detach().clone()
    group = {"params": [w], "muon": True, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "beta2": 0.8,
             "orthogonalizer": "polar_express"}
    opt = MuonAdamW([group], ns_dtype=torch.float32)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    expect, buf, second = w0.clone(), torch.zeros(shape), 0.0
    reduce = 1 if shape[0] >= shape[1] else 0  # mean over the short side: one number per longer-side vector
    for g in grads:
        buf = 0.9 * buf + 0.1 * g
        o = newton_schulz(0.1 * g + 0.9 * buf, dtype=torch.float32, method="polar_express")
        second = 0.8 * second + 0.2 * o.square().mean(dim=reduce, keepdim=True)
        scaled = o / second.sqrt()
        scaled = scaled * (o.norm() / scaled.norm())
        expect -= 0.1 * math.sqrt(max(1.0, shape[0] / shape[1])) * scaled
    torch.testing.assert_close(w.detach(), expect)
    assert not torch.allclose(scaled, o)  # the normalisation did something
    with pytest.raises(ConfigError, match="muon_beta2 must be in"):
        TrainConfig(muon_beta2=1.0)
    with pytest.raises(ConfigError, match="orthogonalizer must be one of quintic, polar_express"):
        TrainConfig(orthogonalizer="svd")


def test_the_adamw_groups_match_torch_adamw() -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(10, 4))
    b = torch.nn.Parameter(a.detach().clone())
    ours = MuonAdamW([{"params": [a], "muon": False, "lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-10, "weight_decay": 0.1}])
    ref = torch.optim.AdamW([b], lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(10, 4)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a.detach(), b.detach(), atol=1e-6, rtol=1e-5)


def test_the_fused_adamw_kernel_and_the_loop_take_the_same_steps(monkeypatch) -> None:
    """On the CPU the AdamW groups run torch's fused kernel; the plain loop (other devices) takes the same steps."""
    from microtransformer.training import optim

    torch.manual_seed(0)
    start = [torch.randn(12, 4), torch.randn(7)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(4)]

    def run(fused: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(optim, "_fused_adamw_fits", lambda params: fused)
        ps = [torch.nn.Parameter(t.clone()) for t in start]
        opt = MuonAdamW([{"params": ps, "muon": False, "lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-10,
                          "weight_decay": 0.1}])
        for step_grads in grads:
            for p, g in zip(ps, step_grads):
                p.grad = g.clone()
            opt.step()
        assert [float(opt.state[p]["step"]) for p in ps] == [4.0, 4.0]
        return [p.detach() for p in ps]

    probe = torch.nn.Parameter(torch.zeros(2))
    probe.grad = torch.zeros(2)
    assert optim._fused_adamw_fits([probe]) == hasattr(torch, "_fused_adamw_")  # the CPU path is the kernel
    for fused_p, loop_p in zip(run(True), run(False)):
        torch.testing.assert_close(fused_p, loop_p, atol=1e-7, rtol=1e-6)


def test_groups_split_the_gpt_and_refuse_the_lstm() -> None:
    m = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=8, tie_embeddings=False, norm="rmsnorm"))
    groups = muon_groups(m, OptimConfig())
    assert [g["muon"] for g in groups] == [True, False, False]  # matrices; embeddings; head (RMSNorm: no scalars)
    assert groups[1]["lr"] == pytest.approx(0.2 * (32 / 768) ** -0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    mixing = GPT(GPTConfig(**{**m.config.to_dict(), "smear": True, "x0_mix": True}))
    groups = muon_groups(mixing, OptimConfig())
    assert sum(len(g["params"]) for g in groups) == len(list(mixing.parameters()))
    by_param = {id(p): g for g in groups for p in g["params"]}
    cfg = OptimConfig()
    assert by_param[id(mixing.resid_lambdas)]["lr"] == cfg.residual_lr
    assert by_param[id(mixing.x0_lambdas)]["lr"] == cfg.x0_lr and by_param[id(mixing.x0_lambdas)]["betas"][0] == 0.96
    assert by_param[id(mixing.smear_gate)]["lr"] == by_param[id(mixing.smear_lambda)]["lr"] == cfg.smear_lr
    tied = GPT(GPTConfig(**{**m.config.to_dict(), "tie_embeddings": True}))  # the shared matrix: the head's LR
    by_param = {id(p): g for g in muon_groups(tied, OptimConfig()) for p in g["params"]}
    assert by_param[id(tied.lm_head.weight)]["lr"] == pytest.approx(0.004 * (32 / 768) ** -0.5)
    assert by_param[id(tied.lm_head.weight)]["weight_decay"] == 0.0
    with pytest.raises(ConfigError, match="needs a GPT"):
        muon_groups(LSTMLanguageModel(LSTMConfig(vocab_size=64)), OptimConfig())
    assert muon_momentum(0, OptimConfig()) == pytest.approx(0.85)
    assert muon_momentum(150, OptimConfig()) == pytest.approx(0.90)
    assert muon_momentum(10_000, OptimConfig()) == pytest.approx(0.95)
    # the trainer's field reaches it: a shorter warmup, or none
    from microtransformer.training.trainer import TrainConfig

    assert muon_momentum(50, TrainConfig(momentum_warmup_steps=100).optim_config()) == pytest.approx(0.90)
    assert muon_momentum(0, TrainConfig(momentum_warmup_steps=0).optim_config()) == pytest.approx(0.95)
    with pytest.raises(ConfigError, match="momentum_warmup_steps must be an integer >= 0"):
        TrainConfig(momentum_warmup_steps=-1)


def test_embedding_weight_decay_shrinks_the_token_and_value_tables_only() -> None:
    cfg = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=8, tie_embeddings=False,
                    norm="rmsnorm", value_embeds=True, value_embed_every=1)
    m = GPT(cfg)
    groups = muon_groups(m, OptimConfig(embedding_weight_decay=0.05))
    tables = [m.transformer.wte.weight, *(t.weight for t in m.transformer.ve.values())]
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert [by_param[id(p)]["weight_decay"] for p in tables] == [0.05] * 3
    assert by_param[id(m.lm_head.weight)]["weight_decay"] == 0.0
    # a zero gradient leaves only the decay: each table scaled by 1 - lr * wd, the head untouched
    before = {id(p): p.detach().clone() for p in m.parameters()}
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    MuonAdamW(groups).step()
    lr = by_param[id(tables[0])]["lr"]
    for p in tables:
        torch.testing.assert_close(p.detach(), before[id(p)] * (1 - lr * 0.05))
    torch.testing.assert_close(m.lm_head.weight.detach(), before[id(m.lm_head.weight)])
    with pytest.raises(ConfigError, match="embedding_weight_decay"):
        TrainConfig(embedding_weight_decay=-0.1)
