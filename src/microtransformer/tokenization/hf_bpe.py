"""Hugging Face ``tokenizers`` ByteLevel BPE (GPT-2 style) as an engine, and imported HF BPE tokenizers.

HF keeps its vocabulary as byte-level *unicode* strings (``"Ġhello"``); we map
them back to raw bytes once, so decode, ``token_bytes`` and bits-per-byte work
exactly as for the other engines. Special tokens stay in the base class, not in
HF's added-token machinery, so injection safety is the same everywhere; the
saved ``tokenizer.json`` carries them as added tokens for Hugging Face users,
and loading takes them out again (:func:`.interop.hf_export.strip_specials`).

``hf-bpe`` is the import-only sibling for HF BPE with byte fallback and no
ByteLevel step (a vocabulary of plain text plus ``<0xNN>`` byte tokens, as
exported from our ``sentencepiece`` engine).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from microtransformer.errors import ConfigError
from microtransformer.tokenization.base import MicroTransformerTokenizer
from microtransformer.tokenization.interop.hf_export import HFExportError, strip_specials, tokenizer_json
from microtransformer.tokenization.special import GPT2_SPLIT_PATTERN

TOKENIZER_FILE = "tokenizer.json"


@lru_cache(maxsize=1)
def unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` (printable stand-ins for every byte)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class HFByteLevelTokenizer(MicroTransformerTokenizer):
    """ByteLevel BPE trained and run by Hugging Face ``tokenizers`` (Rust)."""

    engine_name = "hf-bytelevel"
    releases_gil = True

    def __init__(self, tokenizer: Tokenizer, pattern: str = GPT2_SPLIT_PATTERN) -> None:
        self._tk = tokenizer
        self._init_common(pattern=pattern)

    @classmethod
    def _train_engine(
        cls, texts: Iterable[str], *, n_ordinary: int, pattern: str | None, min_frequency: int = 0, **options: Any
    ) -> HFByteLevelTokenizer:
        if options:
            raise ConfigError(
                f"the hf-bytelevel engine does not take {', '.join(sorted(options))}; "
                "drop the option or choose the engine it belongs to"
            )
        if pattern not in (None, GPT2_SPLIT_PATTERN):
            raise ConfigError("the hf-bytelevel engine uses HF's built-in GPT-2 split: it does not take --pattern (use bpe or reference)")
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=n_ordinary,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
            show_progress=False,
        )
        tk.train_from_iterator(texts, trainer=trainer)
        return cls(tk)

    def _encode_ordinary(self, text: str) -> list[int]:
        return self._tk.encode(text, add_special_tokens=False).ids

    def _encode_ordinary_batch(self, texts: Sequence[str], num_threads: int) -> list[list[int]]:
        # HF parallelizes in Rust (rayon); its thread count is set by RAYON_NUM_THREADS, not per call.
        return [e.ids for e in self._tk.encode_batch_fast(list(texts), add_special_tokens=False)]

    def _ordinary_token_bytes(self) -> list[bytes]:
        u2b = unicode_to_byte()
        return [bytes(u2b[c] for c in piece) for piece in self._vocab_strings()]

    def _vocab_strings(self) -> list[str]:
        vocab = self._tk.get_vocab(with_added_tokens=False)
        table = [""] * len(vocab)
        for piece, idx in vocab.items():
            table[idx] = piece
        return table

    def _engine_files(self) -> dict[str, bytes]:
        return {TOKENIZER_FILE: self._tk.to_str().encode("utf-8")}

    def _saved_files(self) -> dict[str, bytes]:
        """``tokenizer.json`` with our special tokens added: one file for both libraries."""

        try:
            return {TOKENIZER_FILE: tokenizer_json(self).encode("utf-8")}
        except HFExportError:
            return self._engine_files()

    def _hf_backend(self) -> Tokenizer:
        return Tokenizer.from_str(self._tk.to_str())

    @classmethod
    def _from_engine_files(cls, files: dict[str, bytes], config: dict[str, Any]) -> HFByteLevelTokenizer:
        ordinary = strip_specials(files[TOKENIZER_FILE].decode("utf-8"))
        return cls(Tokenizer.from_str(ordinary), config.get("pattern") or GPT2_SPLIT_PATTERN)


class HFByteFallbackTokenizer(HFByteLevelTokenizer):
    """An imported Hugging Face BPE with byte fallback: tokens are text, ``<0xNN>`` are bytes."""

    engine_name = "hf-bpe"

    @classmethod
    def _train_engine(cls, texts: Iterable[str], *, n_ordinary: int, pattern: str | None, **options: Any) -> Any:
        raise ConfigError("hf-bpe holds imported Hugging Face tokenizers; train with engine='sentencepiece' instead")

    def _ordinary_token_bytes(self) -> list[bytes]:
        unk = self._tk.model.unk_token
        out = []
        for piece in self._vocab_strings():
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                out.append(bytes([int(piece[3:5], 16)]))
            elif piece == unk:
                out.append(b"")
            else:
                out.append(piece.encode("utf-8"))
        return out
