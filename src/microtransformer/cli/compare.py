"""``mtx tokenizer compare``: train or load tokenizers, measure them, train the same GPT on each, report.

::

    mtx tokenizer compare --data_dir books/ --heldout_file books/pride.txt \\
        --engines bpe hf-bytelevel sentencepiece --tokenizer_path tok-ae/ \\
        --vocab_sizes 4096 8192 --downstream_seconds 120 --report compare.html --json compare.json

``cli/tokenizer.py`` creates the sub-command with its corpus flags and calls
:func:`add_compare_args`; the comparison's own flags are the fields of
:class:`~microtransformer.evaluation.compare.CompareConfig`, generated from them.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from microtransformer.cli.args import add_config_flags, config_overrides
from microtransformer.data.corpus import Corpus
from microtransformer.device import set_num_threads_from_env
from microtransformer.errors import ConfigError
from microtransformer.evaluation.compare import (
    CompareConfig,
    compare_tokenizers,
    format_table,
)
from microtransformer.evaluation.compare_report import write_compare_report

HELP = "which engine and vocab size for this corpus and model budget: tokenizer figures + a GPT per tokenizer"
DESCRIPTION = (
    "Train every (engine, vocab size) pair (or load --tokenizer_path dirs), measure each on held-out text, train the "
    "same small GPT on each for the same time, and report held-out bits per byte."
)
_IO_FLAGS = ("data_file", "data_dir", "corpus", "errors", "heldout_file", "tokenizer_path", "extra_file", "report",
             "json", "work_dir", "no_progress")


def add_compare_args(p: argparse.ArgumentParser) -> None:
    """Everything but the corpus flags (``add_corpus_args`` adds those)."""
    g = p.add_argument_group("held-out text and tokenizers")
    g.add_argument("--heldout_file", help="held-out text (left out of training if it is in the corpus); "
                   "default: the tail --holdout_fraction of every document")
    g.add_argument("--tokenizer_path", nargs="+", default=[], help="saved tokenizer dirs (or HF tokenizer.json / "
                   "SentencePiece .model files) to compare too")
    g.add_argument("--extra_file", action="append", default=[], metavar="NAME=PATH",
                   help="another sample (other language, code): bytes/token and round trip; repeatable")
    flags = add_config_flags(p.add_argument_group("comparison (a field of CompareConfig)"), CompareConfig)
    o = p.add_argument_group("output")
    o.add_argument("--report", help="self-contained HTML report (tables + plots)")
    o.add_argument("--json", help="all figures as JSON")
    o.add_argument("--work_dir", help="keep the tokenizers, shards and GPT runs here (new or empty folder; default: a temporary one)")
    o.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_compare, compare_flags=flags)


def _extra_files(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--extra_file takes NAME=PATH (e.g. --extra_file german=de.txt), got {v!r}")
        if name in out:
            raise ConfigError(f"--extra_file name {name!r} is given twice")
        if not Path(path).is_file():
            raise ConfigError(f"--extra_file {name}={path}: no such file")
        out[name] = path
    return out


def _command_line(args: argparse.Namespace) -> str:
    """The command as given (the options that were set), for the top of the report."""
    parts = ["mtx", "tokenizer", "compare"]
    for name in (*_IO_FLAGS, *args.compare_flags):
        value = getattr(args, name, None)
        if value in (None, [], False) or (name == "errors" and value == "strict"):
            continue
        if name == "extra_file":
            for v in value:
                parts += ["--extra_file", v]
            continue
        parts.append(f"--{name}")
        if value is not True:
            parts += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return shlex.join(parts)


def run_compare(args: argparse.Namespace) -> int:
    set_num_threads_from_env()
    config = CompareConfig(**config_overrides(args, args.compare_flags))
    extra = _extra_files(args.extra_file)
    corpus = Corpus.from_args(data_file=args.data_file, data_dir=args.data_dir, corpus=args.corpus, errors=args.errors,
                              text_field=args.text_field)
    if not args.verbose:  # one progress bar; per-step INFO (shards written, tokenizers saved) only with -v
        logging.getLogger("microtransformer").setLevel(logging.WARNING)
    with logging_redirect_tqdm():
        result = compare_tokenizers(
            corpus, heldout=args.heldout_file, tokenizer_paths=args.tokenizer_path, extra_files=extra, config=config,
            work_dir=args.work_dir, command=_command_line(args), show_progress=not args.no_progress,
        )
    print(format_table(result))
    print(f"\n{result.verdict()}")
    for t in result.tokenizers:
        for check in t.round_trip:
            if not check.passed:
                print(f"round trip FAILED: {t.name}: {check.name}: {check.detail}")
    if args.json:
        print(f"JSON:   {result.save_json(args.json)}")
    if args.report:
        print(f"report: {write_compare_report(result, args.report)}")
    return 0 if all(t.round_trip_ok for t in result.tokenizers) else 1
