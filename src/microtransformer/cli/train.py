"""``mtx train``: train a GPT or LSTM language model, or continue one with ``--resume``.

Data comes from prepared shards (``--shards_dir``) or, tutorial style, from
text (``--data_file`` / ``--data_dir`` / ``--corpus``): then a tokenizer is
trained (or ``--tokenizer_path`` used) and shards are written to
``OUT_DIR/data`` first. The tutorial's flags work as they are, ``--n_embed``
included (an alias of ``--n_embd``)::

    mtx train --data_file input.txt --vocab_size 4096 --block_size 128 --n_layer 4 \\
        --n_head 4 --n_embed 128 --batch_size 16 --max_steps 2000 --lr 1e-3 --use_cosine
    mtx train --resume runs/my_run --max_steps 4000

The defaults are the ``ours`` recipe (:mod:`microtransformer.training.recipes`,
the winner of ``benchmarks/speedrun.py``): nanochat's architecture (rotary
positions, RMSNorm, QK-norm, ReLU^2, untied head, logit soft-cap, value
embeddings) trained with Muon + AdamW on a warmup-stable-decay schedule.
``--recipe nanogpt`` gives nanoGPT's model and AdamW + cosine; any flag
overrides the recipe. ``--time_budget SECONDS`` sets the number of steps
(and the schedule's length) to what fits that much training time, and
``--model_size auto`` also picks width, depth and context for it::

    mtx train --data_file input.txt --time_budget 600 --model_size auto

The same ``--seed`` on the same data and settings gives bit-identical
weights on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from microtransformer.cli.args import fraction, nonneg_float, nonneg_int, positive_float, positive_int
from microtransformer.cli.tokenizer import add_corpus_args, corpus_from_args
from microtransformer.data.prepare import prepare_shards
from microtransformer.data.shards import read_meta
from microtransformer.device import choose_device, set_num_threads
from microtransformer.errors import ConfigError
from microtransformer.io import DirectoryLock, check_output_dir
from microtransformer.malloc import keep_freed_memory
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.training.distributed import barrier, destroy_distributed, detect_distributed, init_distributed
from microtransformer.training.recipes import (
    DEFAULT_RECIPE, RECIPES, Recipe, fit_to_vocab, size_for_budget, train_precision,
)

# TrainConfig fields settable from the command line (None = not given: default, or the saved value on --resume)
_TRAIN_FLAGS: dict[str, tuple[type, str]] = {
    "max_steps": (positive_int, "optimizer steps in total"),
    "batch_size": (positive_int, "sequences per micro-step (per process)"),
    "grad_accum_steps": (positive_int, "micro-steps per optimizer step"),
    "lr": (positive_float, "peak learning rate"),
    "warmup_steps": (nonneg_int, "linear warmup steps"),
    "weight_decay": (nonneg_float, "AdamW decoupled weight decay (matrices only)"),
    "grad_clip": (nonneg_float, "clip the gradient norm (0 = off)"),
    "eval_interval": (positive_int, "evaluate and checkpoint every N steps"),
    "eval_iters": (positive_int, "batches per evaluation"),
    "keep_last": (positive_int, "step checkpoints to keep (plus best)"),
    "seed": (nonneg_int, "seed for init, data order and dropout"),
}
_TRAIN_FLAGS.update({
    "optimizer": (str, "adamw, or muon (Muon for the blocks' matrices, AdamW for the rest)"),
    "lr_schedule": (str, "cosine, or wsd (warmup-stable-decay)"),
    "warmdown_ratio": (fraction, "wsd: the final share of steps that decays the LR"),
    "warmdown_shape": (str, "wsd: linear (nanochat) or sqrt (1 - sqrt cooldown)"),
    "min_lr_ratio": (fraction, "the LR at the end of the schedule, as a share of the peak"),
    "matrix_lr": (positive_float, "muon: LR of the weight matrices"),
    "embedding_lr": (positive_float, "muon: AdamW LR of the embeddings (at width 768; scaled by width^-0.5)"),
    "head_lr": (positive_float, "muon: AdamW LR of the output layer, tied or not (at width 768)"),
    "orthogonalizer": (str, "muon: quintic (Newton-Schulz, Jordan et al.) or polar_express"),
    "muon_beta2": (fraction, "muon: > 0 turns on NorMuon's per-neuron normalisation with this EMA decay (0 = off)"),
    "momentum_warmup_steps": (nonneg_int, "muon: steps over which Muon's momentum rises from 0.85 to 0.95 (0: none)"),
    "matrix_weight_decay": (nonneg_float, "muon: decoupled weight decay of the weight matrices (times the LR)"),
    "embedding_weight_decay": (nonneg_float, "muon: AdamW's decoupled weight decay of the token (untied) and value tables"),
    "time_budget": (nonneg_float, "seconds of training: sets max_steps to what fits (0 = off)"),
    "max_epochs": (nonneg_float, "a fresh run takes at most this many passes over the training split (0 = off)"),
    "sampling": (str, "random (windows at uniform offsets, as nanoGPT) or epoch (each window once per epoch, shuffled)"),
    "new_names": (fraction, "the share of training windows whose name tokens become made-up names (0 = off)"),
    "typography": (fraction, "the share of training windows whose apostrophes, dashes and quotes are re-set (0 = off)"),
})
_DEFAULTS = {"max_steps": 2000, "lr": 1e-3, "warmup_steps": 100, "eval_interval": 250}
# GPTConfig architecture options settable from the command line (None = the recipe's)
_ARCH_FLAGS: dict[str, tuple[Any, str]] = {
    "position": (str, "learned or rotary"),
    "norm": (str, "layernorm or rmsnorm"),
    "qk_norm": (bool, "RMS-normalise queries and keys"),
    "mlp": (str, "gelu or relu2"),
    "mlp_ratio": (positive_int, "the MLP's hidden width in multiples of n_embd (default 4)"),
    "tie_embeddings": (bool, "share the token embedding with the output layer"),
    "logit_softcap": (nonneg_float, "cap * tanh(logits / cap); 0 = off"),
    "value_embeds": (bool, "value embeddings on alternate layers"),
    "value_embed_every": (positive_int, "value embeddings on every N-th layer counted back from the last (default 2)"),
    "embed_norm": (bool, "normalise the token embedding"),
    "init": (str, "gpt2 or scaled"),
    "smear": (bool, "add a gated share of the previous token's embedding"),
    "x0_mix": (bool, "each block's input mixes in the embedding with learned weights"),
    "bigram_buckets": (nonneg_int, "rows of a hashed (previous, current) token-pair table added to the embedding; 0 = off"),
    "attn_chunk": (nonneg_int, "every layer but the last attends within chunks of this many positions; 0 = full context"),
    "line_columns": (nonneg_int, "rows of a table by each token's byte column in its line, added to the embedding; 0 = off"),
    "head_split": (nonneg_int, "a two-level output layer: this many most frequent tokens, then one class for the rest; "
                               "0 = one softmax"),
    "head_bias": (bool, "a logit bias per token, started at the log of its training count (the unigram model)"),
}


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (ignored with --resume: the checkpoint decides; unset: the recipe's)")
    g.add_argument("--model", choices=("gpt", "lstm"), default="gpt")
    g.add_argument("--recipe", choices=tuple(RECIPES), default=DEFAULT_RECIPE,
                   help=f"model shape, architecture and optimiser settings that go together (default {DEFAULT_RECIPE})")
    g.add_argument("--model_size", choices=("recipe", "auto"), default="recipe",
                   help="auto: the width/depth/context the speedrun found best for --time_budget "
                        "in the precision the run trains in (fp32 on a CPU without bf16 units)")
    g.add_argument("--n_layer", type=positive_int, default=None)
    g.add_argument("--n_head", type=positive_int, default=None)
    g.add_argument("--n_embd", "--n_embed", dest="n_embd", type=positive_int, default=None, help="width (--n_embed is an alias)")
    g.add_argument("--n_hidden", type=positive_int, default=256, help="LSTM hidden size")
    g.add_argument("--block_size", type=positive_int, default=None, help="context length in tokens")
    g.add_argument("--dropout", type=fraction, default=None)
    g.add_argument("--bias", action="store_true", default=None, help="biases in Linear/LayerNorm (GPT)")
    for name, (typ, help_) in _ARCH_FLAGS.items():
        if typ is bool:
            g.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            g.add_argument(f"--{name}", type=typ, default=None, help=help_)


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    for name, (typ, help_) in _TRAIN_FLAGS.items():
        g.add_argument(f"--{name}", type=typ, default=None, help=help_ + (f" (default {_DEFAULTS[name]})" if name in _DEFAULTS else ""))
    g.add_argument("--use_cosine", action=argparse.BooleanOptionalAction, default=None,
                   help="warmup + cosine decay (default, as TrainConfig); --no-use_cosine: constant LR after warmup")
    g.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
                   help="auto: bf16 on CUDA, fp32 on CPU (bf16 autocast is slow on CPUs without bf16 units)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model (a GPT's blocks; falls back to eager if it fails)")
    g.add_argument("--window_cache", action=argparse.BooleanOptionalAction, default=None,
                   help="after the last step, choose a GPT's window cache (copying from its context) on the validation split")
    g.add_argument("--num_threads", type=positive_int, default=None, help="torch CPU threads (default: MTX_NUM_THREADS, else torch's choice)")


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields the user gave explicitly."""
    out = {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name, None) is not None}
    for name in ("use_cosine", "device", "precision", "compile", "window_cache"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    return out


_LSTM_TRAIN: dict[str, Any] = {}  # the LSTM trains with TrainConfig's own defaults (AdamW + cosine), not a GPT recipe


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train a GPT/LSTM language model (or --resume one)")
    g = p.add_argument_group("data: --shards_dir, or text + a tokenizer")
    g.add_argument("--shards_dir", help="shards from `mtx data prepare`")
    add_corpus_args(p)
    g.add_argument("--tokenizer_path", help="tokenizer for text data (default: train one with --vocab_size)")
    g.add_argument("--vocab_size", type=positive_int, default=None, help="vocab of the tokenizer trained on the text (default: the recipe's)")
    g.add_argument("--engine", default="bpe", help="engine of the tokenizer trained on the text")
    g.add_argument("--space_after_newline", action=argparse.BooleanOptionalAction, default=None,
                   help="train that tokenizer to encode a space after every line break, so a line's first word is "
                        "its usual token (default: the recipe's; `mtx tokenizer train --help`)")
    g.add_argument("--val_fraction", type=fraction, default=0.1)
    add_model_args(p)
    add_train_args(p)
    p.add_argument("--out_dir", default="runs/run", help="run directory (checkpoints, tokenizer copy, metrics)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run exactly where it stopped")
    p.set_defaults(func=run)


def prepare_data_for_run(args: argparse.Namespace, out_dir: Path) -> tuple[Path, Any]:
    """Shards dir + tokenizer for a fresh run: given shards, or tokenizer + shards built from text."""

    if args.shards_dir:
        meta = read_meta(args.shards_dir)
        tok_path = args.tokenizer_path or meta.tokenizer_path
        if not tok_path:
            raise ConfigError(f"{args.shards_dir}/meta.json names no tokenizer; pass --tokenizer_path")
        tok = MicroTransformerTokenizer.from_pretrained(tok_path)
        if tok.fingerprint != meta.tokenizer_fingerprint:
            raise ConfigError(
                f"the tokenizer at {tok_path} is not the one {args.shards_dir} was encoded with (fingerprints differ); "
                "pass the right --tokenizer_path or re-run `mtx data prepare`"
            )
        return Path(args.shards_dir), tok
    corpus = corpus_from_args(args)
    if args.tokenizer_path:
        tok = MicroTransformerTokenizer.from_pretrained(args.tokenizer_path)
        tok_path = Path(args.tokenizer_path)
    else:
        recipe = RECIPES[getattr(args, "recipe", DEFAULT_RECIPE)]
        vocab_size = args.vocab_size or recipe.vocab_size
        given = getattr(args, "space_after_newline", None)
        spaces = recipe.space_after_newline if given is None else given
        lines = ", a space after each line break" if spaces else ""
        print(f"training a {args.engine} tokenizer (vocab {vocab_size}{lines}) on {corpus.describe()}")
        tok = MicroTransformerTokenizer.train(corpus, engine=args.engine, vocab_size=vocab_size, space_after_newline=spaces)
        tok_path = tok.save(out_dir / "data" / "tokenizer")
    shards = out_dir / "data"
    prepare_shards(corpus, tok, shards, val_fraction=args.val_fraction, tokenizer_path=tok_path, overwrite=True)
    return shards, tok


def _portable(shards: Path, run_dir: Path) -> str:
    """Shards inside the run dir are stored relative to it (the run dir can be moved), others absolute."""
    try:
        return str(shards.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(shards.resolve())


_GPT_SHAPE = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe with ``--model_size auto`` applied and every explicit model/train flag on top."""
    recipe = RECIPES[args.recipe]
    if getattr(args, "model_size", "recipe") == "auto":
        budget = getattr(args, "time_budget", None)
        if not budget:
            raise ConfigError("--model_size auto picks the model for a --time_budget; pass --time_budget SECONDS")
        precision = train_precision({**recipe.train, **train_overrides(args)})
        recipe = recipe.with_overrides(size_for_budget(budget, precision=precision))
    given = {k: getattr(args, k) for k in (*_GPT_SHAPE, *_ARCH_FLAGS) if getattr(args, k, None) is not None}
    return recipe.with_overrides({**given, **train_overrides(args)})


def build_model_config(args: argparse.Namespace, vocab_size: int, recipe: Recipe | None = None) -> Any:
    from microtransformer.models import GPTConfig, LSTMConfig

    recipe = recipe or resolve_recipe(args)
    if args.model == "gpt":
        given = getattr(args, "head_split", None) is not None  # a split asked for: too large is a config error
        return GPTConfig(vocab_size=vocab_size, **(recipe.model if given else fit_to_vocab(recipe.model, vocab_size)))
    return LSTMConfig(
        vocab_size=vocab_size, n_embd=args.n_embd or 128, n_hidden=args.n_hidden, n_layer=args.n_layer or 4,
        block_size=args.block_size or 128, dropout=args.dropout or 0.0,
    )


def print_result(result: Any, run_dir: Path) -> None:
    if result.evals:
        step, ev = result.evals[-1]
        print(f"step {step}: val {ev}")
    print(f"trained to step {result.step} at {result.tokens_per_sec:,.0f} tokens/s ({result.precision.precision})")
    print(f"run directory: {run_dir}")
    print(f"  sample:   mtx sample --ckpt {run_dir} --prompt \"...\" --stream")
    print(f"  continue: mtx train --resume {run_dir} --max_steps {result.step * 2}")


def run(args: argparse.Namespace) -> int:
    from microtransformer.training.checkpoint import read_run

    set_num_threads(args.num_threads)  # 1 thread helps when a neighbour holds a core (docs/benchmarks.md)
    keep_freed_memory()  # each step's buffers reused, not faulted in afresh (microtransformer.malloc)
    run_dir = Path(args.resume or args.out_dir)
    if args.resume:
        read_run(run_dir)  # a typed error for a path that is not a run, before the lock creates anything
    else:
        check_output_dir(run_dir, "--out_dir")
    env = detect_distributed()
    if env.is_distributed:  # under torchrun: rank 0 writes (data, checkpoints), the others wait for it
        init_distributed(env, choose_device(args.device or "auto")[0])
    # one writer per run directory, from the first file written (tokenizer, shards) to the last checkpoint
    lock = DirectoryLock(run_dir, purpose="mtx train") if env.is_main else contextlib.nullcontext()
    try:
        with lock:
            result = _train(args, run_dir, env.is_main)
    finally:
        destroy_distributed()
    if env.is_main:
        print_result(result, run_dir)
    if result.interrupted:
        return 128 + int(result.stop_signal or 2)  # 130 after Ctrl-C, 143 after SIGTERM
    return 0


def _data_of_rank_0(args: argparse.Namespace, run_dir: Path) -> tuple[Path, Any]:
    """On the other ranks of a torchrun: the shards and tokenizer rank 0 prepared (read only)."""

    if args.shards_dir:
        return prepare_data_for_run(args, run_dir)  # reads only
    return run_dir / "data", MicroTransformerTokenizer.from_pretrained(args.tokenizer_path or run_dir / "data" / "tokenizer")


def _train(args: argparse.Namespace, run_dir: Path, is_main: bool) -> Any:
    import torch

    from microtransformer.data.loader import ShardDataset
    from microtransformer.models import build_model
    from microtransformer.training.checkpoint import has_checkpoint, read_run
    from microtransformer.training.trainer import TrainConfig, Trainer

    overrides = train_overrides(args)
    if args.resume:
        run_info = read_run(run_dir)
        shards = args.shards_dir or run_info.get("data", {}).get("shards_dir")
        if not shards:
            raise ConfigError(f"{run_dir}/run.json does not say where its data is; pass --shards_dir")
        if not Path(shards).is_absolute() and not args.shards_dir:
            shards = run_dir / shards  # shards inside the run dir travel with it
        block = run_info["model"]["config"]["block_size"]
        data = ShardDataset(shards, block)
        trainer = Trainer.resume(run_dir, data, overrides=overrides)
    else:
        if has_checkpoint(run_dir):
            raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out_dir")
        recipe = resolve_recipe(args)
        train_fields = recipe.train if args.model == "gpt" else {**_LSTM_TRAIN, **overrides}  # the LSTM: AdamW
        config = TrainConfig(**{**_DEFAULTS, **train_fields})  # validated before any work
        if is_main:
            shards, tok = prepare_data_for_run(args, run_dir)
        barrier()
        if not is_main:
            shards, tok = _data_of_rank_0(args, run_dir)
        model_config = build_model_config(args, tok.vocab_size, recipe)
        data = ShardDataset(shards, model_config.block_size)
        torch.manual_seed(config.seed)  # the initial weights depend on --seed, and only on it
        model = build_model(args.model, model_config)
        if is_main:
            print(f"{args.model}: {model.num_params():,} parameters; {data.num_tokens('train'):,} training tokens")
        trainer = Trainer(
            model, data, config, run_dir, tokenizer=tok,
            run_info={"data": {"shards_dir": _portable(Path(shards), run_dir)}, "recipe": args.recipe},
        )
    with logging_redirect_tqdm():
        return trainer.fit()
