"""``mtx autoencoder pretrain | export | eval | analyze``: the learned FSQ tokenizer.

A typical session::

    mtx autoencoder pretrain --data_dir data/ --exclude pride_and_prejudice.txt --checkpoint_dir ckpt/
    mtx autoencoder pretrain --resume ckpt/checkpoint_step_1000 --steps 2000
    mtx autoencoder eval --phase after --checkpoint ckpt/checkpoint_best --output after.json
    mtx autoencoder export --checkpoint ckpt/checkpoint_best --vocab_size 32768 --output_dir tok/
    mtx autoencoder analyze --checkpoint tok/ --heldout_file data/pride_and_prejudice.txt
    mtx autoencoder eval --compare before.json after.json --report report.html --training_state ckpt/

``pretrain`` takes every field of the model and pre-training configs as a
flag (generated from the dataclasses), over a preset (``--config default``,
``design``, ``cpu``, ``tiny``, or a JSON file). Commands that need text
default to the corpus the checkpoint was pre-trained on (in its run), so the
validation split is the one training held out.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

from microtransformer.autoencoder.chunking import count_chunks
from microtransformer.autoencoder.config import PRESETS, AutoEncoderConfig, PretrainConfig, read_preset
from microtransformer.autoencoder.report import write_report
from microtransformer.autoencoder.results import (
    CodebookAnalysis,
    PretrainHistory,
    ReconstructionResult,
)
from microtransformer.autoencoder.vocab import STRATEGIES, VocabularyReport
from microtransformer.cli.args import (
    add_config_flags,
    config_overrides,
    fraction,
    positive_int,
    utf8_text,
)
from microtransformer.cli.tokenizer import add_corpus_args
from microtransformer.data.corpus import Corpus, read_text_file
from microtransformer.device import set_num_threads
from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.io import atomic_write_json, read_json
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.base import is_saved_tokenizer_dir
from microtransformer.training.distributed import refuse_distributed

DEFAULT_CHECKPOINT_DIR = "autoencoder_ckpt"


# ---------------------------------------------------------------- arguments
def _add_corpus(p: argparse.ArgumentParser, recorded_default: bool) -> None:
    add_corpus_args(p)
    p.add_argument(
        "--exclude", nargs="*", default=None,
        help="file names to leave out of --data_dir (e.g. a held-out book)"
        + ("; default: what the checkpoint recorded" if recorded_default else ""),
    )


def _add_pretrain(sub: Any) -> None:
    t = sub.add_parser("pretrain", help="pre-train the chunk auto-encoder with checkpoints")
    _add_corpus(t, recorded_default=False)
    t.add_argument("--config", "--preset", dest="config",
                   help=f"a preset ({', '.join(PRESETS)}; default: default) or a JSON file with 'model'/'pretrain' sections")
    t.add_argument("--checkpoint_dir", default=None,
                   help=f"the run directory (default {DEFAULT_CHECKPOINT_DIR}/, or the --resume checkpoint's run)")
    t.add_argument("--resume", help="continue from a checkpoint: ckpt/checkpoint_step_N, ckpt/checkpoint_last or the run dir")
    model_flags = add_config_flags(t.add_argument_group("model (a field of AutoEncoderConfig)"), AutoEncoderConfig)
    pretrain_flags = add_config_flags(t.add_argument_group("pre-training (a field of PretrainConfig)"), PretrainConfig)
    t.add_argument("--num_threads", type=positive_int, default=None, help="torch CPU threads")
    t.add_argument("--device", default="cpu")
    t.add_argument("--no_progress", action="store_true", help="no progress bar")
    t.set_defaults(func=run_pretrain, model_flags=model_flags, pretrain_flags=pretrain_flags)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("autoencoder", help="pre-train, export, evaluate and analyze the learned FSQ tokenizer")
    sub = p.add_subparsers(dest="autoencoder_command", metavar="SUBCOMMAND")
    sub.required = True
    _add_pretrain(sub)

    e = sub.add_parser("export", help="build a tokenizer directory from a checkpoint")
    e.add_argument("--checkpoint", required=True, help="a pre-training run dir (its best), checkpoint_best or checkpoint_step_N")
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
                   help="before: untrained network of --checkpoint's config; after: a checkpoint; final: a tokenizer dir")
    v.add_argument("--checkpoint", "--model", dest="checkpoint",
                   help="checkpoint (run dir, checkpoint_best, checkpoint_step_N), tokenizer dir, or (phase before) a preset "
                        "or config JSON; --model is the earlier name")
    v.add_argument("--output", help="results JSON path")
    v.add_argument("--text_file", nargs="*", default=(), help="held-out text files: bytes/token and fallback rate (final)")
    v.add_argument("--no_val", action="store_true", help="skip the validation split (sentences only)")
    v.add_argument("--compare", nargs="+", help="results JSON files to put side by side in --report")
    v.add_argument("--report", help="HTML report path")
    v.add_argument("--training_state", help="a pre-training run (or checkpoint, or training_state.json) for training curves")
    v.add_argument("--analysis", help="analyze --output JSON for codebook plots in the report")
    _add_corpus(v, recorded_default=True)
    v.add_argument("--num_threads", type=positive_int, default=None)
    v.set_defaults(func=run_eval)

    a = sub.add_parser("analyze", help="code frequencies, collisions, top-k coverage, utilization")
    a.add_argument("--checkpoint", required=True, help="a checkpoint (run dir, checkpoint_best, ...) or an exported tokenizer dir")
    a.add_argument("--heldout_file", nargs="*", default=(), help="held-out text for coverage/utilization (default: val split)")
    a.add_argument("--ks", type=positive_int, nargs="+", default=None, help="top-k vocab sizes (default 1024 4096 8192 16384 32768)")
    a.add_argument("--output", help="analysis JSON path")
    a.add_argument("--report", help="HTML report with the plots")
    _add_corpus(a, recorded_default=True)
    a.add_argument("--num_threads", type=positive_int, default=None)
    a.set_defaults(func=run_analyze)


# ---------------------------------------------------------------- helpers
def _read_json(path: Path, what: str, error: type[Exception] = ConfigError) -> Any:
    """A JSON file the user pointed at; damage is a typed one-line error, not a traceback."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is damaged or not JSON ({exc})") from None


def _data_record(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data_file": args.data_file, "data_dir": args.data_dir, "corpus": args.corpus,
        "errors": args.errors, "exclude": list(args.exclude or []), "text_field": args.text_field,
    }


def _corpus(record: dict[str, Any]) -> Corpus:
    corpus = Corpus.from_args(
        data_file=record.get("data_file"), data_dir=record.get("data_dir"), corpus=record.get("corpus"),
        errors=record.get("errors") or "strict", text_field=record.get("text_field") or "text",
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


def _recorded_data(args: argparse.Namespace, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """Corpus flags if any were given, else what the checkpoint recorded, else the built-in corpus."""
    if args.data_file or args.data_dir or args.corpus or not recorded:
        return _data_record(args)
    return {**recorded, "exclude": list(args.exclude)} if args.exclude is not None else recorded


def _val_split(record: dict[str, Any], pretrain: dict[str, Any], model_config: Any) -> tuple[list[bytes], list[int], Counter[bytes]]:
    """The deterministic train/val split the pre-training used: (val chunks, val counts, train counts)."""
    from microtransformer.autoencoder.dataset import ChunkDataset  # torch

    cfg = PretrainConfig.from_dict(pretrain)
    ds = ChunkDataset.from_documents(
        _corpus(record).iter_documents(progress=True), max_chunk_len=model_config.max_chunk_len,
        val_fraction=cfg.val_fraction, split_block_chars=cfg.split_block_chars, seed=cfg.seed, pattern=model_config.pattern,
    )
    vc, vn = ds.validation_set(cfg.val_max_unique)
    return vc, vn, Counter(dict(zip(ds.train_chunks, ds.train_counts)))


def _tokenizer(path: Path, command: str) -> tuple[Any, Any]:
    """An autoencoder tokenizer dir and the checkpoint it was exported from (when that is still there)."""
    from microtransformer.autoencoder.checkpoint import open_checkpoint  # torch

    tok = MicroTransformerTokenizer.from_pretrained(path)
    if tok.engine_name != "autoencoder":
        raise ConfigError(f"{path} is a {tok.engine_name} tokenizer; {command} needs an autoencoder tokenizer or checkpoint")
    src = tok.engine_config.get("source", {}).get("checkpoint")
    try:
        return tok, open_checkpoint(src) if src else None
    except CheckpointError:  # moved or deleted since the export: the corpus flags (or the built-in corpus) decide
        return tok, None


# ---------------------------------------------------------------- pretrain
def _pretrain_configs(args: argparse.Namespace, source: Any) -> tuple[Any, Any]:
    """``(model config or None = the checkpoint's, PretrainConfig)``: preset, then the checkpoint, then flags."""
    preset = read_preset(args.config) if args.config else None
    model_over, pretrain_over = config_overrides(args, args.model_flags), config_overrides(args, args.pretrain_flags)
    if source is None:
        preset = preset or read_preset("default")
        return AutoEncoderConfig.from_dict({**preset.model, **model_over}), PretrainConfig.from_dict({**preset.pretrain, **pretrain_over})
    pretrain = PretrainConfig.from_dict({**source.pretrain, **(preset.pretrain if preset else {}), **pretrain_over})
    if preset is None and not model_over:
        return None, pretrain
    base = preset.model if preset is not None else source.model_config.to_dict()
    return AutoEncoderConfig.from_dict({**base, **model_over}), pretrain


def run_pretrain(args: argparse.Namespace) -> int:
    from microtransformer.autoencoder.checkpoint import open_checkpoint  # torch
    from microtransformer.autoencoder.pretrain import pretrain_autoencoder

    refuse_distributed("mtx autoencoder pretrain")
    set_num_threads(args.num_threads)
    source = open_checkpoint(args.resume, "last") if args.resume else None
    model_config, config = _pretrain_configs(args, source)
    data = _data_record(args)
    if source is not None and not (args.data_file or args.data_dir or args.corpus) and source.data:
        data = source.data
    ckpt_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else (source.home if source else Path(DEFAULT_CHECKPOINT_DIR))
    corpus = _corpus(data)
    print(f"pre-training the chunk auto-encoder on {corpus.describe()} for {config.steps} steps -> {ckpt_dir}/")
    start = time.perf_counter()
    result = pretrain_autoencoder(
        corpus.iter_documents(progress=not args.no_progress), model_config=model_config, config=config,
        checkpoint_dir=ckpt_dir, resume=args.resume, device=args.device, progress=not args.no_progress,
        run_info={"data": data},
    )
    ev = result.last_eval
    print(f"step:                 {result.step}")
    print(f"wall time:            {time.perf_counter() - start:.1f} s")
    if ev is not None:
        print(f"val char accuracy:    {ev.char_accuracy:.4f}")
        print(f"val exact chunks:     {ev.exact_chunk_rate:.4f}")
        print(f"val distinct codes:   {int(ev.distinct_codes or 0)} for {int(ev.chunks or 0)} unique chunks")
    if result.best_val_char_accuracy is not None:
        print(f"best val char acc:    {result.best_val_char_accuracy:.4f} ({result.best_checkpoint})")
    print(f"last checkpoint:      {result.last_checkpoint}")
    if result.interrupted:
        print(f"stopped early; continue with `mtx autoencoder pretrain --resume {ckpt_dir}`")
        return 128 + int(result.stop_signal or 2)  # 130 after Ctrl-C, 143 after SIGTERM
    return 0


# ---------------------------------------------------------------- export
def run_export(args: argparse.Namespace) -> int:
    from microtransformer.autoencoder.checkpoint import open_checkpoint  # torch

    set_num_threads(args.num_threads)
    ref = open_checkpoint(args.checkpoint)
    corpus = _corpus(_recorded_data(args, ref.data))
    print(f"building a vocabulary of {args.vocab_size} from {ref.path} on {corpus.describe()}")
    start = time.perf_counter()
    tok = MicroTransformerTokenizer.train_from_iterator(
        corpus.iter_documents(progress=True), engine="autoencoder", vocab_size=args.vocab_size,
        special_tokens=args.special_tokens, checkpoint=str(ref.path), strategy=args.strategy,
        piece_fraction=args.piece_fraction, show_progress=True,
    )
    out = tok.save(args.output_dir)
    v = VocabularyReport(**tok.engine_config["vocabulary"])
    print(f"vocab size:      {tok.vocab_size} (256 bytes + {len(tok.codes)} codes + {len(tok.special_tokens)} special)")
    print(f"strategy:        {v.strategy}")
    print(f"strings tried:   {v.candidates_tried} of {v.candidates_total} "
          f"({v.rejected_mismatch} not reconstructed, {v.rejected_collision} collisions)")
    print(f"pieces:          {v.pieces_accepted} sub-chunk pieces accepted of {v.pieces_tried} tried")
    print(f"coverage:        {100 * v.occurrence_coverage:.2f}% of chunk occurrences are one token")
    print(f"time:            {time.perf_counter() - start:.1f} s")
    print(f"saved to:        {out}")
    return 0


# ---------------------------------------------------------------- eval
def _print_summary(r: ReconstructionResult) -> None:
    print(f"phase {r.phase}: {r.sentences_perfect}/{r.sentences_total} standard sentences perfect (network alone)")
    print(f"  sentence char accuracy {r.char_accuracy:.4f}, exact chunks {r.exact_chunk_rate:.4f}, "
          f"mean Levenshtein {r.mean_levenshtein:.2f}")
    if r.val is not None:
        print(f"  val char accuracy {r.val.char_accuracy:.4f}, exact chunks {r.val.exact_chunk_rate:.4f} "
              f"({r.val.occurrences:,} occurrences)")
    after = r.after_fallback
    if after is not None:
        print(f"  after fallback: {after.sentences_perfect}/{after.sentences_total} perfect, "
              f"bytes/token {after.bytes_per_token_sentences:.3f} (sentences)"
              + (f", {after.val.bytes_per_token:.3f} (val), fallback rate {after.val.fallback_rate:.4f}" if after.val else ""))
        for name, stats in after.texts.items():
            print(f"  {name}: bytes/token {stats.bytes_per_token:.3f}, fallback rate {stats.fallback_rate:.4f}")


def _eval_subject(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], dict[str, Any] | None]:
    """``(tokenizer or None, network, pre-training config fields, recorded corpus)`` of ``--checkpoint``."""
    import torch

    from microtransformer.autoencoder.checkpoint import open_checkpoint
    from microtransformer.autoencoder.model import ChunkAutoEncoder

    path = Path(args.checkpoint)
    if args.phase == "final" or is_saved_tokenizer_dir(path):
        tok, ref = _tokenizer(path, "eval")
        return tok, tok.model, (ref.pretrain if ref else {}), (ref.data if ref else None)
    if args.phase == "before" and (str(path) in PRESETS or (path.suffix == ".json" and path.is_file())):
        preset = read_preset(path)  # the untrained network of a preset or config file
        torch.manual_seed(int(preset.pretrain.get("seed", 0)))
        return None, ChunkAutoEncoder(AutoEncoderConfig.from_dict(preset.model)).eval(), preset.pretrain, None
    ref = open_checkpoint(path)
    if args.phase == "before":
        torch.manual_seed(int(ref.pretrain.get("seed", 0)))  # the same init pre-training started from
        return None, ChunkAutoEncoder(ref.model_config).eval(), ref.pretrain, ref.data
    return None, ref.load_model(), ref.pretrain, ref.data


def run_eval(args: argparse.Namespace) -> int:
    from microtransformer.autoencoder.evaluate import (  # torch
        evaluate_model,
        evaluate_tokenizer,
    )

    set_num_threads(args.num_threads)
    if args.compare:
        return _run_compare(args)
    if not args.checkpoint:
        raise ConfigError("pass --checkpoint (a checkpoint or tokenizer dir), or --compare A.json B.json --report out.html")
    texts = {Path(f).stem: read_text_file(f, errors="strict") for f in args.text_file}
    tok, model, pretrain, recorded = _eval_subject(args)
    val_chunks: list[bytes] = []
    val_counts: list[int] = []
    if not args.no_val:
        val_chunks, val_counts, _ = _val_split(_recorded_data(args, recorded), pretrain, model.config)
    common = {"val_chunks": val_chunks, "val_counts": val_counts, "phase": args.phase, "model_path": str(args.checkpoint)}
    if tok is not None:
        result = evaluate_tokenizer(tok, texts=texts, **common)
    else:
        result = evaluate_model(model, **common)
    _print_summary(result)
    if args.output:
        atomic_write_json(args.output, result.to_json())
        print(f"results written to {args.output}")
    if args.report:

        write_report(args.report, results={args.phase: result}, history=_history(args.training_state))
        print(f"report written to {args.report}")
    return 0


def _history(path: str | None) -> PretrainHistory | None:
    """Training curves from a run dir (all of it), a checkpoint (up to it) or an earlier ``training_state.json``."""
    if not path:
        return None
    from microtransformer.autoencoder.checkpoint import open_checkpoint  # torch
    from microtransformer.training import checkpoint as run_format

    p = Path(path)
    if p.is_file():
        return PretrainHistory.from_json(_read_json(p, "--training_state"))
    if run_format.is_run_dir(p):
        return PretrainHistory.from_records(run_format.read_metrics(p))
    if (p / "training_state.json").is_file():  # the earlier layout's folder
        return PretrainHistory.from_json(_read_json(p / "training_state.json", "--training_state"))
    try:
        return open_checkpoint(p, "last").history()
    except CheckpointError:
        raise ConfigError(f"--training_state {path}: neither a pre-training run, a checkpoint nor a training_state.json") from None


def _run_compare(args: argparse.Namespace) -> int:
    if not args.report:
        raise ConfigError("--compare needs --report out.html")
    results: dict[str, ReconstructionResult] = {}
    for f in args.compare:
        data = _read_json(Path(f), "results file")
        try:
            r = ReconstructionResult.from_json(data)
        except ConfigError as exc:
            raise ConfigError(f"{f} is {exc}; pass the files `mtx autoencoder eval --output` writes to --compare") from None
        name = r.phase or Path(f).stem
        results[f"{name} ({Path(f).name})" if name in results else name] = r
    analysis = CodebookAnalysis.from_json(_read_json(Path(args.analysis), "--analysis")) if args.analysis else None
    write_report(args.report, results=results, history=_history(args.training_state), codebook=analysis)
    for name, r in results.items():
        print(f"{name:>12}: {r.sentences_perfect}/{r.sentences_total} sentences perfect, char acc {r.char_accuracy:.4f}"
              + (f", val char acc {r.val.char_accuracy:.4f}" if r.val else ""))
    print(f"report written to {args.report}")
    return 0


# ---------------------------------------------------------------- analyze
def run_analyze(args: argparse.Namespace) -> int:
    from microtransformer.autoencoder.checkpoint import open_checkpoint  # torch
    from microtransformer.autoencoder.codebook import (
        DEFAULT_KS,
        analyze_codebook,
        format_table,
    )

    set_num_threads(args.num_threads)
    path = Path(args.checkpoint)
    tok = None
    if is_saved_tokenizer_dir(path):
        tok, ref = _tokenizer(path, "analyze")
        model = tok.model
    else:
        ref = open_checkpoint(path)
        model = ref.load_model()
    val_chunks, val_counts, train_counts = _val_split(_recorded_data(args, ref.data if ref else None), ref.pretrain if ref else {}, model.config)
    held_texts = [read_text_file(f) for f in args.heldout_file]  # read once: chunk counts, then the tokenizer's ids
    if held_texts:
        held = count_chunks(held_texts, max_chunk_len=model.config.max_chunk_len, pattern=model.config.pattern)
    else:
        held = Counter(dict(zip(val_chunks, val_counts)))
    analysis = analyze_codebook(
        model, train_counts, ks=tuple(args.ks or DEFAULT_KS), heldout_counts=held,
        vocab_codes=tok.codes if tok is not None else None, show_progress=True,
    )
    if tok is not None and held_texts and analysis.tokenizer is not None:
        used = {i for text in held_texts for i in tok.encode_ordinary(text) if 256 <= i < tok.n_ordinary}
        analysis.tokenizer.ids_used_heldout = len(used)
        analysis.tokenizer.id_utilization = len(used) / max(len(tok.codes), 1)
    analysis.source = {"checkpoint": str(path), "heldout": list(args.heldout_file) or "val split"}
    print(format_table(analysis))
    if args.output:
        atomic_write_json(args.output, analysis.to_json())
        print(f"analysis written to {args.output}")
    if args.report:

        write_report(args.report, codebook=analysis, title="Auto-encoder codebook analysis")
        print(f"report written to {args.report}")
    return 0


__all__ = ["register", "run_analyze", "run_eval", "run_export", "run_pretrain"]
