"""Generation speed: KV-cache decoding vs the naive loop (append a token, rerun the whole sequence).

Model: the bench_train GPT (n_layer 4, n_head 4, n_embd 256, vocab 8192,
random weights) with block_size 512 so that a 1-token prompt + 256 new
tokens fits without cropping; greedy decoding, so every loop must produce the
same 256 tokens (checked). Each figure is the median of ``--repeats`` runs,
the loops interleaved run by run (this machine is shared and noisy).

Three loops:

- KV cache: ``generate_ids(use_cache=True)``, one token per forward;
- naive (tutorial): rerun the whole sequence and compute logits at every
  position, keep the last (the classic ``logits = model(idx)[:, -1]`` loop);
- naive, last position only: our slow reference ``generate_ids(use_cache=False)``,
  which reruns the sequence but applies the 8192-wide head to the last position only.

With ``--batch B`` (B > 1) it also times batched generation: B prompts of
different lengths in one left-padded ``model.generate`` call (KV cache) against
the same B prompts one call each; every row must get the tokens it gets alone.

    python benchmarks/bench_generate.py
    python benchmarks/bench_generate.py --batch 8 --new_tokens 128
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


@torch.no_grad()
def tutorial_loop(model: GPT, prompt: list[int], new_tokens: int) -> list[int]:
    idx = torch.tensor([prompt])
    for _ in range(new_tokens):
        logits, _ = model(idx[:, -model.config.block_size :])  # (1, T, V): every position
        nxt = logits[:, -1, : model.config.vocab_size].argmax(-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
    return idx[0, len(prompt) :].tolist()


LOOPS = ("KV cache", "naive (tutorial: logits at every position)", "naive, last-position head (our slow reference)")


def run_once(model: GPT, prompt: list[int], new_tokens: int, loop: str) -> tuple[float, list[int]]:
    t = time.perf_counter()
    if loop == LOOPS[1]:
        out = tutorial_loop(model, prompt, new_tokens)
    else:
        out = list(generate_ids(model, prompt, max_new_tokens=new_tokens, temperature=0,
                                use_cache=loop == LOOPS[0], stop_at_eos=False))
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1, help="also time B prompts batched vs one by one")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).eval()
    prompt = [0]
    for loop in LOOPS:
        run_once(model, prompt, 8, loop)  # warm up
    times: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    outputs: dict[str, list[int]] = {}
    for _ in range(args.repeats):
        for loop in LOOPS:
            dt, outputs[loop] = run_once(model, prompt, args.new_tokens, loop)
            times[loop].append(dt)
    same = all(outputs[loop] == outputs[LOOPS[0]] for loop in LOOPS)
    print(f"torch {torch.__version__} | threads {torch.get_num_threads()} | {CONFIG} | {args.new_tokens} new tokens, "
          f"batch 1, greedy, median of {args.repeats}")
    print()
    print("| loop | median tokens/s | min..max | KV cache speed-up |")
    print("|---|---:|---:|---:|")
    med = {loop: statistics.median(args.new_tokens / t for t in times[loop]) for loop in LOOPS}
    for loop in LOOPS:
        r = [args.new_tokens / t for t in times[loop]]
        print(f"| {loop} | {med[loop]:,.0f} | {min(r):,.0f}..{max(r):,.0f} | {med[LOOPS[0]] / med[loop]:.1f}x |")
    print(f"\nidentical greedy tokens in all loops: {same}")
    if args.batch > 1:
        same = batched(model, args) and same
    return 0 if same else 1


def batched(model: GPT, args: argparse.Namespace) -> bool:
    """B prompts of 1..B*4 tokens: one left-padded batch vs B single calls; True if the tokens agree."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, CONFIG["vocab_size"], (1 + 4 * i,), generator=g).tolist() for i in range(args.batch)]
    T = max(map(len, prompts))
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    times: dict[str, list[float]] = {"one batched call": [], "one call per prompt": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, max_new_tokens=args.new_tokens, do_sample=False)[:, T:].tolist()
        times["one batched call"].append(time.perf_counter() - t)
        t = time.perf_counter()
        alone = [model.generate([p], max_new_tokens=args.new_tokens, do_sample=False)[0, len(p):].tolist() for p in prompts]
        times["one call per prompt"].append(time.perf_counter() - t)
    total = args.batch * args.new_tokens
    print(f"\n{args.batch} prompts of 1..{T} tokens, {args.new_tokens} new tokens each, greedy, KV cache, median of {args.repeats}")
    print()
    print("| generation | median tokens/s | min..max |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        r = [total / t for t in ts]
        print(f"| {name} | {statistics.median(r):,.0f} | {min(r):,.0f}..{max(r):,.0f} |")
    same = out == alone
    print(f"\nevery row equals its prompt alone: {same}")
    return same


if __name__ == "__main__":
    sys.exit(main())
