"""``mtx autoencoder pretrain | export | eval | analyze``: the learned FSQ tokenizer.

A typical session::

    mtx autoencoder pretrain --data_dir data/ --exclude pride_and_prejudice.txt \\
        --config configs/autoencoder.json --steps 20000 --checkpoint_dir ckpt/
    mtx autoencoder eval --phase after --model ckpt/checkpoint_best --output after.json
    mtx autoencoder export --checkpoint ckpt/checkpoint_best --vocab_size 32768 --output_dir tok/
    mtx autoencoder analyze --checkpoint tok/ --heldout_file data/pride_and_prejudice.txt
    mtx autoencoder eval --compare before.json after.json --report report.html --training_state ckpt/

Commands that need text (export, eval, analyze) default to the corpus the
checkpoint was pre-trained on (recorded in its ``config.json``), so the
validation split is the same one training held out.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

from microtransformer.cli.args import fraction, nonneg_float, nonneg_int, positive_float, positive_int, utf8_text
from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.io import atomic_write_json, read_json
from microtransformer.autoencoder.vocab import STRATEGIES

DEFAULT_CHECKPOINT_DIR = "autoencoder_ckpt"
# PretrainConfig fields settable from the command line; the config validates ranges the types do not
_PRETRAIN_FLAGS = (
    ("steps", positive_int), ("batch_size", positive_int), ("lr", positive_float), ("warmup_steps", nonneg_int),
    ("checkpoint_every", positive_int), ("eval_every", positive_int), ("keep_last", positive_int),
    ("log_every", positive_int), ("seed", nonneg_int), ("val_fraction", fraction), ("sample_alpha", nonneg_float),
    ("weight_decay", nonneg_float), ("max_seconds", nonneg_float), ("min_lr_ratio", nonneg_float),
    ("encoder_fraction", positive_float), ("piece_share", fraction), ("n_pieces", nonneg_int),
    ("augment_share", fraction), ("separation_weight", nonneg_float), ("separation_margin", positive_float),
)


# ---------------------------------------------------------------- arguments
def _add_corpus(p: argparse.ArgumentParser, recorded_default: bool) -> None:
    from microtransformer.cli.tokenizer import add_corpus_args

    add_corpus_args(p)
    p.add_argument(
        "--exclude", nargs="*", default=None,
        help="file names to leave out of --data_dir (e.g. a held-out book)"
        + ("; default: what the checkpoint recorded" if recorded_default else ""),
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("autoencoder", help="pre-train, export, evaluate and analyze the learned FSQ tokenizer")
    sub = p.add_subparsers(dest="autoencoder_command", metavar="SUBCOMMAND")
    sub.required = True

    t = sub.add_parser("pretrain", help="pre-train the chunk auto-encoder with checkpoints")
    _add_corpus(t, recorded_default=False)
    t.add_argument("--config", help="JSON with 'model' and 'pretrain' sections (e.g. configs/autoencoder.json)")
    t.add_argument("--preset", choices=("design", "cpu", "tiny"), help="model preset (overridden by --config's model)")
    t.add_argument("--checkpoint_dir", default=None, help=f"where checkpoints go (default {DEFAULT_CHECKPOINT_DIR}/, or the --resume checkpoint's folder)")
    t.add_argument("--resume", help="continue from a checkpoint_step_N directory")
    for name, typ in _PRETRAIN_FLAGS:
        t.add_argument(f"--{name}", type=typ, default=None, help=f"override pretrain.{name}")
    t.add_argument("--num_threads", type=positive_int, default=None, help="torch CPU threads")
    t.add_argument("--device", default="cpu")
    t.add_argument("--no_progress", action="store_true", help="no progress bar")
    t.set_defaults(func=run_pretrain)

    e = sub.add_parser("export", help="build a tokenizer directory from a checkpoint")
    e.add_argument("--checkpoint", required=True, help="checkpoint_step_N or checkpoint_best directory")
    e.add_argument("--vocab_size", type=positive_int, default=32768, help="total vocab: 256 bytes + codes + special tokens")
    e.add_argument("--output_dir", required=True)
    e.add_argument("--special_tokens", type=utf8_text, nargs="*", default=None, help="default: bos/eos/pad/mask + chat tokens")
    e.add_argument("--strategy", choices=STRATEGIES, default="compression",
                   help="compression: verified substrings pruned to the fewest tokens on the corpus (default); "
                        "frequency: the most frequent whole chunks, then --piece_fraction pieces")
    e.add_argument("--piece_fraction", type=fraction, default=0.0,
                   help="frequency strategy: share of the codes kept for verified prefix/suffix pieces")
    _add_corpus(e, recorded_default=True)
    e.add_argument("--num_threads", type=positive_int, default=None)
    e.set_defaults(func=run_export)

    v = sub.add_parser("eval", help="reconstruction test (network alone, and after fallback for a tokenizer)")
    v.add_argument("--phase", choices=("before", "after", "final"), default="after",
                   help="before: untrained network of --model's config; after: a checkpoint; final: a tokenizer dir")
    v.add_argument("--model", help="checkpoint dir, tokenizer dir, or (phase before) a config JSON")
    v.add_argument("--output", help="results JSON path")
    v.add_argument("--text_file", nargs="*", default=(), help="held-out text files: bytes/token and fallback rate (final)")
    v.add_argument("--no_val", action="store_true", help="skip the validation split (sentences only)")
    v.add_argument("--compare", nargs="+", help="results JSON files to put side by side in --report")
    v.add_argument("--report", help="HTML report path")
    v.add_argument("--training_state", help="checkpoint dir or training_state.json for training curves in the report")
    v.add_argument("--analysis", help="analyze --output JSON for codebook plots in the report")
    _add_corpus(v, recorded_default=True)
    v.add_argument("--num_threads", type=positive_int, default=None)
    v.set_defaults(func=run_eval)

    a = sub.add_parser("analyze", help="code frequencies, collisions, top-k coverage, utilization")
    a.add_argument("--checkpoint", required=True, help="checkpoint dir or exported tokenizer dir")
    a.add_argument("--heldout_file", nargs="*", default=(), help="held-out text for coverage/utilization (default: val split)")
    a.add_argument("--ks", type=positive_int, nargs="+", default=None, help="top-k vocab sizes (default 1024 4096 8192 16384 32768)")
    a.add_argument("--output", help="analysis JSON path")
    a.add_argument("--report", help="HTML report with the plots")
    _add_corpus(a, recorded_default=True)
    a.add_argument("--num_threads", type=positive_int, default=None)
    a.set_defaults(func=run_analyze)


# ---------------------------------------------------------------- helpers
def _threads(args: argparse.Namespace) -> None:
    from microtransformer.device import set_num_threads

    set_num_threads(getattr(args, "num_threads", None))


def _read_json(path: Path, what: str, error: type[Exception] = CheckpointError) -> Any:
    """A JSON file the user pointed at; damage is a typed one-line error, not a traceback."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is damaged or not JSON ({exc})") from None


def _checkpoint_config(path: Path) -> dict[str, Any]:
    """``config.json`` of an auto-encoder checkpoint directory, checked to be a JSON object."""
    data = _read_json(path / "config.json", "the checkpoint config")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path / 'config.json'} is not an auto-encoder checkpoint config (not a JSON object)")
    return data


def _data_record(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data_file": args.data_file, "data_dir": args.data_dir, "corpus": args.corpus,
        "errors": args.errors, "exclude": list(args.exclude or []),
    }


def _corpus(record: dict[str, Any]) -> Any:
    from microtransformer.data.corpus import Corpus

    corpus = Corpus.from_args(
        data_file=record.get("data_file"), data_dir=record.get("data_dir"), corpus=record.get("corpus"),
        errors=record.get("errors") or "strict",
    )
    exclude = set(record.get("exclude") or [])
    if exclude:
        if not corpus.files:
            raise ConfigError("--exclude only applies to --data_dir corpora")
        kept = tuple(f for f in corpus.files if f.name not in exclude and str(f) not in exclude)
        missing = exclude - {f.name for f in corpus.files} - {str(f) for f in corpus.files}
        if missing:
            raise ConfigError(f"--exclude names files not in the corpus: {sorted(missing)}")
        if not kept:
            raise ConfigError("--exclude removed every file of the corpus")
        corpus = dataclasses.replace(corpus, files=kept)
    return corpus


def _recorded_data(args: argparse.Namespace, checkpoint: Path | None) -> dict[str, Any]:
    """Corpus flags if any were given, else what the checkpoint recorded, else the built-in corpus."""
    if args.data_file or args.data_dir or args.corpus:
        return _data_record(args)
    if checkpoint is not None and (checkpoint / "config.json").is_file():
        rec = _checkpoint_config(checkpoint).get("data")
        if rec:
            if args.exclude is not None:
                rec = {**rec, "exclude": list(args.exclude)}
            return rec
    return _data_record(args)


def _load_config_file(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise ConfigError(f"--config {path} does not exist") from None
    except ValueError as exc:
        raise ConfigError(f"--config {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not set(data) <= {"model", "pretrain", "comment"}:
        raise ConfigError(f"--config {path} must be an object with 'model' and/or 'pretrain' sections")
    return dict(data.get("model") or {}), dict(data.get("pretrain") or {})


def _model_config(model_section: dict[str, Any], preset: str | None) -> Any:
    from microtransformer.autoencoder.model import AutoEncoderConfig

    section = dict(model_section)
    base = AutoEncoderConfig.preset(section.pop("preset", None) or preset or "design")
    return AutoEncoderConfig.from_dict({**base.to_dict(), **section})


def _val_split(record: dict[str, Any], pretrain: dict[str, Any], max_chunk_len: int) -> tuple[list[bytes], list[int], Counter[bytes]]:
    """The deterministic train/val split the pre-training used: (val chunks, val counts, train counts)."""
    from microtransformer.autoencoder.pretrain import ChunkDataset, PretrainConfig

    cfg = PretrainConfig.from_dict(pretrain) if pretrain else PretrainConfig()
    ds = ChunkDataset.from_documents(
        _corpus(record).iter_documents(progress=True), max_chunk_len=max_chunk_len, val_fraction=cfg.val_fraction,
        split_block_chars=cfg.split_block_chars, seed=cfg.seed, pattern=cfg.pattern,
    )
    vc, vn = ds.validation_set(cfg.val_max_unique)
    return vc, vn, Counter(dict(zip(ds.train_chunks, ds.train_counts)))


def _is_tokenizer_dir(path: Path) -> bool:
    from microtransformer.tokenization.base import is_saved_tokenizer_dir

    return is_saved_tokenizer_dir(path)


def _checkpoint_meta(path: Path) -> dict[str, Any]:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{path} has no config.json; pass a checkpoint_step_N / checkpoint_best directory")
    return _checkpoint_config(path)


# ---------------------------------------------------------------- commands
def run_pretrain(args: argparse.Namespace) -> int:
    from microtransformer.autoencoder.pretrain import PretrainConfig, pretrain_autoencoder

    _threads(args)
    model_section, pretrain_section = _load_config_file(args.config) if args.config else ({}, {})
    resume = Path(args.resume) if args.resume else None
    model_config = None
    data = _data_record(args)
    if resume is not None:
        meta = _checkpoint_meta(resume)
        base_pretrain = dict(meta.get("pretrain") or {})
        base_pretrain.update(pretrain_section)
        pretrain_section = base_pretrain
        if not (args.data_file or args.data_dir or args.corpus) and meta.get("data"):
            data = meta["data"]
        if args.config or args.preset:
            model_config = _model_config(model_section, args.preset)
    else:
        model_config = _model_config(model_section, args.preset)
    for name, _ in _PRETRAIN_FLAGS:
        value = getattr(args, name)
        if value is not None:
            pretrain_section[name] = value
    config = PretrainConfig.from_dict(pretrain_section)
    ckpt_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else (resume.parent if resume else Path(DEFAULT_CHECKPOINT_DIR))
    corpus = _corpus(data)
    print(f"pre-training the chunk auto-encoder on {corpus.describe()} for {config.steps} steps -> {ckpt_dir}/")
    start = time.perf_counter()
    result = pretrain_autoencoder(
        corpus.iter_documents(progress=not args.no_progress),
        model_config=model_config,
        config=config,
        checkpoint_dir=ckpt_dir,
        resume=resume,
        device=args.device,
        progress=not args.no_progress,
        extra_config={"data": data},
    )
    seconds = time.perf_counter() - start
    ev = result.last_eval or {}
    print(f"step:                 {result.step}")
    print(f"wall time:            {seconds:.1f} s")
    if ev:
        print(f"val char accuracy:    {ev['char_accuracy']:.4f}")
        print(f"val exact chunks:     {ev['exact_rate']:.4f}")
        print(f"val distinct codes:   {int(ev['distinct_codes'])} for {int(ev['chunks'])} unique chunks")
    if result.best_val_char_accuracy is not None:
        print(f"best val char acc:    {result.best_val_char_accuracy:.4f} ({result.best_checkpoint})")
    print(f"last checkpoint:      {result.last_checkpoint}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from microtransformer.tokenization import MicroTransformerTokenizer

    _threads(args)
    ckpt = Path(args.checkpoint)
    _checkpoint_meta(ckpt)
    record = _recorded_data(args, ckpt)
    corpus = _corpus(record)
    pattern = (_checkpoint_config(ckpt).get("pretrain") or {}).get("pattern")
    print(f"building a vocabulary of {args.vocab_size} from {ckpt} on {corpus.describe()}")
    start = time.perf_counter()
    tok = MicroTransformerTokenizer.train_from_iterator(
        corpus.iter_documents(progress=True),
        engine="autoencoder",
        vocab_size=args.vocab_size,
        special_tokens=args.special_tokens,
        pattern=pattern,
        checkpoint=str(ckpt),
        strategy=args.strategy,
        piece_fraction=args.piece_fraction,
        show_progress=True,
    )
    out = tok.save(args.output_dir)
    vocab = tok.engine_config.get("vocabulary", {})
    print(f"vocab size:      {tok.vocab_size} (256 bytes + {len(tok.codes)} codes + {len(tok.special_tokens)} special)")
    print(f"strategy:        {vocab.get('strategy')}")
    print(f"strings tried:   {vocab.get('candidates_tried')} of {vocab.get('candidates_total')} "
          f"({vocab.get('rejected_mismatch')} not reconstructed, {vocab.get('rejected_collision')} collisions)")
    print(f"pieces:          {vocab.get('pieces_accepted', 0)} sub-chunk pieces accepted of {vocab.get('pieces_tried', 0)} tried")
    print(f"coverage:        {100 * vocab.get('occurrence_coverage', 0):.2f}% of chunk occurrences are one token")
    print(f"time:            {time.perf_counter() - start:.1f} s")
    print(f"saved to:        {out}")
    return 0


def _print_summary(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(f"phase {result['phase']}: {s['sentences_perfect']}/{s['sentences_total']} standard sentences perfect (network alone)")
    print(f"  sentence char accuracy {s['char_accuracy']:.4f}, exact chunks {s['exact_chunk_rate']:.4f}, "
          f"mean Levenshtein {s['mean_levenshtein']:.2f}")
    if "val_char_accuracy" in s:
        print(f"  val char accuracy {s['val_char_accuracy']:.4f}, exact chunks {s['val_exact_chunk_rate']:.4f} "
              f"({s['val_occurrences']:,} occurrences)")
    after = s.get("after_fallback")
    if after:
        print(f"  after fallback: {after['sentences_perfect']}/{after['sentences_total']} perfect, "
              f"bytes/token {after['bytes_per_token_sentences']:.3f} (sentences)"
              + (f", {after['val_bytes_per_token']:.3f} (val), fallback rate {after['val_fallback_rate']:.4f}" if "val_bytes_per_token" in after else ""))
        for k, v in after.items():
            if k.endswith("_bytes_per_token") and not k.startswith("val_"):
                name = k[: -len("_bytes_per_token")]
                print(f"  {name}: bytes/token {v:.3f}, fallback rate {after[name + '_fallback_rate']:.4f}")


def run_eval(args: argparse.Namespace) -> int:
    _threads(args)
    if args.compare:
        return _run_compare(args)
    if not args.model:
        raise ConfigError("pass --model (a checkpoint or tokenizer dir), or --compare A.json B.json --report out.html")
    import torch

    from microtransformer.data.corpus import read_text_file
    from microtransformer.autoencoder.evaluate import evaluate_model, evaluate_tokenizer
    from microtransformer.autoencoder.model import ChunkAutoEncoder, load_autoencoder

    path = Path(args.model)
    pretrain: dict[str, Any] = {}
    texts = {Path(f).stem: read_text_file(f, errors="strict") for f in args.text_file}
    extra = {"model_path": str(path)}
    tok = None
    if args.phase == "final" or _is_tokenizer_dir(path):
        from microtransformer.tokenization import MicroTransformerTokenizer

        tok = MicroTransformerTokenizer.from_pretrained(path)
        if tok.engine_name != "autoencoder":
            raise ConfigError(f"{path} is a {tok.engine_name} tokenizer; eval needs an autoencoder tokenizer or checkpoint")
        model = tok.model
        src = tok.engine_config.get("source", {}).get("checkpoint")
        ckpt_for_data = Path(src) if src and Path(src).is_dir() else None
    elif path.suffix == ".json" and path.is_file():  # phase before from a config file
        model_section, pretrain = _load_config_file(str(path))
        torch.manual_seed(int(pretrain.get("seed", 0)))
        model = ChunkAutoEncoder(_model_config(model_section, None)).eval()
        ckpt_for_data = None
    else:
        meta = _checkpoint_meta(path)
        pretrain = dict(meta.get("pretrain") or {})
        if args.phase == "before":
            torch.manual_seed(int(pretrain.get("seed", 0)))  # the same init pre-training started from
            model = ChunkAutoEncoder(load_autoencoder(path).config).eval()
        else:
            model = load_autoencoder(path)
        ckpt_for_data = path
    if ckpt_for_data is not None and not pretrain and (ckpt_for_data / "config.json").is_file():
        pretrain = dict(_checkpoint_config(ckpt_for_data).get("pretrain") or {})
    val_chunks: list[bytes] = []
    val_counts: list[int] = []
    if not args.no_val:
        val_chunks, val_counts, _ = _val_split(_recorded_data(args, ckpt_for_data), pretrain, model.config.max_chunk_len)
    if tok is not None:
        result = evaluate_tokenizer(tok, val_chunks=val_chunks, val_counts=val_counts, texts=texts, phase=args.phase, extra=extra)
    else:
        result = evaluate_model(model, val_chunks=val_chunks, val_counts=val_counts, phase=args.phase, extra=extra)
    _print_summary(result)
    if args.output:
        atomic_write_json(args.output, result)
        print(f"results written to {args.output}")
    if args.report:
        from microtransformer.evaluation.report import write_report

        write_report(args.report, results={args.phase: result}, training_state=_training_state(args.training_state))
        print(f"report written to {args.report}")
    return 0


def _training_state(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        p = p / "training_state.json"
    if not p.is_file():
        raise ConfigError(f"--training_state {path}: no training_state.json there")
    return _read_json(p, "--training_state", ConfigError)


def _run_compare(args: argparse.Namespace) -> int:
    from microtransformer.evaluation.report import write_report

    if not args.report:
        raise ConfigError("--compare needs --report out.html")
    results: dict[str, Any] = {}
    for f in args.compare:
        try:
            r = read_json(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read results {f} ({exc}); write it with `mtx autoencoder eval --output`") from None
        summary = r.get("summary") if isinstance(r, dict) else None
        if not isinstance(summary, dict) or not {"sentences_perfect", "sentences_total", "char_accuracy"} <= set(summary):
            raise ConfigError(f"{f} is not a results file of `mtx autoencoder eval --output` (no summary); pass those files to --compare")
        name = r.get("phase", Path(f).stem)
        if name in results:
            name = f"{name} ({Path(f).name})"
        results[name] = r
    analysis = _read_json(Path(args.analysis), "--analysis", ConfigError) if args.analysis else None
    write_report(args.report, results=results, training_state=_training_state(args.training_state), codebook=analysis)
    for name, r in results.items():
        s = r["summary"]
        print(f"{name:>12}: {s['sentences_perfect']}/{s['sentences_total']} sentences perfect, "
              f"char acc {s['char_accuracy']:.4f}" + (f", val char acc {s['val_char_accuracy']:.4f}" if "val_char_accuracy" in s else ""))
    print(f"report written to {args.report}")
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from microtransformer.data.corpus import read_text_file
    from microtransformer.autoencoder.codebook import DEFAULT_KS, analyze_codebook, format_table
    from microtransformer.autoencoder.model import load_autoencoder
    from microtransformer.autoencoder.chunking import count_chunks

    _threads(args)
    path = Path(args.checkpoint)
    vocab_codes = None
    pretrain: dict[str, Any] = {}
    ckpt_for_data: Path | None = path
    if _is_tokenizer_dir(path):
        from microtransformer.tokenization import MicroTransformerTokenizer

        tok = MicroTransformerTokenizer.from_pretrained(path)
        if tok.engine_name != "autoencoder":
            raise ConfigError(f"{path} is a {tok.engine_name} tokenizer; analyze needs an autoencoder tokenizer or checkpoint")
        model, vocab_codes = tok.model, tok.codes
        src = tok.engine_config.get("source", {}).get("checkpoint")
        ckpt_for_data = Path(src) if src and Path(src).is_dir() else None
    else:
        model = load_autoencoder(path)
    if ckpt_for_data is not None and (ckpt_for_data / "config.json").is_file():
        pretrain = dict(_checkpoint_config(ckpt_for_data).get("pretrain") or {})
    val_chunks, val_counts, train_counts = _val_split(_recorded_data(args, ckpt_for_data), pretrain, model.config.max_chunk_len)
    held_texts = [read_text_file(f) for f in args.heldout_file]  # read once: chunk counts, then the tokenizer's ids
    if held_texts:
        held: Counter[bytes] = count_chunks(
            held_texts, max_chunk_len=model.config.max_chunk_len,
            **({"pattern": pretrain["pattern"]} if pretrain.get("pattern") else {}),
        )
    else:
        held = Counter(dict(zip(val_chunks, val_counts)))
    analysis = analyze_codebook(
        model, train_counts, ks=tuple(args.ks or DEFAULT_KS), heldout_counts=held, vocab_codes=vocab_codes, show_progress=True
    )
    if vocab_codes is not None and held_texts and analysis.get("tokenizer"):
        used = {i for text in held_texts for i in tok.encode_ordinary(text) if 256 <= i < tok.n_ordinary}
        analysis["tokenizer"].update(ids_used_heldout=len(used), id_utilization=len(used) / max(len(vocab_codes), 1))
    analysis["source"] = {"checkpoint": str(path), "heldout": list(args.heldout_file) or "val split"}
    print(format_table(analysis))
    if args.output:
        atomic_write_json(args.output, analysis)
        print(f"analysis written to {args.output}")
    if args.report:
        from microtransformer.evaluation.report import write_report

        write_report(args.report, codebook=analysis, title="Auto-encoder codebook analysis")
        print(f"report written to {args.report}")
    return 0


__all__ = ["register", "run_analyze", "run_eval", "run_export", "run_pretrain"]
