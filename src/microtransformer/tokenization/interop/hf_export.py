"""Hugging Face ``tokenizer.json`` (+ ``tokenizer_config.json``) equal to our tokenizers.

``save()`` writes these beside each BPE engine's own files, so
``AutoTokenizer.from_pretrained(dir)`` and
``PreTrainedTokenizerFast(tokenizer_file=dir + "/tokenizer.json")`` give our ids:

* ``bpe`` (tiktoken ranks) and ``reference`` (merge list): byte-level BPE over
  GPT-2's byte-to-unicode strings, pre-tokenized by
  ``Sequence[Split(Regex(pattern), "isolated"), ByteLevel(use_regex=False)]``.
  tiktoken merges *any* adjacent pair whose concatenated bytes are a token
  (lowest rank first, leftmost on ties) and returns a whole regex chunk that is
  itself a token without merging; HF BPE applies only listed ``(left, right)``
  merges. So ``bpe`` lists *every* split of every token into two tokens,
  ranked by the token's rank, and sets ``ignore_merges`` (HF's whole-word
  lookup). ``reference`` encodes minbpe-style with its own merge list, which is
  exactly HF's algorithm, so it lists those merges.
* ``sentencepiece``: BPE with ``byte_fallback``, no normalizer or
  pre-tokenizer (SentencePiece's BPE does not pre-split at encode time), the
  vocabulary with ``"▁"`` written as the space it stands for, and again every
  split of every piece ranked by the piece's score (SentencePiece, like
  tiktoken, merges by the score of the concatenation). A literal ``"▁"`` is then
  not in the vocabulary and falls back to its three byte tokens, as ours does.
* ``hf-bytelevel``: its own ``tokenizer.json`` with the special tokens added.

Special tokens are added tokens (``special=True``) with our ids; a
``TemplateProcessing`` post-processor puts bos/eos where
``add_special_tokens=True`` puts ours, and ``padding`` carries the pad token
and side. One difference cannot live in ``tokenizer.json``: HF matches
special-token text inside input, we encode it as ordinary text.
``tokenizer_config.json`` sets ``split_special_tokens: true`` so
``AutoTokenizer`` keeps our safe default; pass ``split_special_tokens=True``
when building ``PreTrainedTokenizerFast(tokenizer_file=...)`` yourself.

>>> files = hf_files(tok)  # doctest: +SKIP
>>> sorted(files)  # doctest: +SKIP
['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from microtransformer.errors import TokenizerError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from microtransformer.tokenization.base import MicroTransformerTokenizer

HF_TOKENIZER_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_MAP_FILE = "special_tokens_map.json"
HF_FILES = (HF_TOKENIZER_FILE, HF_CONFIG_FILE, HF_SPECIAL_MAP_FILE)
# Checked on every export: a split pattern that Python's `regex` and HF's Oniguruma read differently, or any
# other divergence, stops the export instead of writing a tokenizer.json with other ids.
PROBE_TEXTS = (
    "Hello, world! It's 2024: we'll test 12345 numbers, 3.14159 and CAPS.",
    "  leading and trailing  \n\n\tline\r\nbreaks \r\n",
    "naïve café, 東京都, 한국어, emoji 🙂👩\u200d👩\u200d👧 and combining e\u0301",
    "def f(x):\n    return x ** 2  # comment\n",
    "\u2581 space mark \u2581\u2581 <|bos|> [SEP] </s> <unk> \x00 nul",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ---------------- ================",
)
ROLE_KEYS = {"bos": "bos_token", "eos": "eos_token", "pad": "pad_token", "unk": "unk_token", "mask": "mask_token"}


class HFExportError(TokenizerError):
    """This tokenizer has no exact Hugging Face ``tokenizer.json`` (the message says why)."""


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte (the ByteLevel alphabet)."""
    from microtransformer.tokenization.hf_bpe import unicode_to_byte

    return {b: c for c, b in unicode_to_byte().items()}


def bytelevel_string(token: bytes) -> str:
    """``b" hello"`` -> ``"Ġhello"``."""
    table = byte_to_unicode()
    return "".join(table[b] for b in token)


def all_split_merges(tokens: Sequence[str], rank_of: dict[str, int]) -> list[tuple[str, str]]:
    """Every ``(left, right)`` with ``left``, ``right`` and ``left + right`` in the vocabulary.

    Ordered by the rank of ``left + right`` (lower merges first), then by the
    split point, so HF's "lowest listed merge first" picks the pair the
    rank-of-concatenation rule (tiktoken, SentencePiece) picks.

    >>> all_split_merges(["a", "b", "c", "ab", "bc", "abc"], {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5})
    [('a', 'b'), ('b', 'c'), ('a', 'bc'), ('ab', 'c')]
    """
    ranked: list[tuple[int, int, str, str]] = []
    for token in tokens:
        rank = rank_of[token]
        for k in range(1, len(token)):
            left, right = token[:k], token[k:]
            if left in rank_of and right in rank_of:
                ranked.append((rank, k, left, right))
    ranked.sort()
    return [(left, right) for _, _, left, right in ranked]


def bytelevel_bpe(
    table: Sequence[bytes], pattern: str, *, merges: Sequence[tuple[int, int]] | None = None
) -> Tokenizer:
    """Byte-level BPE over ``table`` (id -> bytes) with a regex pre-split.

    ``merges`` (id pairs, minbpe order) gives minbpe semantics; ``None`` gives
    tiktoken's (every split ranked by the token's rank, whole-chunk lookup).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    strings = [bytelevel_string(t) for t in table]
    vocab = _unique_vocab(strings, table)
    if merges is None:
        pairs = all_split_merges(strings, vocab)
        model = models.BPE(vocab=vocab, merges=pairs, ignore_merges=True)
    else:
        model = models.BPE(vocab=vocab, merges=[(strings[a], strings[b]) for a, b in merges])
    tk = Tokenizer(model)
    try:
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
    except Exception as exc:  # tokenizers raises a bare Exception for patterns Oniguruma rejects
        raise HFExportError(f"Hugging Face's regex engine (Oniguruma) rejects the split pattern {pattern!r}: {exc}") from exc
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tk.decoder = decoders.ByteLevel()
    return tk


def byte_fallback_bpe(pieces: Sequence[str], scores: Sequence[float], kinds: Sequence[str]) -> Tokenizer:
    """BPE with byte fallback equal to a SentencePiece BPE model.

    ``kinds[i]`` is ``"normal"``, ``"byte"``, ``"unknown"`` or ``"control"``.
    Normal pieces are written with ``"▁"`` as a space; merges list every split
    of every normal piece, ranked by the piece's score (highest first).
    """
    from tokenizers import Tokenizer, decoders, models

    strings = [p.replace("\u2581", " ") if k == "normal" else p for p, k in zip(pieces, kinds)]
    vocab = _unique_vocab(strings, strings)
    normal = [s for s, k in zip(strings, kinds) if k == "normal"]
    order = sorted(range(len(strings)), key=lambda i: (-scores[i], i))
    rank_of = {strings[i]: r for r, i in enumerate(order) if kinds[i] == "normal"}
    unk = next((s for s, k in zip(strings, kinds) if k == "unknown"), None)
    model = models.BPE(
        vocab=vocab, merges=all_split_merges(normal, rank_of), unk_token=unk, byte_fallback=True, fuse_unk=False
    )
    tk = Tokenizer(model)
    tk.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return tk


def _unique_vocab(strings: Sequence[str], shown: Sequence[Any]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, s in enumerate(strings):
        if s in vocab:
            raise HFExportError(
                f"tokens {vocab[s]} and {i} are the same string ({shown[i]!r}); a tokenizer.json vocabulary "
                "cannot hold both, so no exact export exists"
            )
        vocab[s] = i
    return vocab


def tokenizer_json(tok: MicroTransformerTokenizer) -> str:
    """The complete ``tokenizer.json``: the engine's pipeline + our special tokens, roles and padding."""
    from tokenizers import AddedToken, decoders, normalizers, processors

    tk = tok._hf_backend()
    if tok.space_after_newline:  # the same bijection around the engine's pipeline (special tokens are not normalized)
        after = [tk.normalizer] if tk.normalizer is not None else []
        tk.normalizer = normalizers.Sequence([normalizers.Replace("\n", "\n "), *after])
        tk.decoder = decoders.Sequence([*([tk.decoder] if tk.decoder is not None else []), decoders.Replace("\n ", "\n")])
    n = tok.n_ordinary
    if tk.get_vocab_size(with_added_tokens=True) != n:
        raise HFExportError(f"the exported vocabulary has {tk.get_vocab_size()} tokens, expected {n}")
    specials = list(tok.special_tokens)
    clash = [s for s in specials if tk.token_to_id(s) is not None]
    if clash:
        raise HFExportError(
            f"special tokens {clash} are also ordinary tokens of the vocabulary; Hugging Face would give them "
            "the ordinary ids, so no exact export exists"
        )
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    for s, i in tok.special_tokens.items():
        if tk.token_to_id(s) != i:  # internal invariant: ids follow the ordinary vocabulary
            raise HFExportError(f"special token {s!r} got id {tk.token_to_id(s)} in the export, ours is {i}")
    bos, eos = tok.special_token_roles.get("bos"), tok.special_token_roles.get("eos")
    if bos or eos:
        head = f"{bos}:0 " if bos else ""
        tail = f" {eos}:0" if eos else ""
        head1 = f" {bos}:1" if bos else ""
        tail1 = f" {eos}:1" if eos else ""
        tk.post_processor = processors.TemplateProcessing(
            single=f"{head}$A:0{tail}",
            pair=f"{head}$A:0{tail}{head1} $B:1{tail1}",
            special_tokens=[(t, tok.special_tokens[t]) for t in (bos, eos) if t],
        )
    if tok.pad_id is not None:
        tk.enable_padding(direction=tok.padding_side, pad_id=tok.pad_id, pad_token=tok.special_token_roles["pad"])
    tk.encode_special_tokens = True  # our rule for the check (not saved: tokenizer_config.json says it)
    for text in PROBE_TEXTS:
        theirs, ours = tk.encode(text, add_special_tokens=False).ids, tok.encode(text)
        if theirs != ours:
            raise HFExportError(f"the export gives other ids than ours on {text[:40]!r} ({theirs[:8]} vs {ours[:8]})")
        if tok.space_after_newline and tk.decode(ours, skip_special_tokens=False) != tok.decode(ours):
            raise HFExportError(f"the export decodes {text[:40]!r} otherwise than ours")
    tk.encode_special_tokens = False
    return tk.to_str(pretty=True)


def hf_config(tok: MicroTransformerTokenizer) -> dict[str, Any]:
    """``tokenizer_config.json``: class, special tokens and roles, padding side, max length."""
    roles = tok.special_token_roles
    cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {
            str(i): {
                "content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True,
            }
            for s, i in tok.special_tokens.items()
        },
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": tok.padding_side,
        "truncation_side": "right",
        "split_special_tokens": True,
    }
    cfg.update(_special_map(tok))
    for role, key in ROLE_KEYS.items():
        cfg.setdefault(key, roles.get(role))
    if tok.model_max_length is not None:
        cfg["model_max_length"] = tok.model_max_length
    return cfg


def _special_map(tok: MicroTransformerTokenizer) -> dict[str, Any]:
    roles = tok.special_token_roles
    out: dict[str, Any] = {ROLE_KEYS[r]: c for r, c in roles.items()}
    extra = [s for s in tok.special_tokens if s not in roles.values()]
    if extra:
        out["additional_special_tokens"] = extra
    return out


def hf_files(tok: MicroTransformerTokenizer) -> dict[str, bytes]:
    """File name -> content of the Hugging Face files for ``tok`` (raises :class:`HFExportError`)."""
    return {
        HF_TOKENIZER_FILE: tokenizer_json(tok).encode("utf-8"),
        HF_CONFIG_FILE: _json_bytes(hf_config(tok)),
        HF_SPECIAL_MAP_FILE: _json_bytes(_special_map(tok)),
    }


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def strip_specials(tokenizer_json_text: str) -> str:
    """An HF ``tokenizer.json`` without added tokens, post-processor, padding and truncation.

    What is left is the ordinary pipeline, which our engines run themselves
    (special tokens stay in our injection-safe registry).
    """
    data = json.loads(tokenizer_json_text)
    data["added_tokens"] = []
    data["post_processor"] = None
    data["padding"] = None
    data["truncation"] = None
    return json.dumps(data, ensure_ascii=False)
