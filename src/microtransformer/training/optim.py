"""Muon for the weight matrices, AdamW for the rest, in one ``torch.optim.Optimizer``.

Muon (Jordan et al., 2024, "Muon: MomentUm Orthogonalized by Newton-Schulz")
replaces each 2-D weight's momentum-SGD update by the nearest semi-orthogonal
matrix (five Newton-Schulz iterations), so every direction of the update
moves at the same rate. It trains transformer blocks in fewer steps than
AdamW; embeddings, the output layer and gains keep AdamW, as in
modded-nanogpt and nanochat.

One optimizer object (groups tagged ``"muon": True/False``) keeps the
trainer, checkpoints and exact resume unchanged: ``state_dict()`` holds the
momentum buffers and Adam moments like any torch optimizer.

>>> model = GPT(GPTConfig(vocab_size=256, n_embd=64))  # doctest: +SKIP
>>> opt = MuonAdamW(muon_groups(model, OptimConfig()))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from microtransformer.device import cpu_bf16_flags
from microtransformer.errors import ConfigError

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # the quintic of Jordan et al.: fast to ~0.7-1.2 singular values
NS_STEPS = 5
#: Polar Express (Amsel et al., 2025): one quintic per step, each optimal for the singular values left by the last
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
ORTHOGONALIZERS = ("quintic", "polar_express")
REFERENCE_WIDTH = 768  # AdamW learning rates are tuned at this width and scaled by (width / 768) ** -0.5


def newton_schulz(
    g: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype = torch.bfloat16, method: str = "quintic"
) -> torch.Tensor:
    """An approximately semi-orthogonal matrix ``U V^T`` from ``g = U S V^T``, in ``dtype``; ``g`` is one matrix
    or a stack of same-shape matrices ``(..., rows, cols)``, each orthogonalised on its own (one batched matmul per
    step instead of one per matrix: the small matrices of a small GPT are cheaper together).

    ``method``: ``"quintic"`` (Jordan et al.'s fixed coefficients) or ``"polar_express"`` (a tuned quintic per step;
    nanochat's current choice).

    >>> [bool(torch.linalg.svdvals(newton_schulz(torch.randn(8, 4), dtype=torch.float32, method=m)).max() < 1.3)
    ...  for m in ORTHOGONALIZERS]
    [True, True]
    """
    x = g.to(dtype)
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    norm = x.norm(dim=(-2, -1), keepdim=True)
    if method == "polar_express":
        coeffs, x = POLAR_EXPRESS[:steps], x / (norm * 1.02 + 1e-6)  # its coefficients assume a 2 % margin
    else:
        coeffs, x = (NS_COEFFS,) * steps, x / (norm + 1e-7)  # spectral norm <= 1
    for a, b, c in coeffs:
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if transposed else x


def normalize_rows(update: torch.Tensor, second_moment: torch.Tensor, beta2: float) -> torch.Tensor:
    """NorMuon (Li et al., 2025): divide each row (the longer side's vectors) of an orthogonalised ``update`` by the
    root of an EMA of its mean square, then rescale to the update's own norm: neurons whose updates run large
    step less, and the total step stays Muon's. ``second_moment`` (rows x 1 or 1 x cols, fp32) is updated in place.

    >>> u, v = torch.ones(4, 2), torch.zeros(4, 1)
    >>> bool(torch.allclose(normalize_rows(u, v, 0.95), u)), bool(torch.allclose(v, torch.full((4, 1), 0.05)))
    (True, True)
    """
    dim = -1 if update.size(0) >= update.size(1) else -2
    u = update.float()  # one cast (the update is bf16 where Newton-Schulz runs in bf16)
    second_moment.lerp_(u.square().mean(dim=dim, keepdim=True), 1 - beta2)
    scaled = u * second_moment.clamp_min(1e-10).rsqrt()
    scaled *= u.norm() / scaled.norm().clamp_min(1e-10)
    return scaled.to(update.dtype)


@dataclass(frozen=True)
class OptimConfig:
    """Learning rates of the Muon + AdamW split (nanochat's values; the AdamW ones at width 768)."""

    matrix_lr: float = 0.02
    embedding_lr: float = 0.2
    head_lr: float = 0.004
    scalar_lr: float = 0.5
    residual_lr: float = 0.005  # x0_mix's residual scales (they compound along the depth: small steps)
    x0_lr: float = 0.5  # x0_mix's embedding shares
    smear_lr: float = 0.2  # smear's gate and strength
    momentum: float = 0.95
    momentum_warmup_steps: int = 300  # Muon's momentum rises from 0.85 to ``momentum`` over these steps
    orthogonalizer: str = "quintic"  # or "polar_express"
    muon_beta2: float = 0.0  # > 0: NorMuon's per-neuron normalisation with this EMA decay (nanochat: 0.95)
    adam_betas: tuple[float, float] = (0.8, 0.95)
    weight_decay: float = 0.0
    embedding_weight_decay: float = 0.0  # AdamW's decoupled decay (times the LR) on the token (untied) and value tables


def muon_groups(model: nn.Module, config: OptimConfig) -> list[dict[str, Any]]:
    """Parameter groups for :class:`MuonAdamW` from ``model.param_roles()`` (GPT)."""
    roles = getattr(model, "param_roles", None)
    if roles is None:
        raise ConfigError("the muon optimizer needs a GPT (it splits weight matrices from embeddings); use --optimizer adamw")
    parts = roles()
    width = model.config.n_embd
    scale = (width / REFERENCE_WIDTH) ** -0.5
    betas = config.adam_betas
    adamw = [  # (role, lr, betas); the mixing scalars of x0_mix and smear take unscaled LRs, as nanochat sets them
        ("embedding", config.embedding_lr * scale, betas),
        ("head", config.head_lr * scale, betas),
        ("scalar", config.scalar_lr * scale, betas),
        ("residual", config.residual_lr, betas),
        ("x0", config.x0_lr, (0.96, betas[1])),
        ("smear", config.smear_lr, betas),
    ]
    groups: list[dict[str, Any]] = [
        {"params": parts["matrix"], "muon": True, "lr": config.matrix_lr, "momentum": config.momentum,
         "weight_decay": config.weight_decay, "orthogonalizer": config.orthogonalizer, "beta2": config.muon_beta2},
    ]
    groups += [
        {"params": parts[role], "muon": False, "lr": lr, "betas": b, "eps": 1e-10,
         "weight_decay": config.embedding_weight_decay if role == "embedding" else 0.0}
        for role, lr, b in adamw
    ]
    return [g for g in groups if g["params"]]


def muon_momentum(step: int, config: OptimConfig) -> float:
    """Muon's momentum at ``step``: 0.85 rising linearly to ``config.momentum`` (nanochat's warmup)."""
    if config.momentum_warmup_steps <= 0:
        return config.momentum
    frac = min(step / config.momentum_warmup_steps, 1.0)
    return (1 - frac) * 0.85 + frac * config.momentum


class MuonAdamW(torch.optim.Optimizer):
    """Muon on groups with ``muon=True`` (2-D weights), AdamW on the others.

    Muon step per matrix: ``buf = m * buf + (1 - m) * g``, Nesterov
    ``u = (1 - m) * g + m * buf``, ``W -= lr * sqrt(max(1, rows / cols)) * NS(u)``
    (the factor keeps the update's RMS the same for tall matrices).
    Newton-Schulz runs in bf16 where the device has fast bf16 (CUDA, a CPU
    with bf16 units) and in fp32 elsewhere.
    """

    def __init__(self, groups: Iterable[dict[str, Any]], *, ns_dtype: torch.dtype | None = None) -> None:
        defaults = {"lr": 1e-3, "muon": False, "momentum": 0.95, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.0}
        super().__init__(list(groups), defaults)
        self.ns_dtype = ns_dtype

    def _ns_dtype(self, device: torch.device) -> torch.dtype:
        if self.ns_dtype is not None:
            return self.ns_dtype
        if device.type == "cuda":
            return torch.bfloat16
        return torch.bfloat16 if cpu_bf16_flags() else torch.float32

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            if group["muon"]:
                self._muon(group)
            else:
                self._adamw(group)

    def _muon(self, group: dict[str, Any]) -> None:
        m, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        # groups built by hand, or restored from optimizer states saved before these options, lack them: plain Muon
        method = group.get("orthogonalizer", OptimConfig.orthogonalizer)
        beta2 = group.get("beta2", OptimConfig.muon_beta2)
        by_shape: dict[tuple[Any, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.lerp_(g, 1 - m)
            u = g.lerp(buf, m)
            flat = u.reshape(u.size(0), -1)
            by_shape.setdefault((tuple(flat.shape), p.device), []).append((p, flat))
        for (_, device), items in by_shape.items():
            stacked = torch.stack([flat for _, flat in items]) if len(items) > 1 else items[0][1]
            ortho = newton_schulz(stacked, dtype=self._ns_dtype(device), method=method)
            for i, (p, _) in enumerate(items):
                flat = ortho[i] if len(items) > 1 else ortho
                if beta2:
                    state = self.state[p]
                    if "second_moment" not in state:
                        rows, cols = flat.shape
                        state["second_moment"] = torch.zeros((rows, 1) if rows >= cols else (1, cols), device=p.device)
                    flat = normalize_rows(flat, state["second_moment"], beta2)
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(flat.view_as(p).to(p.dtype), alpha=-lr * math.sqrt(max(1.0, p.size(0) / p[0].numel())))

    def _adamw(self, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
        if _fused_adamw_fits(params):
            # torch's fused kernel: one pass over each tensor instead of ~6 (the embeddings and value tables
            # are most of a small GPT's parameters); the same update as the loop below
            states = [self.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(
                params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                [], steps, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd, eps=eps, amsgrad=False, maximize=False,
            )
            return
        for p in params:
            state = self.state[p]
            state["step"] += 1
            t = float(state["step"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            if wd:
                p.mul_(1 - lr * wd)
            denom = (exp_avg_sq / (1 - beta2**t)).sqrt_().add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**t))


def _fused_adamw_fits(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW kernel takes these parameters: all on the CPU (where this optimizer keeps the step
    counters, which the kernel wants on the parameters' device), one float dtype, dense gradients."""
    if not params or not hasattr(torch, "_fused_adamw_"):
        return False
    dtype = params[0].dtype
    return dtype in (torch.float32, torch.float16, torch.bfloat16) and all(
        p.device.type == "cpu" and p.dtype == dtype and p.grad.dtype == dtype and not p.grad.is_sparse for p in params
    )
