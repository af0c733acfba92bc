"""The same small GPT trained on each tokenizer's tokens for the same wall-clock budget, scored in bits per byte.

Why a time budget and not a step count: a tokenizer changes how much text a
step sees (bytes per token) and what a step costs (the embedding and output
layer grow with the vocabulary). "Which tokenizer should I use for my model
budget?" is a question about time, so every tokenizer gets the same seconds of
optimizer steps (eval and checkpoint time excluded), the same model shape,
seed, batch, learning rate and threads.

Fairness on a shared machine: the runs are **interleaved**. Each round gives
every tokenizer one slice (``slice_seconds``) of training, in an order that
rotates between rounds, so load that comes and goes during the comparison is
spread over all tokenizers instead of landing on one. Each tokenizer keeps its
own :class:`~microtransformer.training.trainer.Trainer` (model, optimizer,
step count) between slices; ``fit(time_limit_s=...)`` stops a slice after the
step that crosses the limit, so a run overshoots its budget by under one step.
The learning rate is constant (the trainer's ``use_cosine=False``): a cosine
schedule needs the number of steps in advance, and that number is what
differs between tokenizers.

The figure that decides is the held-out **bits per byte**
(:func:`heldout_bits_per_byte`): every held-out token is predicted exactly once
(consecutive windows of ``block_size`` targets, each document preceded by the
BOS the shards put there), the nats of every text token are summed and divided
by ``ln 2`` and by the UTF-8 bytes of the held-out text. A tokenizer cannot
win by cutting text into easier pieces: the total information is per byte.
The curve over training time uses the trainer's own eval (``eval_iters``
random held-out windows, the same ones at every point).

>>> results = train_interleaved(runs, seconds=120, slice_seconds=10)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.data.shards import TokenStream
from microtransformer.evaluation.metrics import LN2, nats_and_bytes, token_nats
from microtransformer.models import GPTConfig, build_model
from microtransformer.sampling import SamplingConfig, generate
from microtransformer.tokenization.base import MicroTransformerTokenizer
from microtransformer.training.trainer import TrainConfig, Trainer

__all__ = ["DownstreamResult", "DownstreamRun", "heldout_bits_per_byte", "heldout_ids", "train_interleaved"]

logger = logging.getLogger(__name__)

#: Loggers that speak once per slice (time limit reached, eval, device); quiet while the runs interleave.
_CHATTY = ("microtransformer.training.trainer", "microtransformer.training.checkpoint")


@dataclass
class DownstreamRun:
    """One tokenizer's run: its tokenizer, training shards, held-out text and where the run directory goes."""

    name: str
    tokenizer: MicroTransformerTokenizer
    shards_dir: Path
    heldout: Sequence[str]
    run_dir: Path


@dataclass
class DownstreamResult:
    """What one tokenizer's GPT reached in the budget. ``curve``: ``{"seconds", "step", "bpb"}`` points."""

    bits_per_byte: float
    heldout_tokens: int
    heldout_bytes: int
    steps: int
    train_seconds: float
    tokens_per_sec: float
    params: int
    embedding_params: int
    curve: list[dict[str, float]] = field(default_factory=list)
    samples: list[dict[str, str]] = field(default_factory=list)
    device: str = ""
    precision: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def heldout_ids(tokenizer: MicroTransformerTokenizer, docs: Sequence[str]) -> np.ndarray:
    """``[BOS, *doc ids]`` for every document, concatenated, as the shards lay documents out."""
    sep = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    parts = [[sep, *ids] for ids in tokenizer.encode_batch(list(docs))]
    return np.fromiter((i for p in parts for i in p), dtype=np.int64)


@torch.no_grad()
def heldout_bits_per_byte(
    model: torch.nn.Module,
    ids: np.ndarray,
    token_bytes: np.ndarray,
    *,
    block_size: int,
    batch_size: int = 16,
    autocast: Callable[[], Any] | None = None,
    scored: np.ndarray | None = None,
) -> tuple[float, int, int]:
    """Bits per byte of ``ids[1:]`` given what precedes each (within its window): ``(bpb, tokens, bytes)``.

    Windows ``ids[s : s + block_size + 1]`` for ``s = 0, block_size, ...``:
    each target is scored once, with between 1 and ``block_size`` tokens of
    context. ``bytes`` is the byte length of the scored text tokens (0-byte
    special targets, the BOS between documents, are left out of both sums;
    ``scored``, ``(V,)`` bool, names the text ids instead, for a tokenizer's
    ``token_text_bytes``, where a text token can have 0 bytes).
    """
    device = next(model.parameters()).device
    tb = torch.tensor(np.array(token_bytes, dtype=np.int64), device=device)  # (V,)
    keep = None if scored is None else torch.tensor(np.array(scored, dtype=bool), device=device)  # (V,)
    n_targets = len(ids) - 1
    starts = list(range(0, n_targets, block_size))
    full = [s for s in starts if s + block_size <= n_targets]
    tail = [s for s in starts if s + block_size > n_targets]
    nats = torch.zeros((), dtype=torch.float64, device=device)
    nbytes = torch.zeros((), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    context = autocast or contextlib.nullcontext
    try:
        groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)] + [[s] for s in tail]
        for group in groups:
            width = min(block_size, n_targets - group[0])
            rows = np.stack([ids[s : s + width + 1] for s in group]).astype(np.int64)  # (B, T+1); shards may be int32
            t = torch.from_numpy(rows).to(device)
            x, y = t[:, :-1], t[:, 1:]  # (B, T), (B, T)
            with context():
                logits, _ = model(x)  # (B, T, V)
            counted, b = nats_and_bytes(token_nats(logits, y), y, tb, keep)
            nats += counted
            nbytes += b
    finally:
        if was_training:
            model.train()
    total_bytes = int(nbytes.item())
    return float(nats.item()) / LN2 / max(total_bytes, 1), n_targets, total_bytes


def _train_ids(shards_dir: Path) -> np.ndarray:
    return TokenStream.open(shards_dir, "train")[:]  # one file: a view of its memmap; several: read into memory


@contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def _prompts(heldout: Sequence[str], n: int, chars: int = 60) -> list[str]:
    """The first line-start of up to ``n`` held-out passages, cut at a word boundary."""
    text = "\n".join(heldout)
    paras = [p.strip() for p in text.split("\n\n") if len(p.strip()) >= chars]
    step = max(1, len(paras) // max(n, 1))
    out = []
    for p in paras[::step][:n]:
        cut = p[:chars]
        out.append(cut[: cut.rfind(" ")] if " " in cut else cut)
    return out


def train_interleaved(
    runs: Sequence[DownstreamRun],
    *,
    seconds: float,
    slice_seconds: float,
    model_config: dict[str, Any],
    train_config: TrainConfig,
    n_samples: int = 3,
    sample_bytes: int = 160,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, DownstreamResult]:
    """Train one GPT per run for ``seconds`` of steps, round robin in ``slice_seconds`` slices; score and sample.

    ``model_config`` holds the :class:`~microtransformer.models.GPTConfig`
    fields except ``vocab_size`` (each tokenizer's own). Every model starts
    from the same seed. A run is done when less than 2 % of a slice is left
    of its budget. ``on_progress(what)`` is called after every slice and every
    final evaluation. A Ctrl-C stops the comparison (``KeyboardInterrupt``)
    after the current step and its checkpoint.
    """
    progress = on_progress or (lambda what: None)
    block_size = int(model_config["block_size"])
    slice_seconds = min(slice_seconds, seconds)
    trainers: dict[str, Trainer] = {}
    ids: dict[str, np.ndarray] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    used = {r.name: 0.0 for r in runs}
    results: dict[str, DownstreamResult] = {}
    with _quiet(_CHATTY):
        for r in runs:
            tok = r.tokenizer
            ids[r.name] = heldout_ids(tok, r.heldout)
            data = TokenArrayDataset(
                {"train": _train_ids(r.shards_dir), "val": ids[r.name]}, block_size, vocab_size=tok.vocab_size
            )
            torch.manual_seed(train_config.seed)  # the same initialisation stream for every tokenizer
            model = build_model("gpt", GPTConfig(vocab_size=tok.vocab_size, **model_config))
            trainers[r.name] = Trainer(model, data, train_config, r.run_dir, tokenizer=tok, show_progress=False)
            curves[r.name] = [{"seconds": 0.0, "step": 0, "bpb": _bpb(trainers[r.name].evaluate("val"))}]
        order = [r.name for r in runs]
        for k in range(math.ceil(seconds / slice_seconds) + 1):  # + 1: a round for runs that steps left short
            for name in order[k % len(order):] + order[: k % len(order)]:  # the order rotates every round
                left = seconds - used[name]
                if left < 0.02 * slice_seconds:
                    continue
                res = trainers[name].fit(time_limit_s=min(slice_seconds, left))
                if res.interrupted:
                    raise KeyboardInterrupt
                used[name] += res.train_seconds
                step, ev = res.evals[-1]
                curves[name].append({"seconds": used[name], "step": step, "bpb": _bpb(ev)})
                progress(f"train {name}")
        for r in runs:
            results[r.name] = _finish(r, trainers[r.name], ids[r.name], used[r.name], curves[r.name], n_samples, sample_bytes)
            progress(f"score {r.name}")
    return results


def _finish(
    run: DownstreamRun, trainer: Trainer, ids: np.ndarray, seconds: float, curve: list[dict[str, float]],
    n_samples: int, sample_bytes: int,
) -> DownstreamResult:
    """Held-out bits per byte over every token, and greedy samples sized to ~``sample_bytes`` bytes."""
    tok, model = run.tokenizer, trainer.raw_model
    bpb, n_tokens, n_bytes = heldout_bits_per_byte(
        model, ids, tok.token_text_bytes(), scored=tok.text_ids(), block_size=model.config.block_size,
        batch_size=trainer.config.batch_size, autocast=trainer.precision.autocast_context,
    )
    text_bytes = sum(len(d.encode("utf-8")) for d in run.heldout)
    if n_bytes != text_bytes:  # a lossless tokenizer's tokens hold every byte of the text exactly once
        logger.warning("%s: the scored tokens hold %d bytes, the held-out text %d", run.name, n_bytes, text_bytes)
    bytes_per_token = text_bytes / max(len(ids) - len(run.heldout), 1)  # ids hold one BOS per document
    config = SamplingConfig(max_new_tokens=max(1, math.ceil(sample_bytes / bytes_per_token)), temperature=0)
    samples = [{"prompt": p, "text": generate(model, tok, p, config)} for p in _prompts(run.heldout, n_samples)]
    return DownstreamResult(
        bits_per_byte=bpb,
        heldout_tokens=n_tokens,
        heldout_bytes=n_bytes,
        steps=trainer.step,
        train_seconds=seconds,
        tokens_per_sec=trainer.step * trainer.tokens_per_step / max(seconds, 1e-9),
        params=sum(p.numel() for p in model.parameters()),
        embedding_params=model.transformer.wte.weight.numel(),
        curve=curve,
        samples=samples,
        device=str(trainer.device),
        precision=trainer.precision.precision,
    )


def _bpb(ev: Any) -> float:
    return float(ev.bits_per_byte) if ev.bits_per_byte is not None else float("nan")
