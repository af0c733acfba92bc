"""Recipes, Muon + WSD through the trainer (exact resume), the time budget, and the speedrun's --quick run."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig
from microtransformer.models.window_cache import LAMBDAS
from microtransformer.training import checkpoint as ckpt
from microtransformer.training.recipes import BUDGET_SIZES, RECIPES, _split_shape, get_recipe, size_for_budget
from microtransformer.training.schedule import LRSchedule, cosine_lr_factor, wsd_lr_factor
from microtransformer.training.trainer import TrainConfig, Trainer

from lm_testkit import VOCAB, assert_split_run_equals_full, make_config, make_data, make_model

ROOT = Path(__file__).resolve().parents[2]


def modern_model(block_size: int = 16) -> GPT:
    torch.manual_seed(0)
    shape = dict(n_layer=2, n_head=2, n_embd=32, block_size=block_size)
    return GPT(GPTConfig(vocab_size=VOCAB, **{**RECIPES["nanochat"].model, **shape}))  # every option on


def modern_config(recipe: str = "ours", **kw) -> TrainConfig:
    """``recipe``'s optimiser settings on the test data's scale (fp32, no compile, the test batch)."""
    train = {k: v for k, v in RECIPES[recipe].train.items() if k not in ("precision", "compile", "batch_size")}
    return make_config(**{**train, **kw})


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_muon_wsd_modern_gpt_resumes_exactly(tmp_path, precision) -> None:
    data = make_data()
    cfg = modern_config(max_steps=8, eval_interval=3, precision=precision)
    full = Trainer(modern_model(), data, cfg, tmp_path / "full", show_progress=False).fit()
    first = Trainer(modern_model(), data, cfg, tmp_path / "split", show_progress=False).fit(stop_at_step=4)
    second = Trainer.resume(tmp_path / "split", data, show_progress=False).fit()
    assert_split_run_equals_full(full, first, second, tmp_path / "full", tmp_path / "split")
    assert full.history[-1].loss < full.history[0].loss
    a, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(tmp_path / "full", "last"))
    assert a.config.position == "rotary" and not a.config.tie_embeddings  # the options travel in the checkpoint
    lrs = [s.lr for s in full.history]
    assert lrs[0] == lrs[4] == pytest.approx(RECIPES["ours"].train.get("matrix_lr", TrainConfig.matrix_lr))
    assert lrs[-1] < lrs[4]  # the warmdown


def test_wsd_schedule_holds_then_decays_linearly() -> None:
    s = LRSchedule(lr=1.0, warmup_steps=2, total_steps=10, kind="wsd", warmdown_ratio=0.5, min_ratio=0.1)
    assert [round(s.lr_at(t), 3) for t in range(11)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.82, 0.64, 0.46, 0.28, 0.1]
    assert wsd_lr_factor(50, warmup_steps=0, total_steps=10, warmdown_ratio=0.5, min_ratio=0.1) == 0.1
    with pytest.raises(ConfigError, match="lr_schedule must be one of cosine, wsd"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match="optimizer must be one of adamw, muon"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="sampling must be one of random, epoch"):
        TrainConfig(sampling="shuffle")


def test_sqrt_warmdown_is_one_minus_sqrt_of_the_elapsed_decay_and_replans_without_a_jump(tmp_path) -> None:
    s = LRSchedule(lr=1.0, warmup_steps=0, total_steps=10, kind="wsd", warmdown_ratio=0.4, warmdown_shape="sqrt",
                     min_ratio=0.0)
    assert [round(s.lr_at(t), 4) for t in range(5, 11)] == [1.0, 1.0, 0.5, 0.2929, 0.134, 0.0]
    linear = LRSchedule(lr=1.0, warmup_steps=0, total_steps=10, kind="wsd", warmdown_ratio=0.4, min_ratio=0.0)
    assert all(s.lr_at(t) <= linear.lr_at(t) for t in range(11))  # below linear, meets it at both ends
    with pytest.raises(ConfigError, match="warmdown_shape must be one of linear, sqrt"):
        TrainConfig(lr_schedule="wsd", warmdown_shape="cosine")
    cfg = make_config(time_budget=100.0, lr_schedule="wsd", warmup_steps=0, warmdown_ratio=0.4, min_lr_ratio=0.0,
                      warmdown_shape="sqrt")
    trainer = Trainer(modern_model(), make_data(), cfg, tmp_path / "run", show_progress=False)
    trainer.plan_budget([1.0], 0.0)
    trainer.step = 80
    before = trainer.schedule.factor(80)
    trainer.plan_budget([0.25], 80.0)  # 80 more steps fit: the decay stretches, the LR at step 80 stays
    assert trainer.config.max_steps == 160 and trainer.schedule.factor(80) == pytest.approx(before)
    assert trainer.schedule.factor(160) == 0.0


def test_a_time_budget_sets_max_steps_and_records_it(tmp_path) -> None:
    data = make_data()
    cfg = make_config(max_steps=3, time_budget=1.5, eval_interval=10_000, grad_accum_steps=1)
    trainer = Trainer(modern_model(), data, cfg, tmp_path / "run", show_progress=False)
    result = trainer.fit()
    saved = json.loads((tmp_path / "run" / "run.json").read_text())["train_config"]
    assert result.step == trainer.config.max_steps == saved["max_steps"] > 9  # not the 3 asked for: the budget decides
    resumed = Trainer.resume(tmp_path / "run", data, overrides={"max_steps": result.step + 2}, show_progress=False)
    assert resumed.config.max_steps == result.step + 2  # a resumed run keeps its planned schedule, no re-timing


def test_max_epochs_caps_a_given_and_a_planned_step_count(tmp_path) -> None:
    data = make_data()  # 3,500 training tokens; 4 windows of 16 tokens a step: 64 tokens
    cfg = make_config(max_steps=1000, max_epochs=2.0, grad_accum_steps=1, eval_interval=10_000)
    trainer = Trainer(modern_model(), data, cfg, tmp_path / "given", show_progress=False)
    assert trainer.config.max_steps == trainer.epoch_cap() == 2 * 3500 // 64
    budgeted = Trainer(modern_model(), data, dataclasses.replace(cfg, time_budget=100.0), tmp_path / "planned",
                       show_progress=False)
    assert budgeted.plan_budget([0.01], 0.0) == 109  # 10,000 steps would fit the budget: the cap stops at 2 epochs
    uncapped = Trainer(modern_model(), data, dataclasses.replace(cfg, max_epochs=0.0), tmp_path / "free", show_progress=False)
    assert uncapped.config.max_steps == 1000

    class Unsized:  # a source that cannot say how many tokens it holds
        block_size, vocab_size = data.block_size, data.vocab_size
        get_batch = data.get_batch

    with pytest.raises(ConfigError, match="max_epochs needs a data source that knows its size"):
        Trainer(modern_model(), Unsized(), cfg, tmp_path / "unsized", show_progress=False)
    with pytest.raises(ConfigError, match="max_epochs must be a number >= 0"):
        TrainConfig(max_epochs=-1)


def test_after_step_plans_a_budget_then_replans_from_the_steps_since(tmp_path) -> None:
    cfg = make_config(max_steps=3, time_budget=10.0, eval_interval=10_000, grad_accum_steps=1)
    trainer = Trainer(modern_model(), make_data(), cfg, tmp_path / "run", show_progress=False)
    assert trainer.budget_pending
    assert [trainer.after_step(0.5) for _ in range(9)] == [False] * 8 + [True]  # > 8 steps and >= 2 % of the budget
    assert not trainer.budget_pending
    assert trainer.config.max_steps == 11  # (10 - 4.5) s left at 0.5 s a step (the first step's time left out)
    trainer.step = 1  # the re-plan due at 50 % of the budget (step 1), from the steps since the plan
    assert trainer.after_step(0.25)
    assert trainer.config.max_steps == 1 + 21  # (10 - 4.75) s left at 0.25 s a step
    assert not trainer.after_step(0.25)  # the next re-plan is due at 75 % of the budget


def test_a_time_budget_keeps_time_for_the_window_cache_calibration(tmp_path) -> None:
    """The calibration after the last step is part of training: the planned steps leave it its share of a step
    per validation token, so the run with it ends inside the budget."""
    from microtransformer.training.trainer import CALIBRATION_STEP_SHARE

    data = make_data()
    planned = {}
    for cache in (False, True):
        cfg = make_config(max_steps=3, time_budget=10.0, grad_accum_steps=1, window_cache=cache)
        trainer = Trainer(modern_model(), data, cfg, tmp_path / str(cache), show_progress=False)
        planned[cache] = trainer.plan_budget([0.1], 0.0)
    reserve = CALIBRATION_STEP_SHARE * 0.1 * data.num_tokens("val") / (4 * 16)  # 4 windows of 16 tokens a step
    assert reserve > 0.2 and planned[False] == 100
    assert planned[True] == int((10.0 - reserve) / 0.1)


def test_under_ddp_a_rank_plans_when_any_rank_has_timed_enough(tmp_path, monkeypatch) -> None:
    import microtransformer.training.trainer as trainer_module
    from microtransformer.training.distributed import DistEnv

    cfg = make_config(max_steps=3, time_budget=100.0, eval_interval=10_000, grad_accum_steps=1)
    trainer = Trainer(modern_model(), make_data(), cfg, tmp_path / "run", show_progress=False)
    trainer.env = DistEnv(rank=1, world_size=2)
    calls: list[list[float]] = []

    def fake_all_reduce_sum(values, device):  # rank 0 (not simulated) has timed enough; times add up over 2 ranks
        calls.append(list(values))
        return [1.0] if len(values) == 1 else [2 * v for v in values]

    monkeypatch.setattr(trainer_module, "all_reduce_sum", fake_all_reduce_sum)
    done = [trainer.after_step(0.1) for _ in range(9)]  # 0.9 s: this rank alone would wait for 2 % of 100 s
    assert done == [True] + [False] * 8 and calls[0] == [0.0] and not trainer.budget_pending  # rank 0 was ready


def test_a_cosine_replanned_late_keeps_its_lr_and_reaches_its_floor_at_the_new_end(tmp_path) -> None:
    """nanoGPT's cosine under a time budget is re-planned to the run's end: the LR bends, it does not jump."""
    cfg = make_config(time_budget=100.0, lr_schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    trainer = Trainer(make_model(), make_data(), cfg, tmp_path / "run", show_progress=False)
    trainer.plan_budget([1.0], 0.0)
    assert trainer.config.max_steps == 100
    trainer.step = 70  # two thirds of the way along the cosine
    before = trainer.schedule.factor(70)
    assert before == pytest.approx(cosine_lr_factor(70, warmup_steps=10, total_steps=100))
    trainer.plan_budget([0.5], 70.0)  # steps got 2x faster: 60 more fit
    assert trainer.config.max_steps == 130 and trainer.can_replan()
    assert trainer.schedule.factor(70) == pytest.approx(before)  # no jump in the LR
    assert trainer.schedule.factor(130) == pytest.approx(0.1) and trainer.schedule.factor(129) > 0.1
    # the rest of the cosine from where it was (progress 2/3) is stretched over the 60 new steps
    assert trainer.schedule.factor(100) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * (2 / 3 + 1 / 6))))
    trainer.step = 100
    trainer.plan_budget([1.0], 90.0)  # slower again: 10 s left, 10 steps; a second anchor from the first's curve
    assert trainer.config.max_steps == 110
    assert trainer.schedule.factor(100) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * (2 / 3 + 1 / 6))))
    assert trainer.schedule.factor(110) == pytest.approx(0.1)
    resumed = TrainConfig.from_dict(trainer.config.to_dict())  # what run.json keeps: the same schedule on resume
    assert [resumed.schedule().factor(t) for t in range(100, 112)] == [trainer.schedule.factor(t) for t in range(100, 112)]
    early = Trainer(make_model(), make_data(), cfg, tmp_path / "early", show_progress=False)
    early.plan_budget([1.0], 0.0)
    early.step = 5  # inside the warmup a re-plan only changes the length
    early.plan_budget([0.5], 5.0)
    assert early.config.max_steps == 195 and early.config.cosine_from_step == 0


def test_a_replan_inside_the_warmdown_keeps_the_lr_and_decays_to_zero_at_the_new_end(tmp_path) -> None:
    cfg = make_config(time_budget=100.0, lr_schedule="wsd", warmup_steps=0, warmdown_ratio=0.4, min_lr_ratio=0.0)
    trainer = Trainer(modern_model(), make_data(), cfg, tmp_path / "run", show_progress=False)
    trainer.plan_budget([1.0], 0.0)
    assert trainer.config.max_steps == 100  # warmdown from step 60
    trainer.step = 80
    before = trainer.schedule.factor(80)
    assert before == pytest.approx(0.5)
    trainer.plan_budget([0.25], 80.0)  # steps got 4x faster: 80 more steps fit
    assert trainer.config.max_steps == 160 and trainer.can_replan()
    assert trainer.schedule.factor(80) == pytest.approx(before)  # no jump in the LR
    assert trainer.schedule.factor(120) == pytest.approx(0.25) and trainer.schedule.factor(160) == 0.0
    stable = Trainer(modern_model(), make_data(), cfg, tmp_path / "stable", show_progress=False)
    stable.plan_budget([1.0], 0.0)
    stable.step = 50  # in the stable phase a re-plan leaves the warmdown's share as it was
    stable.plan_budget([0.5], 50.0)
    assert stable.config.max_steps == 150 and stable.config.warmdown_ratio == 0.4 and stable.schedule.factor(50) == 1.0


def test_recipes_build_and_variants_parse() -> None:
    for name, recipe in RECIPES.items():
        GPTConfig(vocab_size=recipe.vocab_size, **recipe.model)
        TrainConfig(**recipe.train)
    # nanochat streams its data (each token once an epoch), nanoGPT draws random windows
    assert [TrainConfig(**RECIPES[n].train).sampling for n in ("nanogpt", "nanochat", "ours")] == ["random", "epoch", "epoch"]
    r = get_recipe("ours+mlp=gelu+matrix_lr=0.03+vocab_size=2048+precision=fp32")
    assert (r.model["mlp"], r.train["matrix_lr"], r.vocab_size, r.train["precision"]) == ("gelu", 0.03, 2048, "fp32")
    with pytest.raises(ConfigError, match="neither a GPTConfig nor a TrainConfig field"):
        get_recipe("ours+colour=blue")
    assert get_recipe("nanogpt+space_after_newline=true").space_after_newline is True  # the tokenizer's option
    with pytest.raises(ConfigError, match="space_after_newline must be true or false"):
        get_recipe("ours+space_after_newline=1")
    with pytest.raises(ConfigError, match="unknown recipe"):
        get_recipe("gpt5")
    # made-up names and re-set typography measured on 4 layers only; the window cache and line columns on every shape
    short = dict(block_size=256, batch_size=32, compile=False, new_names=0.0, typography=0.0, window_cache=True,
                 line_columns=128)
    rows = dict(block_size=512, batch_size=16, compile=True, new_names=0.75, typography=1.0, window_cache=True,
                line_columns=128)
    assert size_for_budget(30) == size_for_budget(240) == dict(n_layer=2, n_head=1, n_embd=128, value_embed_every=2, **short)
    assert size_for_budget(241) == size_for_budget(400) == dict(n_layer=2, n_head=2, n_embd=192, value_embed_every=2, **short)
    assert size_for_budget(401) == size_for_budget(3600) == dict(n_layer=4, n_head=2, n_embd=192, value_embed_every=1, **rows)
    # in fp32 (a CPU without bf16 units) every budget takes a narrower model, of the same depth and context
    assert size_for_budget(180, precision="fp32") == {**size_for_budget(180), "n_embd": 96, "head_split": 1024}
    assert all(size_for_budget(s, precision="fp32") == {**size_for_budget(s), "n_embd": 128} for s in (241, 400))
    assert size_for_budget(600, precision="fp32") == {**size_for_budget(600), "n_embd": 128, "head_split": 1024,
                                                     "head_bias": True}
    assert get_recipe("ours", budget=60, precision="fp32").model["n_embd"] == 96
    # every shape keeps 8,192-token batches; ours is the long-budget shape, and auto splits it into model/train fields
    assert {s["block_size"] * s["batch_size"] for s in map(size_for_budget, (60, 300, 600))} == {8192}
    ours = RECIPES["ours"]
    assert {**ours.model, **ours.train}.items() >= size_for_budget(600).items()
    auto = ours.with_overrides(size_for_budget(60))
    assert (auto.model["block_size"], auto.train["batch_size"], auto.model["n_embd"]) == (256, 32, 128)
    assert auto.train["compile"] is False  # a compile's warm-up does not pay in a short budget
    with pytest.raises(ConfigError):
        size_for_budget(0)
    # a budget sizes ours (as --model_size auto does) under the variant's overrides; the peers keep their shapes
    sized = get_recipe("ours+n_embd=256", budget=60)
    assert {**sized.model, **sized.train}.items() >= {**size_for_budget(60), "n_embd": 256}.items()
    assert get_recipe("nanochat", budget=60) == get_recipe("nanochat") and get_recipe("ours", budget=600) == ours


def test_ours_decays_its_token_and_value_tables_where_nanochat_does_not(tmp_path) -> None:
    """The default recipe's optimiser decays the token and value tables (0.02) and never the head."""
    data = make_data()
    for name, decay in (("ours", 0.02), ("nanochat", 0.0)):
        trainer = Trainer(modern_model(), data, modern_config(name), tmp_path / name, show_progress=False)
        m = trainer.raw_model
        by_param = {id(p): g for g in trainer.optimizer.param_groups for p in g["params"]}
        tables = [m.transformer.wte.weight, *(t.weight for t in m.transformer.ve.values())]
        assert len(tables) > 1 and [by_param[id(p)]["weight_decay"] for p in tables] == [decay] * len(tables)
        assert by_param[id(m.lm_head.weight)]["weight_decay"] == 0.0


def test_budget_shapes_split_by_the_config_dataclasses():
    """The hand-named train keys of a budget shape (kept so the recipes import no torch) match the dataclasses'."""
    model_fields = {f.name for f in dataclasses.fields(GPTConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for _, shape in BUDGET_SIZES:
        model, train = _split_shape(shape)
        assert set(model) <= model_fields and set(train) <= train_fields, shape


def test_the_fp32_shapes_split_the_output_layer_unless_the_vocabulary_is_too_small() -> None:
    import argparse

    from microtransformer.cli.train import build_model_config

    assert size_for_budget(600, precision="fp32")["head_split"] == 1024
    assert size_for_budget(60, precision="fp32")["head_split"] == 1024
    assert "head_split" not in size_for_budget(600) and "head_split" not in size_for_budget(300, precision="fp32")
    recipe = RECIPES["ours"].with_overrides(size_for_budget(600, precision="fp32"))
    args = argparse.Namespace(model="gpt", head_split=None)
    assert build_model_config(args, 4096, recipe).head_split == 1024
    assert build_model_config(args, 512, recipe).head_split == 0  # nothing to split: one softmax
    with pytest.raises(ConfigError, match="head_split must be 0"):  # asked for on the command line: an error
        build_model_config(argparse.Namespace(model="gpt", head_split=1024), 512, recipe)


def test_speedrun_quick_runs_end_to_end(tmp_path) -> None:
    from pydoc_data.topics import topics

    data = tmp_path / "books"
    data.mkdir()
    texts = list(topics.values())
    (data / "a.txt").write_text("".join(texts[:35]), encoding="utf-8")
    (data / "b.txt").write_text("".join(texts[35:70]), encoding="utf-8")
    (data / "pride_and_prejudice.txt").write_text("".join(texts[70:]), encoding="utf-8")
    out = tmp_path / "out"
    small = "+n_layer=1+n_embd=32+n_head=2+block_size=32+batch_size=4+vocab_size=300+compile=false"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "speedrun.py"), "--quick", "--budget", "2", "--points", "2",
           "--threads", "1", "--recipes", f"nanogpt{small}+compile=true,ours{small}+compile=true+window_cache=true",
           "--data_dir", str(data),
           "--cache_dir", str(tmp_path / "cache"), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| recipe | vocab | params | steps | tokens/s | MFU" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    held_out = len((data / "pride_and_prejudice.txt").read_text(encoding="utf-8").encode("utf-8"))
    assert [r["recipe"] for r in result["rows"]] == [f"nanogpt{small}+compile=true", f"ours{small}+compile=true+window_cache=true"]
    # compiled recipes (compiling is off in tests; the charge goes by the flag): the first one steps first and pays
    # what it took; the second at least as much
    first, second = result["rows"]
    assert first["first_step_seconds"] == first["first_step_measured_seconds"]
    assert second["first_step_seconds"] == max(second["first_step_measured_seconds"], first["first_step_measured_seconds"])
    for row in result["rows"]:
        assert row["steps"] > 0 and 0 < row["bpb"] < 20 and 0 < row["seen_bpb"] < 20 and row["train_seconds"] > 0
        assert row["curve"] and row["curve"][-1]["bpb"] == row["bpb"]
        assert row["held_out_bytes"] == held_out  # the whole held-out book is scored
    # ours' tokenizer adds a space after each line break: its text bytes still matched the book's (the speedrun
    # asserts it at every evaluation)
    assert [row["space_after_newline"] for row in result["rows"]] == [False, True]
    # a peak only for the dtypes the recipes trained in (a bf16 probe on a CPU without bf16 units takes minutes)
    assert set(result["peak_flops"]) == {row["precision"] for row in result["rows"]}
    assert result["rows"][1]["model"]["position"] == "rotary" and result["rows"][0]["model"]["position"] == "learned"
    # ours took the shape of a 2 s budget (no made-up names), then the variant's overrides
    assert result["rows"][1]["train"]["new_names"] == size_for_budget(2)["new_names"] == 0.0
    ours = result["rows"][1]  # its window cache was set on the validation slice of the training books
    assert ours["train"]["window_cache"] and ours["model"]["cache_lambda"] in (0.0, *LAMBDAS)
    assert (out / "bpb.png").stat().st_size > 1000


def test_step_time_benchmark_times_and_profiles_recipes() -> None:
    tiny = "+n_layer=1+n_embd=32+n_head=2+block_size=32+batch_size=2+vocab_size=300"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "step_time.py"), "--recipes", f"ours{tiny}",
           "--steps", "2", "--warmup", "1", "--threads", "1", "--profile"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ours")]
    assert len(rows) == 1 and float(rows[0].split("|")[4]) > 0  # ms/step
    assert "aten::mm" in proc.stdout  # the profile names the operators
