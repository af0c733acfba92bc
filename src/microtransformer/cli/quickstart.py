"""``mtx quickstart``: text in, a trained model out, text generated, in minutes on a CPU.

Steps: the built-in corpus (Python's own help topics, no download) -> a
``bpe`` tokenizer -> token shards -> a small GPT -> val loss, perplexity and
bits per byte before and after training -> samples. Every output lands under
``--out_dir`` and the last lines say how to continue.

The defaults are sized for 2 CPU cores: a ~1M-parameter GPT (4 layers, 128
wide, 128 tokens of context) trained for 400 steps of 8 x 128 tokens (~3.5
passes over the ~115k training tokens), about 2 minutes at ~3,000 tokens/s
(bf16 autocast on an avx512_bf16 CPU). A wall-clock cap (``--max_minutes``,
default 3) stops training and saves if a busy machine is slower, so the whole
command stays under 5 minutes; the steps, not the clock, set the schedule, so
results are the same on every machine that finishes.
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
from microtransformer.tokenization import MicroTransformerTokenizer

PROMPTS = ("The ", "The for statement", "def ")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("quickstart", help="train a tokenizer and a small GPT on the built-in corpus, then sample")
    p.add_argument("--out_dir", default="runs/quickstart", help="tokenizer/, shards/ and run/ go here")
    p.add_argument("--vocab_size", type=positive_int, default=2048)
    p.add_argument("--max_steps", type=positive_int, default=400)
    p.add_argument("--max_minutes", type=positive_float, default=3.0, help="training stops (and saves) after this long, whatever the step")
    p.add_argument("--batch_size", type=positive_int, default=8)
    p.add_argument("--block_size", type=positive_int, default=128)
    p.add_argument("--n_layer", type=positive_int, default=4)
    p.add_argument("--n_head", type=positive_int, default=4)
    p.add_argument("--n_embd", "--n_embed", dest="n_embd", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=2e-3)
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
    config = GPTConfig(
        vocab_size=tok.vocab_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
        block_size=args.block_size, dropout=0.0,
    )
    import torch

    torch.manual_seed(args.seed)
    model = GPT(config)
    budget = args.max_minutes * 60
    n_evals, eval_iters = 6, 10
    max_steps = args.max_steps
    train_config = TrainConfig(
        max_steps=max_steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=max(1, max_steps // 20),
        use_cosine=True, eval_interval=max(1, max_steps // n_evals), eval_iters=eval_iters, keep_last=2, seed=args.seed,
        device=args.device, precision=args.precision,
    )
    trainer = Trainer(
        model, data, train_config, out / "run", tokenizer=tok,
        run_info={"data": {"shards_dir": str((out / "shards").resolve())}},
    )
    print(f"[3/5] GPT with {model.num_params():,} parameters on {trainer.device}; "
          f"precision {trainer.precision.precision}: {trainer.precision.reason}")
    before = trainer.evaluate("val")
    print(f"      before training: val {before}")

    print(f"[4/5] training {max_steps} steps of {args.batch_size}x{args.block_size} tokens "
          f"(stops early at {args.max_minutes:g} min)")
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
    print(f"  mtx train --resume {run_dir} --max_steps {max(result.step * 2, max_steps)}")
    print("  mtx train --data_file your.txt --vocab_size 4096 --out_dir runs/mine --max_steps 2000 --use_cosine")
    return 130 if result.interrupted else 0
