"""Speedrun: the lowest held-out bits per byte in a fixed CPU training budget, recipes side by side.

Fixed data: the books of ``../shared/data`` with ``pride_and_prejudice.txt``
held out. Each recipe (``microtransformer.training.recipes``) gets a ``bpe``
tokenizer of its vocab size trained on the training books, the same
``--budget`` seconds of training wall-clock (forward, backward, optimizer;
evaluation excluded; a ``torch.compile`` warm-up counts, each compiled recipe
paying at least what the first one paid) and is scored by
bits per byte on the **whole** held-out book: every token predicted once,
nats summed and divided by ``ln 2`` and the book's UTF-8 bytes, so
tokenizers of different vocab sizes compare. The table also scores as many
tokens of training text the same way: the gap between the two columns is
what a recipe fitted of the books it read and not of the one it did not.
Every recipe trains on the training books less a validation slice
(``VALIDATION_TOKENS`` from 60 % into each book), which is what a recipe
that chooses settings after training (``ours``'s window cache) chooses them
on: never the held-out book.

Recipes run **interleaved** in one process: the next step always goes to the
recipe with the least training time so far, so load that comes and goes on
a shared machine lands on all of them alike. Each recipe times its first
steps and then fixes its step count (and schedule length) to fill the
budget, as ``mtx train --time_budget`` does. ``ours`` takes the shape
``mtx train --model_size auto`` gives the budget in the precision it trains
in on this machine (``--model_size recipe``: the recipe's own long-budget
shape), a variant's overrides on top; the peers keep theirs.

MFU = achieved FLOP/s / the matmul peak of the dtype in use (bf16 under
autocast, else fp32), the peak measured in this run (median of 2048^3
``torch.mm`` probes taken between steps). Achieved = tokens/s x
``GPT.flops_per_token`` (6 x matmul weights + attention).

    python benchmarks/speedrun.py                                  # nanogpt, nanochat, ours; 600 s each
    python benchmarks/speedrun.py --budget 180 --recipes nanogpt,ours
    python benchmarks/speedrun.py --budget 120 --recipes ours,ours+mlp=gelu   # an A/B
    python benchmarks/speedrun.py --quick                          # 60 s smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time

if "--warm_compile_cache" not in sys.argv:  # a cold torch.compile, as a user's first run pays it
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="speedrun-inductor-")
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microtransformer.data.corpus import Corpus
from microtransformer.data.loader import TokenArrayDataset
from microtransformer.evaluation.downstream import heldout_bits_per_byte, heldout_ids
from microtransformer.malloc import keep_freed_memory
from microtransformer.models import GPT, GPTConfig
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.training.recipes import Recipe, fit_to_vocab, get_recipe, train_precision
from microtransformer.training.trainer import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import matmul_peak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
HELD_OUT = "pride_and_prejudice.txt"
QUICK_BUDGET = 60.0
#: tokens cut from 60 % into each training book to make the validation split (not trained on, not scored)
VALIDATION_TOKENS = 10_000


@dataclass
class Prepared:
    tokenizer: MicroTransformerTokenizer
    train: np.ndarray
    val: np.ndarray  # the held-out book: what the table scores
    validation: np.ndarray  # the slice of the training books that recipes may tune on (not in ``train``)
    token_bytes: np.ndarray  # of text: a space the tokenizer adds after a line break is not counted
    scored: np.ndarray  # the text ids, whose losses count (not the special tokens)
    held_out_bytes: int


def prepare(data_dir: Path, vocab_size: int, cache: Path, space_after_newline: bool = False) -> Prepared:
    """Tokenizer + train/held-out ids for ``vocab_size`` (and ``space_after_newline``), cached under ``cache``
    (keyed by the books' sizes)."""
    books = sorted(p for p in data_dir.glob("*.txt") if p.name != HELD_OUT)
    held_out = data_dir / HELD_OUT
    if not books or not held_out.is_file():
        raise SystemExit(f"speedrun: need {HELD_OUT} and other .txt books in {data_dir}")
    key = "-".join(f"{p.stem}{p.stat().st_size}" for p in books)
    kind = f"bpe{vocab_size}" + ("-lines" if space_after_newline else "")
    where = cache / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    text = held_out.read_text(encoding="utf-8")
    if (where / "train.npy").is_file():
        tok = MicroTransformerTokenizer.from_pretrained(where / "tokenizer")
        train = np.load(where / "train.npy")
    else:
        corpus = Corpus(files=tuple(books), source=str(data_dir))
        tok = MicroTransformerTokenizer.train(
            corpus, engine="bpe", vocab_size=vocab_size, show_progress=False, space_after_newline=space_after_newline
        )
        docs = [p.read_text(encoding="utf-8") for p in books]
        train = heldout_ids(tok, docs).astype(np.int32)  # BOS-separated documents, as the shards lay them out
        tok.save(where / "tokenizer")
        np.save(where / "train.npy", train)
    val = heldout_ids(tok, [text])
    train, validation = split_validation(train, int(tok.bos_id), VALIDATION_TOKENS)
    return Prepared(tok, train, val, validation, np.array(tok.token_text_bytes(), dtype=np.int64), tok.text_ids(),
                    len(text.encode("utf-8")))


def split_validation(train: np.ndarray, bos: int, per_book: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)``: ``per_book`` tokens from 60 % into each BOS-led book of ``train`` cut out (a BOS
    where the cut was) and laid out as BOS-led pieces. From inside the books: their ends are licence text."""
    starts = [*np.flatnonzero(train == bos).tolist(), len(train)]
    keep, cut = [], []
    one = np.array([bos], dtype=train.dtype)
    for s, e in zip(starts[:-1], starts[1:]):
        c = s + int(0.6 * (e - s))
        keep += [train[s:c], one, train[c + per_book : e]]
        cut += [one, train[c : c + per_book]]
    return np.concatenate(keep), np.concatenate(cut)


@dataclass
class CompileCharge:
    """What a compiled recipe's first step is charged: at least the first one measured in this process.

    Why: ``torch.compile`` warms up once per process (its imports and the C++ toolchain) and compiles a graph
    once, so a second compiled recipe, above all a variant whose blocks are the same graph, would otherwise
    start almost free, as no user's fresh process does. Each compiled recipe is charged the larger of its own
    first step and the first compiled recipe's; the row's ``first_step_seconds`` is what it was charged.
    """

    first: float | None = None

    def charge(self, seconds: float) -> float:
        if self.first is None:
            self.first = seconds
        return max(seconds, self.first)


@dataclass
class Runner:
    """One recipe under way: its model, trainer, clock and curve."""

    recipe: Recipe
    data: Prepared
    trainer: Trainer
    model: GPT
    budget: float
    compile_charge: CompileCharge | None = None  # shared by the run's recipes; None: no fair compile charge
    train_time: float = 0.0
    first_step_measured: float = 0.0  # before any compile charge
    step_times: list[float] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.trainer.budget_pending and self.trainer.step >= self.trainer.config.max_steps

    def step(self) -> None:
        t = time.perf_counter()
        self.trainer.train_step()
        seconds = time.perf_counter() - t
        if not self.step_times:
            self.first_step_measured = seconds
            if self.trainer.config.compile and self.compile_charge is not None:
                seconds = self.compile_charge.charge(seconds)
        self.step_times.append(seconds)
        self.train_time += seconds
        self.trainer.after_step(seconds)  # plans and re-plans a time budget as `mtx train` does

    def _score(self, ids: np.ndarray) -> tuple[float, int, int]:
        return heldout_bits_per_byte(
            self.model, ids, self.data.token_bytes, block_size=self.model.config.block_size, batch_size=16,
            scored=self.data.scored,
        )

    def evaluate(self) -> float:
        if self.trainer.config.window_cache:  # knobs chosen on the validation slice; seconds reported as training
            t = time.perf_counter()
            self.trainer.calibrate_window_cache()
            self.train_time += time.perf_counter() - t
        bpb, _, nbytes = self._score(self.data.val)
        assert nbytes == self.data.held_out_bytes, (nbytes, self.data.held_out_bytes)  # every byte scored once
        self.curve.append({"seconds": self.train_time, "step": self.trainer.step, "bpb": bpb})
        return bpb

    def seen_bpb(self) -> float:
        """Bits per byte on training text (its first held-out-sized stretch of tokens): the gap to the held-out
        score is what the model fitted of the books it read and not of the one it did not."""
        return self._score(self.data.train[: len(self.data.val)])[0]


def build_runner(
    recipe: Recipe, data: Prepared, budget: float, steps: int | None, work: Path, seed: int,
    compile_charge: CompileCharge | None = None,
) -> Runner:
    torch.manual_seed(seed)
    vocab = data.tokenizer.vocab_size
    fields = recipe.model if "head_split" in get_recipe(recipe.name).model else fit_to_vocab(recipe.model, vocab)
    model = GPT(GPTConfig(vocab_size=vocab, **fields))  # a split the variant named stays; the shape's must fit
    block = model.config.block_size
    dataset = TokenArrayDataset({"train": data.train, "val": data.validation}, block, vocab_size=model.config.vocab_size)
    train = dict(recipe.train, seed=seed, eval_interval=10**9, eval_iters=1)
    if steps is None:
        train.update(time_budget=budget)
    else:
        train.update(max_steps=train.get("max_steps", steps), time_budget=0.0)  # a recipe's own max_steps wins
    config = TrainConfig(**train)
    reads_tokens = config.new_names or config.typography or model.config.line_columns
    tokenizer = data.tokenizer if reads_tokens else None  # they read its tokens
    trainer = Trainer(model, dataset, config, work / recipe.name.replace("/", "_"), tokenizer=tokenizer, show_progress=False)
    return Runner(recipe, data, trainer, model, budget, compile_charge)


#: the dtype names of the MFU column and the torch dtypes whose matmul peak each is measured against
PEAK_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sized_recipe(spec: str, budget: float | None) -> Recipe:
    """``spec`` with ``ours`` sized for ``budget`` seconds in the precision the variant will train in on this machine,
    as ``mtx train --model_size auto`` sizes it (``budget`` None: the recipe's own shape)."""
    if budget is None:
        return get_recipe(spec)
    return get_recipe(spec, budget=budget, precision=train_precision(get_recipe(spec).train))


def tokenizer_key(recipe: Recipe) -> tuple[int, bool]:
    """What a recipe's tokenizer is trained with: recipes that agree share one."""
    return recipe.vocab_size, recipe.space_after_newline


def matmul_dtype(trainer: Trainer) -> str:
    """``"bf16"`` when the trainer's matmuls run under bf16 autocast, else ``"fp32"``: the peak its MFU is taken of."""
    return "bf16" if trainer.precision.autocast and trainer.precision.precision == "bf16" else "fp32"


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `mtx train` does: every recipe's step buffers reused (microtransformer.malloc)
    budget = QUICK_BUDGET if args.quick and args.budget is None else (args.budget or 600.0)
    sized = budget if args.model_size == "auto" else None
    recipes = [sized_recipe(spec, sized) for spec in args.recipes.split(",")]
    cache = Path(args.cache_dir)
    prepared: dict[tuple[int, bool], Prepared] = {}
    for r in recipes:
        if tokenizer_key(r) not in prepared:
            t = time.perf_counter()
            p = prepared[tokenizer_key(r)] = prepare(Path(args.data_dir), r.vocab_size, cache, r.space_after_newline)
            lines = ", a space after each line break" if r.space_after_newline else ""
            print(f"bpe {r.vocab_size}{lines}: {len(p.train):,} training tokens, {len(p.val):,} held-out tokens "
                  f"({p.held_out_bytes:,} bytes), {time.perf_counter() - t:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        charge = None if args.free_recompiles else CompileCharge()
        runners = [build_runner(r, prepared[tokenizer_key(r)], budget, args.steps, Path(tmp), args.seed, charge) for r in recipes]
        # only the dtypes the recipes train in: a bf16 probe on a CPU without bf16 units is emulated (minutes a run)
        peaks: dict[str, list[float]] = {d: [] for d in sorted({matmul_dtype(r.trainer) for r in runners})}
        n_points = max(1, args.points)
        next_eval = [budget / n_points] * len(runners)
        t0 = time.perf_counter()
        last_probe = 0.0
        while not all(r.done for r in runners):
            live = [i for i, r in enumerate(runners) if not r.done]
            if args.steps is None:  # the recipe furthest behind in its budget goes next
                i = min(live, key=lambda j: runners[j].train_time / runners[j].budget)
            else:
                i = min(live, key=lambda j: runners[j].trainer.step)
            r = runners[i]
            r.step()
            if args.steps is None and r.train_time >= next_eval[i] and not r.done:
                bpb = r.evaluate()
                next_eval[i] += budget / n_points
                print(f"  {r.recipe.name}: {r.train_time:.0f} s, step {r.trainer.step}, held-out bpb {bpb:.4f}", file=sys.stderr)
            if time.perf_counter() - last_probe > 30:  # the peaks, sampled through the run
                for name, samples in peaks.items():
                    samples.append(matmul_peak(reps=3, dtype=PEAK_DTYPES[name]))
                last_probe = time.perf_counter()
        wall = time.perf_counter() - t0
        rows = []
        peak = {k: statistics.median(v) for k, v in peaks.items()}
        for r in runners:
            bpb = r.evaluate()
            tr = r.trainer
            tokens = tr.step * tr.tokens_per_step
            tok_s = tokens / r.train_time
            dtype = matmul_dtype(tr)
            flops = r.model.flops_per_token() * tok_s
            rows.append({
                "recipe": r.recipe.name, "vocab_size": r.recipe.vocab_size,
                "space_after_newline": r.recipe.space_after_newline, "params": r.model.num_params(),
                "steps": tr.step, "train_seconds": r.train_time, "tokens": tokens, "tokens_per_sec": tok_s,
                "precision": dtype, "mfu": flops / peak[dtype], "bpb": bpb, "seen_bpb": r.seen_bpb(), "curve": r.curve,
                "held_out_bytes": r.data.held_out_bytes,
                "first_step_seconds": r.step_times[0], "first_step_measured_seconds": r.first_step_measured,
                "model": r.model.config.to_dict(), "train": tr.config.to_dict(),
            })
    return {"budget": budget, "threads": args.threads, "wall_seconds": wall, "peak_flops": peak, "rows": rows,
            "torch": torch.__version__}


def print_table(result: dict[str, Any]) -> None:
    peak = result["peak_flops"]
    peaks = ", ".join(f"{name} {flops / 1e9:.0f} GFLOP/s" for name, flops in peak.items())
    print(f"budget {result['budget']:.0f} s of training per recipe, {result['threads']} threads, interleaved; "
          f"matmul peak {peaks} (measured in this run)")
    print("| recipe | vocab | params | steps | tokens/s | MFU (own dtype) | training-text bpb | held-out bpb |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(f"| {r['recipe']} | {r['vocab_size']} | {r['params'] / 1e6:.2f}M | {r['steps']:,} | {r['tokens_per_sec']:,.0f} "
              f"| {r['mfu']:.0%} {r['precision']} | {r['seen_bpb']:.4f} | {r['bpb']:.4f} |")
    base = {r["recipe"]: r["bpb"] for r in result["rows"]}
    for r in result["rows"]:
        others = ", ".join(f"{(r['bpb'] / b - 1):+.1%} vs {n}" for n, b in base.items() if n != r["recipe"])
        if others:
            print(f"  {r['recipe']}: {others}")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in result["rows"]:
        pts = r["curve"]
        ax.plot([p["seconds"] for p in pts], [p["bpb"] for p in pts], marker="o", ms=3, label=f"{r['recipe']} ({r['bpb']:.3f})")
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel("held-out bits per byte (whole book)")
    ax.set_title(f"speedrun: {result['budget']:.0f} s per recipe, {result['threads']} threads")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="nanogpt,nanochat,ours",
                    help="comma list of recipes; a variant adds +field=value (GPTConfig/TrainConfig fields, vocab_size)")
    ap.add_argument("--budget", type=float, default=None, help="training seconds per recipe (default 600; --quick: 60)")
    ap.add_argument("--quick", action="store_true", help=f"a {QUICK_BUDGET:.0f} s budget, for smoke tests")
    ap.add_argument("--steps", type=int, default=None,
                    help="equal steps instead of equal time (an A/B of one change); a recipe's +max_steps=N overrides")
    ap.add_argument("--model_size", choices=("auto", "recipe"), default="auto",
                    help="auto: `ours` takes the shape `mtx train --model_size auto` gives the budget, before a "
                         "variant's overrides; recipe: the recipe's own (long-budget) shape")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--points", type=int, default=8, help="held-out evaluations along the way (the curve)")
    ap.add_argument("--warm_compile_cache", action="store_true", help="reuse torch.compile's cache (default: a cold one)")
    ap.add_argument("--free_recompiles", action="store_true",
                    help="charge each compiled recipe only its own first step (default: at least the first compiled "
                         "recipe's, as its own fresh process would pay)")
    ap.add_argument("--data_dir", default=str(DEFAULT_DATA))
    ap.add_argument("--cache_dir", default=str(ROOT / "runs" / "speedrun_cache"), help="tokenizers and token arrays")
    ap.add_argument("--out", default=str(ROOT / "runs" / "speedrun"), help="writes result.json and bpb.png here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print_table(result)
    try:
        plot(result, out / "bpb.png")
        print(f"wrote {out / 'result.json'} and {out / 'bpb.png'}")
    except ImportError:
        print(f"wrote {out / 'result.json'} (no matplotlib: no plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
