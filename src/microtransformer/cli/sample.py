"""``mtx sample``: generate text from a run directory.

``mtx sample --ckpt runs/quickstart/run --prompt "ROMEO:" --temperature 0.8 --top_k 80 --stream``
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from microtransformer.cli.args import nonneg_float, nonneg_int, positive_int, probability, utf8_text
from microtransformer.device import choose_device, set_num_threads


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sample", help="generate text from a trained run")
    p.add_argument("--ckpt", required=True, help="the run directory `mtx train` wrote (holds run.json), or one of its checkpoints/step_N")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or step_N (step_300 = step_000300)")
    p.add_argument("--prompt", type=utf8_text, default="", help="text to continue (default: start a new document)")
    p.add_argument("--max_new_tokens", type=positive_int, default=300)
    p.add_argument("--temperature", type=nonneg_float, default=0.8, help="0 = greedy")
    p.add_argument("--top_k", type=nonneg_int, default=None, help="keep the k most likely tokens (clamped to the vocab; 0 = no top-k)")
    p.add_argument("--top_p", type=probability, default=None, help="nucleus sampling mass, e.g. 0.95")
    p.add_argument("--seed", type=nonneg_int, default=None, help="make sampling repeatable")
    p.add_argument("--num_samples", type=positive_int, default=1)
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    p.add_argument("--no_cache", action="store_true", help="recompute the full context each token (slow reference)")
    p.add_argument("--tokenizer_path", default=None, help="override the run's own tokenizer/ copy")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num_threads", type=positive_int, default=None, help="torch CPU threads (default: MTX_NUM_THREADS, else torch's choice)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from microtransformer.sampling import SamplingConfig, generate, stream
    from microtransformer.training.checkpoint import load_run

    set_num_threads(args.num_threads)  # 1 thread helps when a neighbour holds a core (docs/benchmarks.md)
    device, _ = choose_device(args.device)
    model, tok, info = load_run(args.ckpt, args.checkpoint, tokenizer_path=args.tokenizer_path, device=device)
    print(f"# {info.path} (step {info.step}, {info.meta['model']['kind']}), {tok!r}", file=sys.stderr)
    for i in range(args.num_samples):
        cfg = SamplingConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k or None,  # 0 disables top-k, as in the tutorials
            top_p=args.top_p,
            seed=None if args.seed is None else args.seed + i,
            use_cache=not args.no_cache,
        )
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        if args.stream:
            sys.stdout.write(args.prompt)
            sys.stdout.flush()
            for piece in stream(model, tok, args.prompt, cfg):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        else:
            print(args.prompt + generate(model, tok, args.prompt, cfg))
    return 0
