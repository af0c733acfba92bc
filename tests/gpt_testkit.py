"""Helpers shared by the GPT tests of several folders (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import torch
import torch._dynamo

from microtransformer.models import GPT


def eager_and_compiled_grads(m: GPT, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """``(eager loss, compiled loss, eager grads, compiled grads)`` of one training forward and backward, the second
    with :meth:`GPT.compile_blocks` and a real ``torch.compile``; asserts that dynamo did compile a graph."""
    eager = m(x, y, loss_only=True).loss
    eager.backward()
    eager_grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    torch._dynamo.reset()  # tests/conftest.py turns compiling off; frames seen while off stay marked to skip
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(disable=False, suppress_errors=False):
        m.compile_blocks()
        compiled = m(x, y, loss_only=True).loss
        compiled.backward()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it did compile
    return eager, compiled, eager_grads, {n: p.grad.clone() for n, p in m.named_parameters()}
