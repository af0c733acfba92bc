"""``mtx data prepare``: encode a corpus once into token shards for training.

``mtx data prepare --tokenizer_path tok/ --data_file input.txt --output_dir shards/``
``mtx data prepare --tokenizer_path tok/ --data_dir fineweb/ --text_field text --output_dir shards/`` (Parquet, JSONL, ...)

Run again after a kill, the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
from typing import Any

from microtransformer.cli.args import fraction, positive_int
from microtransformer.cli.tokenizer import add_corpus_args, corpus_from_args, print_skipped
from microtransformer.data.prepare import DEFAULT_SHARD_TOKENS, prepare_shards
from microtransformer.device import num_threads_from_env
from microtransformer.io import check_output_dir
from microtransformer.tokenization import MicroTransformerTokenizer


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("data", help="prepare token shards for training")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    prep = sub.add_parser("prepare", help="encode a corpus into train_NNNNN.bin/val_NNNNN.bin + meta.json (resumable)")
    prep.add_argument("--tokenizer_path", required=True, help="a tokenizer saved by `mtx tokenizer train`")
    add_corpus_args(prep)
    prep.add_argument("--output_dir", required=True, help="where the shard files and meta.json go")
    prep.add_argument("--val_fraction", type=fraction, default=0.1, help="share of the text held out (by document)")
    prep.add_argument("--num_threads", type=positive_int, default=None,
                      help="encoding threads, or processes for engines that hold the GIL (default: MTX_NUM_THREADS, else up to 8)")
    prep.add_argument("--shard_tokens", type=positive_int, default=DEFAULT_SHARD_TOKENS,
                      help=f"token ids per shard file (default {DEFAULT_SHARD_TOKENS:,})")
    prep.add_argument("--max_piece_chars", type=positive_int, default=None, help="cut longer documents at paragraphs")
    prep.add_argument("--overwrite", action="store_true", help="replace existing shards in --output_dir")
    prep.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    num_threads = args.num_threads or num_threads_from_env()
    check_output_dir(args.output_dir)
    tok = MicroTransformerTokenizer.from_pretrained(args.tokenizer_path)
    corpus = corpus_from_args(args)
    print(f"encoding {corpus.describe()} with {tok!r}")
    meta = prepare_shards(
        corpus,
        tok,
        args.output_dir,
        val_fraction=args.val_fraction,
        tokenizer_path=args.tokenizer_path,
        max_piece_chars=args.max_piece_chars,
        num_threads=num_threads,
        shard_tokens=args.shard_tokens,
        overwrite=args.overwrite,
    )
    for name, info in meta.splits.items():
        bpt = info.bytes / max(info.tokens, 1)
        print(f"{name:<5} {info.tokens:>12,} tokens  {info.bytes:>12,} bytes  {info.documents:>7,} pieces  {bpt:.2f} bytes/token"
              f"  {len(info.files)} file(s)")
    print_skipped(corpus)
    print(f"dtype {meta.dtype}; wrote {args.output_dir}/{{train_*.bin,val_*.bin,meta.json}}")
    print(f"next: mtx train --shards_dir {args.output_dir} --out_dir runs/my_run")
    return 0
