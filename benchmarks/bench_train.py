"""Training throughput of our GPT: tokens/s and MFU, fp32 vs bf16 autocast, eager vs torch.compile.

Fixed config from the spec: n_layer 4, n_head 4, n_embd 256, block_size 256,
vocab 8192, batch 16. One timed step = forward + backward + grad clip + AdamW,
exactly what ``Trainer.train_step`` does.

MFU = achieved FLOP/s / peak FLOP/s, with achieved = 6 x params x tokens/s
(params = ``model.num_params()``: position embeddings excluded, the tied
token embedding counted once; the attention term is left out, as in the
spec) and peak = the fp32 matmul rate measured in this same run (median of
square ``torch.mm`` calls), so a busy machine lowers both sides.

Machines shared with other work are noisy, so the modes are *interleaved*:
each round runs one step of every mode and one matmul-peak probe, and every
figure is a median over rounds. A neighbour's load then hits all modes (and
the peak) alike instead of whichever mode happened to run at that moment.

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


def matmul_peak(
    n: int = 2048, reps: int = 10, device: str = "cpu", dtype: torch.dtype = torch.float32, warm: int = 1
) -> float:
    """Median FLOP/s of an ``n x n @ n x n`` matmul in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(warm):
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


class Mode:
    """One configuration under test: a model, its optimizer and a ``step()`` closure."""

    def __init__(self, precision: str, compile_model: bool, device: str) -> None:
        self.precision, self.compiled, self.device = precision, compile_model, device
        self.error: str | None = None
        self.note = ""
        self.times: list[float] = []
        torch.manual_seed(0)
        self.model = GPT(GPTConfig(**CONFIG)).to(device)
        self.params = self.model.num_params()
        try:  # what Trainer uses: fused AdamW where available
            self.opt = torch.optim.AdamW(self.model.optimizer_groups(0.1), lr=3e-4, betas=(0.9, 0.95), fused=True)
        except (RuntimeError, TypeError, ValueError):
            self.opt = torch.optim.AdamW(self.model.optimizer_groups(0.1), lr=3e-4, betas=(0.9, 0.95))
        self.fwd = self.model
        if compile_model:
            try:
                self.fwd = torch.compile(self.model)
            except Exception as exc:  # no toolchain
                self.error = f"torch.compile unavailable: {exc}"
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        self.ctx = (lambda: torch.autocast(device_type=device, dtype=dtype)) if dtype else contextlib.nullcontext
        self.x = torch.randint(0, CONFIG["vocab_size"], (BATCH, CONFIG["block_size"]), device=device)
        self.y = torch.randint(0, CONFIG["vocab_size"], (BATCH, CONFIG["block_size"]), device=device)

    @property
    def name(self) -> str:
        return f"{self.precision} {'torch.compile' if self.compiled else 'eager'}"

    def step(self) -> float:
        """One training step (forward, backward, clip, AdamW); returns seconds."""
        if self.device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with self.ctx():
            _, loss = self.fwd(self.x, self.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        loss.item()
        if self.device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    def warm_up(self, steps: int) -> None:
        if self.error:
            return
        try:
            first = self.step()
        except Exception as exc:
            if not self.compiled:
                raise
            self.error = f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            return
        if self.compiled:
            self.note = f"first step (compile) {first:.1f} s"
        for _ in range(steps - 1):
            self.step()


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
    compiles = {"auto": [False, True], "on": [True], "off": [False]}[args.compile]
    modes = [Mode(p, c, device) for p in args.modes.split(",") for c in compiles]
    for m in modes:
        m.warm_up(args.warmup)
        print(f"  warmed up: {m.name} {m.note or m.error or ''}", file=sys.stderr)
    # Interleave: one step of every mode per round, and a matmul peak probe per round, so a
    # neighbour's load on this shared machine hits every mode (and the peak) alike.
    peaks, peaks_bf16 = [], []
    probe_bf16 = any(m.precision == "bf16" for m in modes)  # emulated where the CPU has no bf16 units: minutes a probe
    for r in range(args.steps):
        peaks.append(matmul_peak(device=device, reps=3))
        if probe_bf16:
            peaks_bf16.append(matmul_peak(device=device, reps=3, dtype=torch.bfloat16))
        for m in modes:
            if not m.error:
                m.times.append(m.step())
        print(f"  round {r + 1}/{args.steps}", file=sys.stderr)
    peak, peak_bf16 = statistics.median(peaks), statistics.median(peaks_bf16) if peaks_bf16 else float("nan")
    print(f"fp32 matmul peak (2048^3, median of {len(peaks)} probes interleaved with the steps): {peak / 1e9:.1f} GFLOP/s "
          f"(min {min(peaks) / 1e9:.1f}, max {max(peaks) / 1e9:.1f}); bf16 matmul: {peak_bf16 / 1e9:.1f} GFLOP/s")
    tokens = BATCH * CONFIG["block_size"]
    rows = []
    for m in modes:
        row = {"precision": m.precision, "compiled": m.compiled, "note": m.note, "params": m.params, "steps": len(m.times)}
        if m.error:
            row["error"] = m.error
        else:
            tps = [tokens / t for t in m.times]
            row.update(median_tok_s=statistics.median(tps), min_tok_s=min(tps), max_tok_s=max(tps))
        rows.append(row)
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
    print(f"\nparams N = {rows[0].get('params', 0):,} (position embeddings excluded); "
          f"{args.steps} interleaved rounds after {args.warmup} warmup steps per mode")
    if args.json:
        print(json.dumps({"peak_flops": peak, "peak_flops_bf16": peak_bf16, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
