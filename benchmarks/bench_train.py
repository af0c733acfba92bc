"""Training throughput of our GPT: tokens/s and MFU, fp32 vs bf16 autocast, eager vs torch.compile.

Fixed config from the spec: n_layer 4, n_head 4, n_embd 256, block_size 256,
vocab 8192, batch 16. One timed step = forward + backward + grad clip + AdamW,
exactly what ``Trainer.train_step`` does.

MFU = achieved FLOP/s / peak FLOP/s, with achieved = 6 x params x tokens/s
(params = ``model.num_params()``: position embeddings excluded, the tied
token embedding counted once; the attention term is left out, as in the
spec) and peak = the fp32 matmul rate measured in this same run (median of
square ``torch.mm`` calls), so a busy machine lowers both sides.

Machines shared with other work are noisy: every figure is a median over
steps, and the table says how many.

    python benchmarks/bench_train.py                 # fp32 + bf16, eager + compile
    python benchmarks/bench_train.py --modes fp32 --compile off --steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time

import torch

from microtransformer.device import cpu_bf16_flags
from microtransformer.models import GPT, GPTConfig

CONFIG = dict(n_layer=4, n_head=4, n_embd=256, block_size=256, vocab_size=8192, dropout=0.0, bias=False)
BATCH = 16


def matmul_peak(n: int = 2048, reps: int = 10, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Median FLOP/s of an ``n x n @ n x n`` matmul in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def bench_mode(precision: str, compile_model: bool, steps: int, warmup: int, device: str) -> dict:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).to(device)
    params = model.num_params()
    try:  # what Trainer uses: fused AdamW where available
        opt = torch.optim.AdamW(model.optimizer_groups(0.1), lr=3e-4, betas=(0.9, 0.95), fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(model.optimizer_groups(0.1), lr=3e-4, betas=(0.9, 0.95))
    fwd = model
    compile_note = ""
    if compile_model:
        try:
            fwd = torch.compile(model)
        except Exception as exc:  # no toolchain
            return {"error": f"torch.compile unavailable: {exc}"}
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    ctx = (lambda: torch.autocast(device_type=device, dtype=dtype)) if dtype else contextlib.nullcontext
    x = torch.randint(0, CONFIG["vocab_size"], (BATCH, CONFIG["block_size"]), device=device)
    y = torch.randint(0, CONFIG["vocab_size"], (BATCH, CONFIG["block_size"]), device=device)

    def step() -> float:
        with ctx():
            _, loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    t_compile = time.perf_counter()
    try:
        step()
    except Exception as exc:
        if not compile_model:
            raise
        return {"error": f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
    first_step_s = time.perf_counter() - t_compile
    if compile_model:
        compile_note = f"first step (compile) {first_step_s:.1f} s"
    for _ in range(warmup - 1):
        step()
    times = []
    for _ in range(steps):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    tokens = BATCH * CONFIG["block_size"]
    tps = [tokens / t for t in times]
    return {
        "params": params,
        "median_tok_s": statistics.median(tps),
        "min_tok_s": min(tps),
        "max_tok_s": max(tps),
        "steps": steps,
        "note": compile_note,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="fp32,bf16", help="comma list of fp32,bf16")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: try both eager and compiled")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    print(f"torch {torch.__version__} | {platform.processor() or platform.machine()} | threads {torch.get_num_threads()} "
          f"| bf16 CPU flags: {', '.join(cpu_bf16_flags()) or 'none'}")
    print(f"config {CONFIG}, batch {BATCH}")
    peak_before = matmul_peak(device=device)
    compiles = {"auto": [False, True], "on": [True], "off": [False]}[args.compile]
    rows = []
    for precision in args.modes.split(","):
        for comp in compiles:
            r = bench_mode(precision, comp, args.steps, args.warmup, device)
            r.update(precision=precision, compiled=comp)
            rows.append(r)
            print(f"  done: {precision} {'compiled' if comp else 'eager'}", file=sys.stderr)
    peak_after = matmul_peak(device=device)
    peak = statistics.median([peak_before, peak_after])
    peak_bf16 = matmul_peak(device=device, dtype=torch.bfloat16)
    print(f"fp32 matmul peak (2048^3, median of before/after runs): {peak / 1e9:.1f} GFLOP/s "
          f"(before {peak_before / 1e9:.1f}, after {peak_after / 1e9:.1f}); bf16 matmul: {peak_bf16 / 1e9:.1f} GFLOP/s")
    print()
    print("| precision | mode | median tokens/s | min..max | achieved GFLOP/s (6·N·tok/s) | MFU vs fp32 peak | vs own-dtype peak | note |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        mode = "torch.compile" if r["compiled"] else "eager"
        if "error" in r:
            print(f"| {r['precision']} | {mode} | – | – | – | – | – | {r['error']} |")
            continue
        flops = 6 * r["params"] * r["median_tok_s"]
        r["mfu"] = flops / peak
        own = flops / (peak_bf16 if r["precision"] == "bf16" else peak)
        print(f"| {r['precision']} | {mode} | {r['median_tok_s']:,.0f} | {r['min_tok_s']:,.0f}..{r['max_tok_s']:,.0f} "
              f"| {flops / 1e9:.1f} | {r['mfu']:.0%} | {own:.0%} | {r['note']} |")
    print(f"\nparams N = {rows[0].get('params', 0):,} (non-embedding count excludes position embeddings); "
          f"{args.steps} timed steps per row after {args.warmup} warmup")
    if args.json:
        print(json.dumps({"peak_flops": peak, "peak_flops_bf16": peak_bf16, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
