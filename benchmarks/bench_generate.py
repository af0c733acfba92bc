"""Generation speed: KV-cache decoding vs the naive loop (append a token, rerun the whole sequence).

Model: the bench_train GPT (n_layer 4, n_head 4, n_embd 256, vocab 8192,
random weights) with block_size 512 so that a 1-token prompt + 256 new
tokens fits without cropping; greedy decoding, so both loops must produce the
same 256 tokens (checked). Each figure is the median of ``--repeats`` runs.

    python benchmarks/bench_generate.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from microtransformer.models import GPT, GPTConfig
from microtransformer.sampling import generate_ids

CONFIG = dict(n_layer=4, n_head=4, n_embd=256, block_size=512, vocab_size=8192, dropout=0.0)


def run_once(model: GPT, prompt: list[int], new_tokens: int, use_cache: bool) -> tuple[float, list[int]]:
    t = time.perf_counter()
    out = list(generate_ids(model, prompt, max_new_tokens=new_tokens, temperature=0, use_cache=use_cache, stop_at_eos=False))
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).eval()
    prompt = [0]
    run_once(model, prompt, 8, True)  # warm up
    run_once(model, prompt, 8, False)
    results = {}
    outputs = {}
    for use_cache in (True, False):
        times = []
        for _ in range(args.repeats):
            dt, out = run_once(model, prompt, args.new_tokens, use_cache)
            times.append(dt)
            outputs[use_cache] = out
        results[use_cache] = [args.new_tokens / t for t in times]
    same = outputs[True] == outputs[False]
    print(f"torch {torch.__version__} | threads {torch.get_num_threads()} | {CONFIG} | {args.new_tokens} new tokens, "
          f"batch 1, greedy, median of {args.repeats}")
    print()
    print("| loop | median tokens/s | min..max |")
    print("|---|---:|---:|")
    for use_cache, name in ((True, "KV cache"), (False, "naive full recompute")):
        r = results[use_cache]
        print(f"| {name} | {statistics.median(r):,.0f} | {min(r):,.0f}..{max(r):,.0f} |")
    speedup = statistics.median(results[True]) / statistics.median(results[False])
    print(f"\nspeed-up: {speedup:.1f}x | identical greedy tokens: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
