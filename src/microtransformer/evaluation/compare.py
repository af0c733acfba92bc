"""Which tokenizer, and which vocabulary size, for this corpus and this model budget? Measured in one run.

:func:`compare_tokenizers` trains every (engine, vocab size) pair on the same
text (each in a fresh process: :mod:`.train_measured`), or loads saved
tokenizer directories (an exported ``autoencoder``, one imported from Hugging
Face or tiktoken, any saved dir), then measures each on held-out text the
tokenizers never saw:

- the tokenizer alone (:mod:`.tokenizer_metrics`): training time and peak RSS,
  encode MB/s (single and batch), bytes per token, tokens per word, share of the
  vocabulary used, token-length distribution, exact round trip on the held-out
  text, an adversarial set and any extra samples (other languages, code);
- the model on top (:mod:`.downstream`): the same small GPT trained on each
  tokenizer's shards for the same wall-clock budget, interleaved, scored in
  held-out **bits per byte** (the figure that decides), with greedy samples.

The result (:class:`ComparisonResult`) is sorted best first (lowest bits per
byte; highest bytes per token when there is no downstream training), prints
as a table, saves as JSON, and renders as a self-contained HTML report
(:mod:`.compare_report`).

Held-out text: a file (``heldout="book.txt"``; when the file is part of the
corpus it is left out of training), or the tail ``holdout_fraction`` of every
document (the rest is written once to the work directory, so every tokenizer
and every shard sees exactly the same training text).

>>> result = compare_tokenizers("data/", heldout="data/pride_and_prejudice.txt",
...                             config=CompareConfig(vocab_sizes=(4096, 8192)))  # doctest: +SKIP
>>> print(format_table(result))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from microtransformer.config import JSONConfig
from microtransformer.data.corpus import Corpus, split_holdout
from microtransformer.data.prepare import prepare_shards
from microtransformer.device import choose_device
from microtransformer.errors import ConfigError, CorpusError, DataError
from microtransformer.evaluation.tokenizer_metrics import (
    ADVERSARIAL_CASES,
    ROUND_TRIP_DEFINITION,
    RoundTripCheck,
    TextStats,
    adversarial_checks,
    encode_speeds,
    paragraphs,
    round_trip_check,
    text_stats,
)
from microtransformer.evaluation.train_measured import (
    TrainMeasurement,
    train_in_subprocess,
)
from microtransformer.io import PathLike, atomic_write_json, atomic_write_text
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.registry import get_engine

__all__ = ["CompareConfig", "ComparisonResult", "TokenizerResult", "compare_tokenizers", "format_table"]

SORT_BPB = "downstream_bpb"
SORT_BYTES_PER_TOKEN = "bytes_per_token"


def _help(text: str, **argparse_kwargs: Any) -> Any:
    """Field metadata: the flag's help (``cli.args.add_config_flags``), and ``nargs`` where it differs."""
    return {"help": text, **argparse_kwargs}


@dataclass(frozen=True)
class CompareConfig(JSONConfig):
    """Settings of a comparison (the CLI's flags are these fields); stored in the result JSON.

    The GPT and its training recipe default to ``mtx train``'s (4 layers, 4
    heads, width 128, context 128, batch 16, lr 1e-3, constant); other
    optimizer settings are :class:`~microtransformer.training.trainer.TrainConfig`'s.
    """

    engines: tuple[str, ...] = field(
        default=("bpe", "hf-bytelevel", "sentencepiece"),
        metadata=_help("engines to train at every vocab size (none: only --tokenizer_path dirs)", nargs="*"),
    )
    vocab_sizes: tuple[int, ...] = field(
        default=(2048, 4096, 8192), metadata=_help("vocab sizes to train, special tokens included")
    )
    holdout_fraction: float = field(default=0.05, metadata=_help("tail of every document held out (without --heldout_file)"))
    downstream_seconds: float = field(
        default=120.0, metadata=_help("seconds of GPT training per tokenizer (0: tokenizer figures only)")
    )
    slice_seconds: float = field(default=10.0, metadata=_help("interleaving: seconds per tokenizer per round"))
    threads: int | None = field(
        default=None, metadata=_help("threads for torch, encode_batch and tokenizer training (None: torch's number)")
    )
    n_layer: int = field(default=4, metadata=_help("GPT layers"))
    n_head: int = field(default=4, metadata=_help("GPT attention heads"))
    n_embd: int = field(default=128, metadata=_help("GPT width"))
    block_size: int = field(default=128, metadata=_help("GPT context in tokens"))
    batch_size: int = field(default=16, metadata=_help("sequences per step"))
    lr: float = field(default=1e-3, metadata=_help("learning rate (constant)"))
    eval_iters: int = field(default=8, metadata=_help("held-out batches per point of the bpb-over-time curve"))
    n_samples: int = field(default=3, metadata=_help("greedy samples per tokenizer"))
    sample_bytes: int = field(default=160, metadata=_help("about this many bytes per sample"))
    speed_repeats: int = field(default=3, metadata=_help("timed encode rounds (median)"))
    seed: int = field(default=1337, metadata=_help("model init and batch order, the same for every tokenizer"))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda, cuda:N"))
    precision: str = field(default="auto", metadata=_help("auto, fp32, bf16, fp16"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "engines", tuple(self.engines))
        object.__setattr__(self, "vocab_sizes", tuple(self.vocab_sizes))
        for engine in self.engines:
            get_engine(engine)  # a typed error listing the engines
        if len(set(self.engines)) != len(self.engines) or len(set(self.vocab_sizes)) != len(self.vocab_sizes):
            raise ConfigError("engines and vocab_sizes must not repeat a value")
        positive = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "eval_iters", "sample_bytes", "speed_repeats")
        for name in (*positive, "n_samples", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if name in positive else 0):
                raise ConfigError(f"{name} must be an integer >= {1 if name in positive else 0}, got {v!r}")
        for v in self.vocab_sizes:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"vocab sizes must be positive integers, got {v!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not (self.downstream_seconds >= 0 and math.isfinite(self.downstream_seconds)):
            raise ConfigError(f"downstream_seconds must be >= 0 (0: no GPT training), got {self.downstream_seconds}")
        if not (self.slice_seconds > 0 and math.isfinite(self.slice_seconds)):
            raise ConfigError(f"slice_seconds must be > 0, got {self.slice_seconds}")
        from microtransformer.models import GPTConfig

        GPTConfig(vocab_size=256, **self.model_config())  # the GPT's own checks, before any work
        self.train_config()
        if self.downstream_seconds > 0:
            choose_device(self.device)  # an unknown device, or CUDA asked for where there is none

    def model_config(self) -> dict[str, int]:
        """:class:`~microtransformer.models.GPTConfig` fields but ``vocab_size``."""
        return {"n_layer": self.n_layer, "n_head": self.n_head, "n_embd": self.n_embd, "block_size": self.block_size}

    def train_config(self) -> Any:
        """The :class:`~microtransformer.training.trainer.TrainConfig` of every downstream run."""
        from microtransformer.training.trainer import TrainConfig

        never = 10**12  # the time budget stops training; evals come at the end of every slice
        return TrainConfig(
            max_steps=never, batch_size=self.batch_size, lr=self.lr, use_cosine=False, eval_interval=never,
            eval_iters=self.eval_iters, keep_last=1, seed=self.seed, device=self.device, precision=self.precision,
        )


@dataclass
class TokenizerResult:
    """Everything measured for one tokenizer (figures on the held-out text unless named otherwise)."""

    name: str
    engine: str
    vocab_size: int
    source: str  # "trained" or the directory/file it was loaded from
    path: str
    heldout: TextStats
    round_trip: list[RoundTripCheck]
    encode: dict[str, float] = field(default_factory=dict)
    training: TrainMeasurement | None = None
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    downstream: Any = None  # DownstreamResult (torch-side module, imported only when used)

    @property
    def round_trip_ok(self) -> bool:
        return all(c.passed for c in self.round_trip) and all(e["round_trip"]["passed"] for e in self.extra.values())

    @property
    def bits_per_byte(self) -> float | None:
        return self.downstream.bits_per_byte if self.downstream is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "engine": self.engine,
            "vocab_size": self.vocab_size,
            "source": self.source,
            "path": self.path,
            "round_trip_ok": self.round_trip_ok,
            "bits_per_byte": self.bits_per_byte,
            "heldout": self.heldout.to_dict(),
            "round_trip": [c.to_dict() for c in self.round_trip],
            "encode": self.encode,
            "training": self.training.to_dict() if self.training else None,
            "extra": self.extra,
            "downstream": self.downstream.to_dict() if self.downstream is not None else None,
        }


@dataclass
class ComparisonResult:
    """The comparison, best first (see :attr:`sorted_by`); ``to_json`` is what ``--json`` writes."""

    tokenizers: list[TokenizerResult]
    sorted_by: str
    config: CompareConfig
    corpus: dict[str, Any]
    machine: dict[str, Any]
    command: str = ""
    started: str = ""
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "started": self.started,
            "wall_seconds": self.wall_seconds,
            "sorted_by": self.sorted_by,
            "machine": self.machine,
            "corpus": self.corpus,
            "config": self.config.to_dict(),
            "round_trip_definition": ROUND_TRIP_DEFINITION,
            "adversarial_cases": list(ADVERSARIAL_CASES),
            "tokenizers": [t.to_dict() for t in self.tokenizers],
        }

    def save_json(self, path: PathLike) -> Path:
        return atomic_write_json(path, self.to_json())

    def verdict(self) -> str:
        """One sentence: what the figures say to pick (lowest bpb; best compression; fastest encode)."""
        if not self.tokenizers:
            return "no tokenizers were compared"
        best = self.tokenizers[0]
        squeeze = max(self.tokenizers, key=lambda t: t.heldout.bytes_per_token)
        fast = max(self.tokenizers, key=lambda t: t.encode.get("batch_mb_s", 0.0))
        parts = []
        if self.sorted_by == SORT_BPB:
            runner = f" (next: {self.tokenizers[1].name}, {self.tokenizers[1].bits_per_byte:.4f})" if len(self.tokenizers) > 1 else ""
            parts.append(
                f"lowest held-out bits per byte after {self.config.downstream_seconds:g} s of GPT training: "
                f"{best.name} ({best.bits_per_byte:.4f}){runner}"
            )
        parts.append(f"best compression: {squeeze.name} ({squeeze.heldout.bytes_per_token:.3f} bytes/token)")
        parts.append(f"fastest encode_batch: {fast.name} ({fast.encode.get('batch_mb_s', 0.0):.1f} MB/s)")
        return "; ".join(parts)


# ----------------------------------------------------------------- the table
def _f(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (terminal and HTML), best first."""
    head = ["#", "tokenizer", "vocab", "bpb", "steps", "bytes/tok", "tok/word", "vocab used",
            "enc MB/s", "batch MB/s", "train s", "peak RSS MB", "round trip"]
    rows = []
    for rank, t in enumerate(result.tokenizers, 1):
        ds, tr = t.downstream, t.training
        passed = sum(c.passed for c in t.round_trip) + sum(e["round_trip"]["passed"] for e in t.extra.values())
        total = len(t.round_trip) + len(t.extra)
        rows.append([
            str(rank), t.name, f"{t.vocab_size:,}", _f(t.bits_per_byte, ".4f"), f"{ds.steps:,}" if ds else "-",
            _f(t.heldout.bytes_per_token, ".3f"), _f(t.heldout.tokens_per_word, ".3f"),
            f"{t.heldout.vocab_share_used:.1%}", _f(t.encode.get("single_mb_s"), ".2f"), _f(t.encode.get("batch_mb_s"), ".2f"),
            _f(tr.seconds if tr else None, ".2f"), _f(tr.peak_rss_mb if tr else None, ".0f"),
            f"{passed}/{total}" + ("" if passed == total else " FAIL"),
        ])
    return head, rows


def format_table(result: ComparisonResult) -> str:
    """The summary table as aligned text, best first, with what it is sorted by."""
    head, rows = table_rows(result)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    what = ("held-out bits per byte of the same GPT after the same training time (lower is better)"
            if result.sorted_by == SORT_BPB else "held-out bytes per token (higher is better; no downstream training)")
    return f"sorted by {what}\n" + "\n".join(lines)


# ----------------------------------------------------------------- the run
@dataclass
class _Texts:
    train: Corpus
    heldout: list[str]
    heldout_source: str
    train_source: str


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def _read_file(path: PathLike) -> str:
    return "".join(Corpus.from_file(path).iter_documents())


def _prepare_texts(corpus: Corpus, heldout: PathLike | Sequence[str] | None, fraction: float, work: Path) -> _Texts:
    """Training corpus and held-out documents (see the module docstring)."""
    if heldout is not None and not isinstance(heldout, (str, os.PathLike)):
        docs = [str(d) for d in heldout]
        return _Texts(corpus, [d for d in docs if d], f"{len(docs)} given texts", corpus.describe())
    if heldout is not None:
        path = Path(heldout)
        docs = [_read_file(path)]
        kept = tuple(f for f in corpus.files if not _same_file(f, path))
        if len(kept) != len(corpus.files):
            if not kept:
                raise CorpusError(f"the held-out file {path} is the whole corpus; give a corpus with other text to train on")
            corpus = replace(corpus, files=kept)
            return _Texts(corpus, docs, str(path), f"{corpus.describe()} ({path.name} left out)")
        return _Texts(corpus, docs, str(path), corpus.describe())
    train_dir = work / "text" / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    docs_iter, held = split_holdout(corpus.iter_documents(), fraction=fraction)
    n = 0
    for n, doc in enumerate(docs_iter, 1):
        atomic_write_text(train_dir / f"{n:07d}.txt", doc)
    if n == 0:
        raise CorpusError(f"{corpus.describe()} has no text to train on")
    return _Texts(
        Corpus.from_dir(train_dir), held, f"the last {fraction:.0%} of every document of {corpus.describe()}",
        f"{corpus.describe()} without the held-out tails ({n} documents, copied to {train_dir})",
    )


def _machine(threads: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("microtransformer", "torch", "numpy", "tiktoken", "rustbpe", "tokenizers", "sentencepiece"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "versions": versions,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _unique_name(name: str, taken: set[str], hint: str) -> str:
    if name not in taken:
        return name
    candidate = f"{name} ({hint})"
    k = 2
    while candidate in taken:
        candidate, k = f"{name} ({hint} {k})", k + 1
    return candidate


def _measure(
    tok: MicroTransformerTokenizer, heldout: list[str], extra: Mapping[str, str], threads: int
) -> tuple[TextStats, list[RoundTripCheck], dict[str, dict[str, Any]]]:
    """Figures and round-trip checks of one tokenizer on the held-out text, the adversarial set and the extras."""
    ids = tok.encode_batch(heldout, num_threads=threads)
    stats = text_stats(tok, heldout, ids)
    checks = (round_trip_check(tok, f"held-out document {k}", d, i) for k, (d, i) in enumerate(zip(heldout, ids)))
    failed = [c for c in checks if not c.passed]
    held = RoundTripCheck(
        "held-out text", not failed,
        f"{len(failed)} of {len(heldout)} documents differ; {failed[0].name}: {failed[0].detail}" if failed
        else f"{len(heldout)} document(s), {stats.bytes:,} bytes, {stats.tokens:,} tokens",
    )
    extras = {}
    for label, text in extra.items():
        e_ids = tok.encode(text)
        extras[label] = {**text_stats(tok, [text], [e_ids]).to_dict(), "round_trip": round_trip_check(tok, label, text, e_ids).to_dict()}
    return stats, [held, *adversarial_checks(tok)], extras


def compare_tokenizers(
    corpus: Corpus | PathLike | None = None,
    *,
    heldout: PathLike | Sequence[str] | None = None,
    tokenizer_paths: Sequence[PathLike] = (),
    extra_files: Mapping[str, PathLike] | None = None,
    config: CompareConfig | None = None,
    work_dir: PathLike | None = None,
    command: str = "",
    show_progress: bool = True,
) -> ComparisonResult:
    """Train/load, measure and (``downstream_seconds > 0``) train a GPT per tokenizer; see the module docstring.

    ``corpus``: a :class:`Corpus`, a file or folder path, or None (the
    built-in corpus). ``work_dir`` keeps the trained tokenizers, shards and
    GPT runs (it must be empty or new); by default they go to a temporary
    folder that is removed. One tqdm bar covers the whole job.
    """
    config = config or CompareConfig()
    if not config.engines and not tokenizer_paths:
        raise ConfigError("nothing to compare: give --engines, --tokenizer_path, or both")
    if corpus is None:
        corpus = Corpus.builtin()
    elif not isinstance(corpus, Corpus):
        corpus = Corpus.from_path(corpus)
    extra = {label: _read_file(path) for label, path in (extra_files or {}).items()}
    threads = config.threads or _torch_threads()
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = _machine(threads)
    with ExitStack() as stack:
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mtx-compare-")))
        else:
            work = Path(work_dir)
            if work.exists() and any(work.iterdir()):
                raise ConfigError(f"--work_dir {work} is not empty; choose a new or empty folder (nothing was overwritten)")
            work.mkdir(parents=True, exist_ok=True)
        texts = _prepare_texts(corpus, heldout, config.holdout_fraction, work)
        if not texts.heldout or not any(texts.heldout):
            raise CorpusError("the held-out text is empty; pass a --heldout_file or a larger --holdout_fraction")
        pairs = [(e, v) for e in config.engines for v in config.vocab_sizes]
        n_tok = len(pairs) + len(tokenizer_paths)
        downstream = config.downstream_seconds > 0
        rounds = math.ceil(config.downstream_seconds / min(config.slice_seconds, config.downstream_seconds)) if downstream else 0
        bar = stack.enter_context(tqdm(
            total=2 * n_tok + 1 + (n_tok * (rounds + 2) if downstream else 0), desc="compare", unit="task",
            disable=not show_progress, dynamic_ncols=True,
        ))

        def tick(what: str) -> None:
            if bar.n >= bar.total:
                bar.total += 1
            bar.set_postfix_str(what, refresh=False)
            bar.update(1)

        toks: dict[str, MicroTransformerTokenizer] = {}
        meta: dict[str, dict[str, Any]] = {}
        for engine, vocab in pairs:
            name = f"{engine}-{vocab}"
            out = work / "tokenizers" / name
            bar.set_postfix_str(f"train {name}")
            measured = train_in_subprocess(texts.train, engine, vocab, out, threads=threads)
            toks[name] = MicroTransformerTokenizer.from_pretrained(out)
            meta[name] = {"source": "trained", "path": str(out), "training": measured}
            tick(f"trained {name}")
        for path in tokenizer_paths:
            tok = MicroTransformerTokenizer.from_pretrained(path)
            name = _unique_name(f"{tok.engine_name}-{tok.vocab_size}", set(toks), Path(path).name)
            toks[name] = tok
            meta[name] = {"source": str(path), "path": str(path), "training": None}
            tick(f"loaded {name}")
        if downstream:
            for name, tok in toks.items():
                if tok.bos_id is None and tok.eos_id is None:
                    raise DataError(
                        f"{name} has neither a BOS nor an EOS token to separate documents for GPT training; "
                        "pass --downstream_seconds 0 to compare it without the GPT"
                    )
        results: dict[str, TokenizerResult] = {}
        for name, tok in toks.items():
            stats, checks, extras = _measure(tok, texts.heldout, extra, threads)
            results[name] = TokenizerResult(
                name=name, engine=tok.engine_name, vocab_size=tok.vocab_size, source=meta[name]["source"],
                path=meta[name]["path"], heldout=stats, round_trip=checks, training=meta[name]["training"], extra=extras,
            )
            tick(f"measured {name}")
        speeds = encode_speeds(toks, paragraphs(texts.heldout), threads=threads, repeats=config.speed_repeats)
        for name, s in speeds.items():
            results[name].encode = s
        tick("encode speed")
        if downstream:
            for name, ds in _downstream(toks, texts, config, work, threads, tick).items():
                results[name].downstream = ds
        ordered = _sorted(list(results.values()), downstream)
        corpus_info = {
            "train": texts.train_source,
            "train_file_bytes": texts.train.file_bytes,
            "heldout": texts.heldout_source,
            "heldout_documents": len(texts.heldout),
            "heldout_bytes": sum(len(d.encode("utf-8")) for d in texts.heldout),
            "extra_files": {label: {"path": str(p), "bytes": len(extra[label].encode("utf-8"))} for label, p in (extra_files or {}).items()},
            "work_dir": str(work) if work_dir is not None else None,
        }
        machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        machine["device"] = next((t.downstream.device for t in ordered if t.downstream is not None), None)
        machine["precision"] = next((t.downstream.precision for t in ordered if t.downstream is not None), None)
    return ComparisonResult(
        tokenizers=ordered, sorted_by=SORT_BPB if downstream else SORT_BYTES_PER_TOKEN, config=config,
        corpus=corpus_info, machine=machine, command=command, started=started, wall_seconds=time.perf_counter() - t0,
    )


def _sorted(results: list[TokenizerResult], downstream: bool) -> list[TokenizerResult]:
    if downstream:
        return sorted(results, key=lambda t: (math.isnan(t.bits_per_byte), t.bits_per_byte))
    return sorted(results, key=lambda t: -t.heldout.bytes_per_token)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _downstream(
    toks: Mapping[str, MicroTransformerTokenizer], texts: _Texts, config: CompareConfig, work: Path, threads: int,
    tick: Callable[[str], None],
) -> dict[str, Any]:
    """Shards per tokenizer (the training text, no val split: the held-out text is the val), then the GPT runs."""
    import torch

    from microtransformer.evaluation.downstream import DownstreamRun, train_interleaved

    runs = []
    for name, tok in toks.items():
        shards = work / "shards" / _slug(name)
        prepare_shards(texts.train, tok, shards, val_fraction=0.0, num_threads=threads, overwrite=True, show_progress=False)
        runs.append(DownstreamRun(name, tok, shards, texts.heldout, work / "runs" / _slug(name)))
        tick(f"shards {name}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train_interleaved(
            runs, seconds=config.downstream_seconds, slice_seconds=config.slice_seconds,
            model_config=config.model_config(), train_config=config.train_config(),
            n_samples=config.n_samples, sample_bytes=config.sample_bytes, on_progress=tick,
        )
    finally:
        torch.set_num_threads(before)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


