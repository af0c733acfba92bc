"""Collision table and separation loss (autoencoder/separation.py), alone and inside pre-training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from microtransformer.errors import ConfigError
from microtransformer.autoencoder.fsq import FSQ
from microtransformer.autoencoder.pretrain import PretrainConfig, pretrain_autoencoder
from microtransformer.autoencoder.separation import CollisionTable, separation_loss

from test_pretrain import DOCS, TINY, small_config


def test_partner_is_the_lowest_other_row_at_the_same_code() -> None:
    t = CollisionTable(6)
    assert t.record_and_find_partners([3, 1], [7, 9]) == []
    # row 5 lands on 7 (held by 3); row 4 on 9 (held by 1); row 3 again on 7 is not paired with itself twice
    assert t.record_and_find_partners([5, 4, 3], [7, 9, 7]) == [(0, 3), (1, 1), (2, 5)]
    t.update([0], [7])
    assert t.record_and_find_partners([5], [7]) == [(0, 0)]  # row 0 (most frequent) is now the partner
    t.update([5], [2])  # row 5 moved away: code 7 has rows 0 and 3 left
    assert t.record_and_find_partners([3], [7]) == [(0, 0)]
    assert t.record_and_find_partners([5], [2]) == []
    # the same row twice in one batch is paired at most once
    assert t.record_and_find_partners([0, 0], [7, 7]) == [(0, 3)]


def test_table_state_round_trips() -> None:
    t = CollisionTable(5)
    t.update([0, 1, 2, 4], [10, 10, 11, 10])
    u = CollisionTable(5)
    u.load_state(t.last_code)
    assert torch.equal(u.last_code, t.last_code)
    assert u.record_and_find_partners([3], [11]) == t.record_and_find_partners([3], [11]) == [(0, 2)]
    assert u.record_and_find_partners([4], [10]) == [(0, 0)]
    with pytest.raises(ValueError, match="rows"):
        CollisionTable(4).load_state(t.last_code)


def test_loss_is_zero_once_any_dimension_is_a_grid_step_apart() -> None:
    a = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [0.3, 0.1, -0.2], [0.0, 0.0, 0.0]])
    loss = separation_loss(a, b, margin=1.0)
    assert loss[0] == 0.0
    assert torch.allclose(loss[1], torch.tensor((1.0 - 0.2) ** 2))
    assert loss[2] == 1.0


def test_minimizing_the_loss_moves_two_latents_into_different_cells() -> None:
    fsq = FSQ([8, 5, 5])
    torch.manual_seed(0)
    z = (torch.randn(1, 3) * 0.01).repeat(2, 1) + torch.tensor([[0.0, 0.0, 0.0], [0.01, -0.01, 0.0]])
    z.requires_grad_(True)
    assert fsq(z)[1][0] == fsq(z)[1][1]  # same cell to start with
    opt = torch.optim.SGD([z], lr=0.5)
    for _ in range(50):
        loss = separation_loss(fsq.bound(z[:1]), fsq.bound(z[1:])).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() == 0.0
    assert fsq(z)[1][0] != fsq(z)[1][1]


def test_separation_trains_resumes_exactly_and_is_validated(tmp_path: Path) -> None:
    """The table is checkpointed (augmented samples are skipped), so resume stays bit-identical."""
    torch.set_num_threads(1)
    cfg = small_config(steps=12, checkpoint_every=6, eval_every=6, separation_weight=1.0, augment_share=0.3)
    full = tmp_path / "full"
    result = pretrain_autoencoder(DOCS, model_config=TINY, config=cfg, checkpoint_dir=full, progress=False)
    assert any(r.collision_pairs > 0 for r in result.history.train)  # an untrained encoder collides a lot
    table = load_file(str(full / "checkpoints" / "step_000006" / "trainer_state.safetensors"))["separation.last_code"]
    assert (table >= 0).any()
    resumed = tmp_path / "resumed"
    pretrain_autoencoder(DOCS, config=cfg, resume=full / "checkpoint_step_6", checkpoint_dir=resumed, progress=False)
    a = load_file(str(full / "checkpoints" / "step_000012" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_000012" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    off = pretrain_autoencoder(DOCS, model_config=TINY, config=dataclasses.replace(cfg, separation_weight=0.0),
                               checkpoint_dir=None, progress=False)
    assert all(r.collision_pairs == 0 for r in off.history.train)
    c = off.model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the loss did change the encoder
    with pytest.raises(ConfigError, match="separation_weight"):
        PretrainConfig(separation_weight=-1.0)
    with pytest.raises(ConfigError, match="separation_margin"):
        PretrainConfig(separation_margin=0.0)
