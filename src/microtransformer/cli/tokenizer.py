"""``mtx tokenizer train | test | encode | convert | compare``.

``mtx tokenizer train --data_dir data/ --output_dir tok/ --vocab_size 5000`` is
the classic ``python scripts/train_tokenizer.py`` one to one.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microtransformer.cli import compare as compare_cli
from microtransformer.cli.args import fraction, positive_int, utf8_text
from microtransformer.data.batches import (
    create_causal_lm_inputs,
    create_mlm_inputs,
    prepare_input_for_batch,
)
from microtransformer.data.corpus import (
    BUILTIN_CORPORA,
    TRAIN_PIECE_CHARS,
    Corpus,
    split_holdout,
)
from microtransformer.data.formats import DEFAULT_TEXT_FIELD
from microtransformer.io import check_output_dir
from microtransformer.tokenization import MicroTransformerTokenizer, available_engines
from microtransformer.tokenization.interop import imports as interop
from microtransformer.tokenization.special import SPECIAL_TOKEN_PRESETS

SAMPLE_SENTENCES = (
    "Hello, world! This is microtransformer.",
    "The quick brown fox jumps over the lazy dog.",
    "def greet(name):\n    return f'Hello {name}'",
    "Unicode: naïve café, 東京, emoji 🙂.",
)


def add_corpus_args(p: argparse.ArgumentParser) -> None:
    """``--data_file`` / ``--data_dir`` / ``--corpus`` / ``--errors`` (shared by commands that read text)."""
    g = p.add_argument_group("corpus (default: the built-in corpus)")
    g.add_argument("--data_file", help="one file: UTF-8 text, .jsonl, .parquet, .arrow; .gz/.zst of text or .jsonl")
    g.add_argument("--data_dir", help="a folder, read recursively (.txt .md, code files and the --data_file formats)")
    g.add_argument("--corpus", choices=BUILTIN_CORPORA, help="built-in corpus from the Python stdlib")
    g.add_argument(
        "--errors", choices=("strict", "replace"), default="strict", help="invalid UTF-8: fail (default) or replace"
    )
    g.add_argument("--text_field", type=utf8_text, default=DEFAULT_TEXT_FIELD,
                   help=f"the field (.jsonl) or column (.parquet, .arrow) holding the text (default {DEFAULT_TEXT_FIELD})")


def special_tokens_arg(values: list[str] | None) -> list[str] | str | None:
    """``--special_tokens nanochat`` (one preset name) is the preset; anything else a list of tokens."""
    if values and len(values) == 1 and values[0] in SPECIAL_TOKEN_PRESETS:
        return values[0]
    return values


def corpus_from_args(args: argparse.Namespace) -> Corpus:
    return Corpus.from_args(
        data_file=args.data_file, data_dir=args.data_dir, corpus=args.corpus, errors=args.errors, text_field=args.text_field
    )


def print_skipped(corpus: Corpus) -> None:
    """The summary line for paths a folder corpus did not read (nothing is left out silently)."""
    if corpus.skipped:
        names = ", ".join(str(s) for s in corpus.skipped)
        print(f"skipped {len(corpus.skipped)} path(s) of {corpus.source}: {names}")


class _Skip(Exception):
    """A check that does not apply to this tokenizer (e.g. padding without a pad token)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("tokenizer", help="train, test and inspect tokenizers")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a tokenizer on a corpus and save it")
    add_corpus_args(t)
    t.add_argument("--output_dir", default="micro_tokenization/pretrained", help="where to save the tokenizer")
    t.add_argument("--vocab_size", type=positive_int, default=5000, help="total vocab size, special tokens included")
    t.add_argument("--engine", default="bpe", choices=available_engines())
    t.add_argument(
        "--special_tokens",
        type=utf8_text,
        nargs="*",
        default=None,
        help="special tokens (default: bos/eos/pad/mask + chat tokens), or a preset: nanochat; 'role=TOKEN' sets a "
        "role (bos, eos, pad, unk, mask); well-known names like <bos> </s> [SEP] [PAD] [MASK] get theirs",
    )
    t.add_argument(
        "--pattern", type=utf8_text, default=None,
        help="regex pre-split pattern or a preset: gpt4 (default), gpt2, nanochat (bpe/reference)",
    )
    t.add_argument("--normalization", choices=("identity", "nfkc"), default=None,
                   help="sentencepiece only; nfkc folds compatibility characters (lossy: needs --allow_lossy)")
    t.add_argument("--tie_break", choices=("lowest", "first"), default=None, help="reference engine only")
    t.add_argument("--padding_side", choices=("left", "right"), default="right")
    t.add_argument("--space_after_newline", action="store_true",
                   help="encode with a space after every line break, so a line's first word is its usual token (for "
                        "hard-wrapped text; tiktoken cannot load such a tokenizer, Hugging Face can)")
    t.add_argument("--holdout_fraction", type=fraction, default=0.02, help="tail of each document kept for evaluation")
    t.add_argument("--allow_lossy", action="store_true",
                   help="save even if decode(encode(text)) != text on the held-out sample (a loud warning instead of an error)")
    t.set_defaults(func=run_train)

    s = sub.add_parser("test", help="check a saved tokenizer: round trip, padding, batches, LM inputs")
    s.add_argument("--tokenizer_path", required=True)
    s.set_defaults(func=run_test)

    e = sub.add_parser("encode", help="show ids, pieces and token boundaries of a text")
    e.add_argument("--tokenizer_path", required=True)
    e.add_argument("text", type=utf8_text)
    e.add_argument("--allow_special", action="store_true", help="parse special-token strings in the text")
    e.add_argument("--no_color", action="store_true")
    e.set_defaults(func=run_encode)

    c = sub.add_parser(
        "convert",
        help="import a Hugging Face, tiktoken, SentencePiece or minbpe tokenizer, save it here, check ids match",
    )
    c.add_argument("src", help="HF directory or tokenizer.json, .tiktoken file, SentencePiece or minbpe .model")
    c.add_argument("--output_dir", required=True, help="where to save the converted tokenizer")
    c.add_argument("--pattern", type=utf8_text, default=None, help=".tiktoken only: split regex or preset (gpt4, gpt2, nanochat)")
    c.add_argument("--special_tokens", type=utf8_text, nargs="*", default=None, help=".tiktoken/SentencePiece: special tokens to add")
    c.add_argument("--n_strings", type=positive_int, default=200, help="strings of the corpus to compare ids on")
    add_corpus_args(c)
    c.set_defaults(func=run_convert)

    m = sub.add_parser("compare", help=compare_cli.HELP, description=compare_cli.DESCRIPTION)
    add_corpus_args(m)
    compare_cli.add_compare_args(m)


def run_train(args: argparse.Namespace) -> int:
    check_output_dir(args.output_dir)
    corpus = corpus_from_args(args)
    options: dict[str, Any] = {}
    if args.normalization is not None:
        options["normalization"] = args.normalization
    if args.tie_break is not None:
        options["tie_break"] = args.tie_break
    print(f"training a {args.engine} tokenizer (vocab {args.vocab_size}) on {corpus.describe()}")
    pieces = corpus.iter_documents(progress=True, max_chars=TRAIN_PIECE_CHARS)
    docs, held_out = split_holdout(pieces, fraction=args.holdout_fraction)
    start = time.perf_counter()
    tok = MicroTransformerTokenizer.train_from_iterator(
        docs,
        engine=args.engine,
        vocab_size=args.vocab_size,
        special_tokens=special_tokens_arg(args.special_tokens),
        pattern=args.pattern,
        padding_side=args.padding_side,
        allow_lossy=args.allow_lossy,
        space_after_newline=args.space_after_newline,
        **options,
    )
    seconds = time.perf_counter() - start
    tok.check_lossless(held_out, allow_lossy=args.allow_lossy, what="the held-out sample")
    out = tok.save(args.output_dir)
    print_skipped(corpus)
    print(f"vocab size:      {tok.vocab_size} ({tok.n_ordinary} ordinary + {len(tok.special_tokens)} special)")
    print(f"training time:   {seconds:.2f} s")
    if held_out:
        n_bytes = sum(len(t.encode("utf-8")) for t in held_out)
        print(f"bytes per token: {tok.bytes_per_token(held_out):.3f} on a held-out sample of {n_bytes:,} bytes")
    print(f"saved to:        {out}")
    print("\nsample encodings:")
    for sentence in SAMPLE_SENTENCES:
        ids = tok.encode(sentence)
        print(f"  {sentence!r}\n    {len(ids)} tokens: {ids[:24]}{' ...' if len(ids) > 24 else ''}")
    return 0


def _checks(tok: MicroTransformerTokenizer) -> list[tuple[str, Callable[[], str]]]:
    """The classic tokenizer test script, each check returning a detail string or raising."""

    texts = [*SAMPLE_SENTENCES, "", "a\r\nb\x00c", "<|bos|> is text here"]

    def roundtrip() -> str:
        for t in texts:
            got = tok.decode(tok.encode(t))
            if got != t:
                raise AssertionError(f"decode(encode({t!r})) == {got!r}")
        return f"{len(texts)} texts"

    def needs_pad() -> None:
        if tok.pad_id is None:
            raise _Skip("no pad token")

    def truncation_padding() -> str:
        needs_pad()
        enc = tok(texts[:3], max_length=8, truncation=True, padding="max_length")
        for ids, mask in zip(enc["input_ids"], enc["attention_mask"]):
            if len(ids) != 8 or len(mask) != 8:
                raise AssertionError(f"length {len(ids)} != 8")
            if tok.pad_id is not None and any((m == 0) != (i == tok.pad_id) for i, m in zip(ids, mask)):
                raise AssertionError("attention_mask does not match padding")
        return "3 x 8, masks match"

    def batch() -> str:
        batch_ids = tok.encode_batch(texts)
        single = [tok.encode(t) for t in texts]
        if batch_ids != single:
            raise AssertionError("encode_batch differs from encode")
        return f"{len(texts)} texts"

    def tensors() -> str:
        needs_pad()
        b = prepare_input_for_batch(texts, tok, max_length=16)
        return f"input_ids {tuple(b['input_ids'].shape)}"

    def causal() -> str:
        needs_pad()
        b = create_causal_lm_inputs(texts[:3], tok, max_length=16)
        ids, mask, labels = b["input_ids"], b["attention_mask"], b["labels"]
        ok = ((labels == ids) & (mask == 1)) | ((labels == -100) & (mask == 0))
        if not bool(ok.all()):
            raise AssertionError("labels are not input_ids with padding at -100")
        return f"labels {tuple(labels.shape)}"

    def masked() -> str:
        needs_pad()
        b = create_mlm_inputs([SAMPLE_SENTENCES[1] * 4], tok, max_length=64, seed=0)
        picked = int((b["labels"] != -100).sum())
        return f"{picked} positions picked"

    def special_injection() -> str:
        if tok.bos_id is None:
            raise _Skip("no bos token")
        if tok.bos_id in tok.encode(tok.id_to_token(tok.bos_id)):
            raise AssertionError("special-token text in user input became a special token")
        return "special text stays ordinary"

    checks: list[tuple[str, Callable[[], str]]] = [
        ("encode/decode round trip", roundtrip),
        ("truncation + padding", truncation_padding),
        ("batch == single", batch),
        ("special-token injection refused", special_injection),
        ("tensors (return_tensors='pt')", tensors),
        ("causal LM inputs", causal),
    ]
    if tok.mask_id is not None:
        checks.append(("masked LM inputs", masked))
    return checks


def run_test(args: argparse.Namespace) -> int:
    tok = MicroTransformerTokenizer.from_pretrained(args.tokenizer_path)
    print(f"{tok!r} from {args.tokenizer_path}\n")
    counts = {"PASS": 0, "SKIP": 0, "FAIL": 0}
    width = 34
    print(f"{'check':<{width}} result  detail")
    print("-" * (width + 30))
    for name, check in _checks(tok):
        try:
            detail, status = check(), "PASS"
        except _Skip as why:
            detail, status = f"{why} (not applicable)", "SKIP"
        except Exception as exc:  # a test harness reports every failure, whatever it is
            detail, status = f"{type(exc).__name__}: {exc}", "FAIL"
        counts[status] += 1
        print(f"{name:<{width}} {status:<7} {detail}")
    print(f"\n{counts['PASS']} passed, {counts['SKIP']} skipped, {counts['FAIL']} failed")
    return 1 if counts["FAIL"] else 0


def run_encode(args: argparse.Namespace) -> int:
    tok = MicroTransformerTokenizer.from_pretrained(args.tokenizer_path)
    ids = tok.encode(args.text, allowed_special="all" if args.allow_special else frozenset())
    print(f"ids ({len(ids)}): {ids}")
    print(f"pieces: {[tok.id_to_token(i) for i in ids]}")
    print(tok.visualize_tokenization(ids, color=not args.no_color))
    n_bytes = len(args.text.encode("utf-8"))
    print(f"{n_bytes} bytes -> {len(ids)} tokens ({n_bytes / max(len(ids), 1):.2f} bytes/token)")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    src = Path(args.src)
    tok = MicroTransformerTokenizer.from_pretrained(
        src, pattern=args.pattern, special_tokens=special_tokens_arg(args.special_tokens)
    )
    out = tok.save(args.output_dir)
    converted = MicroTransformerTokenizer.from_pretrained(out)
    print(f"converted {src} -> {out}: {converted!r}")
    library, encode = interop.reference_encoder(src, pattern=args.pattern)
    texts = interop.sample_strings(corpus_from_args(args).iter_documents(), args.n_strings)
    if library == "SentencePiece":  # ours encodes a literal U+2581 as its bytes, SentencePiece as a space
        texts = [t for t in texts if "\u2581" not in t]
    result = interop.parity(converted, encode, texts)
    print(result.line(library))
    return 0 if result.mismatch is None else 1
