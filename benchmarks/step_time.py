"""One training step of named recipes, timed side by side: where a speedrun's seconds go.

Each recipe (``microtransformer.training.recipes``, with ``+key=value``
variants as in the speedrun) gets its model and a :class:`Trainer` on random
token ids (the step's cost does not depend on the text); steps run
interleaved, one per recipe per round, and the table gives the median step
time, tokens/s and achieved GFLOP/s (``GPT.flops_per_token``).
``--profile`` adds ``torch.profiler``'s top operators per recipe, by self
CPU time per step, with input shapes.

    python benchmarks/step_time.py --recipes ours,nanochat
    python benchmarks/step_time.py --recipes ours --profile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.models import GPT, GPTConfig
from microtransformer.models.line_columns import TokenLayout
from microtransformer.training.recipes import get_recipe
from microtransformer.training.trainer import TrainConfig, Trainer


def build(spec: str, work: Path, seed: int) -> tuple[Trainer, GPT]:
    recipe = get_recipe(spec)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=recipe.vocab_size, **recipe.model))
    if model.config.line_columns:  # no tokenizer here: 4-byte tokens, every 16th a newline (the cost is the same)
        model.set_token_layout(TokenLayout.from_token_bytes([b"\n" if i % 16 == 0 else b"abcd" for i in range(recipe.vocab_size)]))
    ids = np.random.default_rng(seed).integers(0, recipe.vocab_size, 500_000).astype(np.int32)
    data = TokenArrayDataset({"train": ids, "val": ids[:50_000]}, model.config.block_size, vocab_size=recipe.vocab_size)
    config = TrainConfig(**dict(recipe.train, max_steps=10**6, eval_interval=10**9, eval_iters=1, seed=seed))
    return Trainer(model, data, config, work / spec.replace("/", "_"), tokenizer=None, show_progress=False), model


def profile_table(trainer: Trainer, steps: int, rows: int) -> str:
    from torch.profiler import profile

    with profile(record_shapes=True) as prof:
        for _ in range(steps):
            trainer.train_step()
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    lines = [f"{'ms/step':>8} {'calls':>6}  operator  input shapes"]
    for e in events[:rows]:
        lines.append(f"{e.self_cpu_time_total / steps / 1000:8.1f} {e.count // steps:6d}  {e.key[:48]}  {str(e.input_shapes)[:80]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="ours", help="comma list of recipe specs (e.g. ours,ours+mlp=gelu)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per recipe")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="also print the top operators of each recipe's step")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs = args.recipes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        built = [build(spec, Path(tmp), args.seed) for spec in specs]
        for trainer, _ in built:
            for _ in range(args.warmup):
                trainer.train_step()
        times: list[list[float]] = [[] for _ in specs]
        for _ in range(args.steps):
            for i, (trainer, _) in enumerate(built):
                t = time.perf_counter()
                trainer.train_step()
                times[i].append(time.perf_counter() - t)
        print(f"{args.threads} threads, median of {args.steps} interleaved steps after {args.warmup}")
        print("| recipe | precision | tokens/step | ms/step | tokens/s | GFLOP/s |")
        print("|---|---|---:|---:|---:|---:|")
        for spec, (trainer, model), t in zip(specs, built, times):
            step = statistics.median(t)
            tps = trainer.tokens_per_step / step
            precision = getattr(trainer.precision, "precision", trainer.precision)
            print(f"| {spec} | {precision} | {trainer.tokens_per_step:,} | {step * 1000:.0f} | {tps:,.0f} | "
                  f"{tps * model.flops_per_token() / 1e9:.0f} |")
        if args.profile:
            for spec, (trainer, _) in zip(specs, built):
                print(f"\n{spec}:\n{profile_table(trainer, 3, 25)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
