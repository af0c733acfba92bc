"""``mtx quickstart``: text in, a trained model out, text generated, in minutes on a CPU.

Steps: the built-in corpus (Python's own help topics, no download) -> a
``bpe`` tokenizer -> token shards -> a small GPT -> val loss, perplexity and
bits per byte before and after training -> samples. Every output lands under
``--out_dir`` and the last lines say how to continue.

The model and optimiser are the ``ours`` recipe of ``mtx train``
(:mod:`microtransformer.training.recipes`: nanochat's architecture, Muon +
AdamW, warmup-stable-decay), sized for the small built-in corpus, trained
for ``--time_budget`` seconds (default 40): the trainer times its first
steps and fixes the step count, and so the schedule, to fill the budget.
A faster machine trains more steps in the same time. ``--max_steps N``
trains exactly N steps instead (the same result on every machine).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from microtransformer.cli.args import nonneg_int, positive_float, positive_int
from microtransformer.data.corpus import Corpus
from microtransformer.data.prepare import prepare_shards
from microtransformer.device import set_num_threads
from microtransformer.errors import ConfigError
from microtransformer.io import check_output_dir
from microtransformer.malloc import keep_freed_memory
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.training.recipes import DEFAULT_RECIPE, RECIPES

PROMPTS = ("The ", "The for statement", "def ")
QUICKSTART_BUDGET = 40.0
# the ``ours`` recipe's shape for the ~115k-token built-in corpus (larger models overfit it in the budget)
QUICKSTART_SHAPE = dict(n_layer=2, n_head=1, n_embd=128, block_size=128, batch_size=16, value_embed_every=2)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("quickstart", help="train a tokenizer and a small GPT on the built-in corpus, then sample")
    p.add_argument("--out_dir", default="runs/quickstart", help="tokenizer/, shards/ and run/ go here")
    p.add_argument("--vocab_size", type=positive_int, default=2048)
    p.add_argument("--time_budget", type=positive_float, default=QUICKSTART_BUDGET, help="seconds of training (sets the step count)")
    p.add_argument("--max_steps", type=positive_int, default=None, help="train exactly this many steps instead of --time_budget")
    p.add_argument("--max_minutes", type=positive_float, default=5.0, help="a hard stop (with a save), whatever the step")
    p.add_argument("--batch_size", type=positive_int, default=QUICKSTART_SHAPE["batch_size"])
    p.add_argument("--block_size", type=positive_int, default=QUICKSTART_SHAPE["block_size"])
    p.add_argument("--n_layer", type=positive_int, default=QUICKSTART_SHAPE["n_layer"])
    p.add_argument("--n_head", type=positive_int, default=QUICKSTART_SHAPE["n_head"])
    p.add_argument("--n_embd", "--n_embed", dest="n_embd", type=positive_int, default=QUICKSTART_SHAPE["n_embd"])
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--seed", type=nonneg_int, default=1337)
    p.add_argument("--num_threads", type=positive_int, default=None, help="torch CPU threads (default: MTX_NUM_THREADS, else torch's choice)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous quickstart in --out_dir")
    p.set_defaults(func=run)


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    check_output_dir(out, "--out_dir")
    parts = [out / "tokenizer", out / "shards", out / "run"]
    if any(p.exists() for p in parts):
        if not overwrite:
            raise ConfigError(f"{out} already holds a quickstart; pass --overwrite to replace it or choose another --out_dir")
        for p in parts:
            shutil.rmtree(p, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from microtransformer.data.loader import ShardDataset
    from microtransformer.models import GPT, GPTConfig
    from microtransformer.sampling import SamplingConfig, generate
    from microtransformer.training.trainer import TrainConfig, Trainer

    set_num_threads(args.num_threads)  # 1 thread helps when a neighbour holds a core (docs/benchmarks.md)
    keep_freed_memory()  # each step's buffers reused, not faulted in afresh (microtransformer.malloc)
    out = Path(args.out_dir)
    _prepare_out_dir(out, args.overwrite)
    t0 = time.perf_counter()
    corpus = Corpus.builtin()

    print(f"[1/5] training a bpe tokenizer (vocab {args.vocab_size}) on the {corpus.describe()}")
    tok = MicroTransformerTokenizer.train(corpus, engine="bpe", vocab_size=args.vocab_size, show_progress=False)
    tok_dir = tok.save(out / "tokenizer")

    print("[2/5] encoding the corpus into token shards")
    meta = prepare_shards(corpus, tok, out / "shards", tokenizer_path=tok_dir, show_progress=False)
    tr, va = meta.splits["train"], meta.splits["val"]
    print(f"      train {tr.tokens:,} tokens ({tr.bytes / tr.tokens:.2f} bytes/token), val {va.tokens:,} tokens")

    data = ShardDataset(out / "shards", args.block_size)
    recipe = RECIPES[DEFAULT_RECIPE]
    shape = dict(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size,
                 value_embed_every=QUICKSTART_SHAPE["value_embed_every"])
    config = GPTConfig(vocab_size=tok.vocab_size, **{**recipe.model, **shape})
    import torch

    torch.manual_seed(args.seed)
    model = GPT(config)
    budget = args.max_minutes * 60
    steps = dict(max_steps=args.max_steps, time_budget=0.0) if args.max_steps else dict(max_steps=1, time_budget=args.time_budget)
    train_config = TrainConfig(**{
        **recipe.train, **steps, "batch_size": args.batch_size, "eval_interval": 10**9, "eval_iters": 10, "keep_last": 2,
        "seed": args.seed, "device": args.device, "precision": args.precision, "compile": False,
        "new_names": 0.0,  # the built-in corpus's validation text shares its names with the training text
        "typography": 0.0,  # and its typography
        # the default recipe's window cache: its two knobs are set on the validation text the bpb is printed for
        # (the corpus has no other held-out text; two numbers fitted; docs/benchmarks.md has the figures)
        "window_cache": True,
    })
    trainer = Trainer(
        model, data, train_config, out / "run", tokenizer=tok,
        run_info={"data": {"shards_dir": str((out / "shards").resolve())}},
    )
    print(f"[3/5] GPT with {model.num_params():,} parameters on {trainer.device}; "
          f"precision {trainer.precision.precision}: {trainer.precision.reason}")
    before = trainer.evaluate("val")
    print(f"      before training: val {before}")

    length = f"{args.max_steps} steps" if args.max_steps else f"{args.time_budget:g} s"
    print(f"[4/5] training for {length} on batches of {args.batch_size}x{args.block_size} tokens "
          f"(Muon + AdamW, warmup-stable-decay)")
    with logging_redirect_tqdm():
        result = trainer.fit(time_limit_s=budget)
    after = result.evals[-1][1] if result.evals else trainer.evaluate("val")
    if result.time_limited:
        print(f"      stopped by the time cap at step {result.step}")
    losses = [h.loss for h in result.history]
    if losses:
        k = max(1, len(losses) // 10)
        marks = [f"{sum(losses[i:i + k]) / len(losses[i:i + k]):.2f}" for i in range(0, len(losses), k)]
        print(f"      train loss: {' -> '.join(marks)}")
    print(f"      {'':<8}{'val loss':>10}{'perplexity':>12}{'bits/byte':>11}")
    for name, ev in (("before", before), ("after", after)):
        bpb = f"{ev.bits_per_byte:.3f}" if ev.bits_per_byte is not None else "n/a"
        print(f"      {name:<8}{ev.loss:>10.3f}{ev.perplexity:>12.1f}{bpb:>11}")
    print(f"      {result.tokens_per_sec:,.0f} training tokens/s")

    print("[5/5] samples (temperature 0.8, top_k 50):")
    for i, prompt in enumerate(PROMPTS):
        text = generate(model, tok, prompt, SamplingConfig(max_new_tokens=60, temperature=0.8, top_k=50, seed=i))
        print(f"  --- {prompt!r}\n  {(prompt + text).strip()[:400]}")

    minutes = (time.perf_counter() - t0) / 60
    run_dir = out / "run"
    print(f"\ndone in {minutes:.1f} min. Outputs:")
    print(f"  tokenizer    {tok_dir}")
    print(f"  shards       {out / 'shards'} (train_00000.bin, val_00000.bin, meta.json)")
    print(f"  run          {run_dir} (checkpoints/, best.json, last.json, metrics.jsonl, tokenizer/)")
    print("next:")
    print(f"  mtx sample --ckpt {run_dir} --prompt \"The \" --stream")
    print(f"  mtx train --resume {run_dir} --max_steps {result.step * 2}")
    print("  mtx train --data_file your.txt --out_dir runs/mine --time_budget 600 --model_size auto")
    return 130 if result.interrupted else 0
