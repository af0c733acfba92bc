"""SentencePiece BPE with byte fallback as an engine.

Defaults make the round trip lossless: ``identity`` normalization, no extra
whitespace removal, no dummy prefix, ``character_coverage=1.0`` and
``byte_fallback`` (unseen characters become ``<0xNN>`` byte pieces).

``normalization="nfkc"`` is Unicode NFKC and nothing more:
``decode(encode(s)) == unicodedata.normalize("NFKC", s)``. Line breaks, tabs
and runs of spaces are kept (SentencePiece's own ``nmt_nfkc`` rule, which
turned newlines and tabs into spaces, is not used). What stays lossy is what
NFKC itself folds: compatibility characters (``"ﬁ"`` -> ``"fi"``, ``"①"`` ->
``"1"``, ``"x²"`` -> ``"x2"``, full-width ``"Ａ"`` -> ``"A"``, half-width
katakana ``"ｱ"`` -> ``"ア"``), no-break and ideographic spaces (U+00A0,
U+3000 -> ``" "``), and decomposed accents, which come back composed
(``"e\u0301"`` -> ``"é"``). Tokenizers saved with the older rule keep it
(it lives in their model file).

Two SentencePiece quirks handled here: training reads *sentences* (we feed
lines, so newlines are always byte tokens), and it writes spaces as ``"▁"``
(U+2581), so a literal ``"▁"`` in user text would decode as a space; we encode
it as its three byte-fallback tokens instead.

The saved ``sentencepiece.model`` also holds our special tokens, as CONTROL
pieces with our ids and bos/eos/pad roles
(:mod:`.interop.sentencepiece_model`), so plain ``SentencePieceProcessor``
gives our ids for them too; the trained model is a byte prefix of that file
and is what this engine runs.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sentencepiece as spm

from microtransformer.errors import ConfigError, VocabSizeError
from microtransformer.tokenization.base import MicroTransformerTokenizer
from microtransformer.tokenization.interop.hf_export import HFExportError, byte_fallback_bpe
from microtransformer.tokenization.interop.sentencepiece_model import special_pieces_suffix
from microtransformer.tokenization.special import SpecialToken

MODEL_FILE = "sentencepiece.model"
SPACE_MARK = "\u2581"
MAX_SENTENCE_BYTES = 1 << 16
NORMALIZATIONS = {"identity": "identity", "nfkc": "nfkc"}  # plain NFKC keeps line breaks (nmt_nfkc does not)


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    """Lines of every document, long lines cut so SentencePiece does not drop them."""
    for doc in texts:
        for line in doc.split("\n"):
            while len(line.encode("utf-8")) > MAX_SENTENCE_BYTES:
                cut = MAX_SENTENCE_BYTES // 4  # chars; <= MAX bytes even for 4-byte characters
                yield line[:cut]
                line = line[cut:]
            if line:
                yield line


class SentencePieceTokenizer(MicroTransformerTokenizer):
    """SentencePiece BPE, byte fallback on."""

    engine_name = "sentencepiece"
    releases_gil = True

    def __init__(self, model_proto: bytes, normalization: str = "identity") -> None:
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._space_mark_ids = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARK.encode("utf-8")]
        self._init_common(engine_config={"normalization": normalization})

    @classmethod
    def _train_engine(
        cls,
        texts: Iterable[str],
        *,
        n_ordinary: int,
        pattern: str | None,
        normalization: str = "identity",
        num_threads: int | None = None,
        **options: Any,
    ) -> SentencePieceTokenizer:
        if options:
            raise ConfigError(
                f"the sentencepiece engine does not take {', '.join(sorted(options))} (it takes --normalization); "
                "drop the option or choose the engine it belongs to"
            )
        if pattern is not None:
            raise ConfigError("the sentencepiece engine does its own splitting: it does not take --pattern (use bpe or reference)")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {sorted(NORMALIZATIONS)}, got {normalization!r}")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=_sentences(texts),
                model_writer=model,
                vocab_size=n_ordinary,
                model_type="bpe",
                byte_fallback=True,
                character_coverage=1.0,
                normalization_rule_name=NORMALIZATIONS[normalization],
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                allow_whitespace_only_pieces=True,
                split_digits=False,
                hard_vocab_limit=False,
                max_sentence_length=MAX_SENTENCE_BYTES,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                num_threads=num_threads or os.cpu_count() or 1,
                minloglevel=2,
            )
        except RuntimeError as exc:
            msg = str(exc)
            if "Vocabulary size" in msg or "vocab_size" in msg:
                raise VocabSizeError(
                    f"sentencepiece cannot build {n_ordinary} ordinary tokens from this corpus: {msg.strip()}. "
                    "With character_coverage=1.0 it needs 256 byte pieces + <unk> + every distinct character; "
                    "raise --vocab_size."
                ) from exc
            raise
        return cls(model.getvalue(), normalization)

    def _encode_plain(self, text: str) -> list[int]:
        if SPACE_MARK not in text:
            return self._sp.encode(text) if text else []
        ids: list[int] = []
        for i, part in enumerate(text.split(SPACE_MARK)):
            if i:
                ids.extend(self._space_mark_ids)
            if part:
                ids.extend(self._sp.encode(part))
        return ids

    def _encode_ordinary(self, text: str) -> list[int]:
        return self._encode_plain(text)

    def _encode_ordinary_batch(self, texts: Sequence[str], num_threads: int) -> list[list[int]]:
        if any(SPACE_MARK in t for t in texts):
            return super()._encode_ordinary_batch(texts, num_threads)
        return self._sp.encode(list(texts), num_threads=num_threads)

    def _ordinary_token_bytes(self) -> list[bytes]:
        sp = self._sp
        table: list[bytes] = []
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):
                table.append(bytes([int(piece[3:5], 16)]))
            elif sp.is_unknown(i) or sp.is_control(i):
                table.append(b"")
            else:
                table.append(piece.replace(SPACE_MARK, " ").encode("utf-8"))
        return table

    def _engine_files(self) -> dict[str, bytes]:
        return {MODEL_FILE: self._proto}

    def _special_suffix(self) -> bytes:
        """Our specials as CONTROL pieces, or nothing when one is already a piece (SentencePiece rejects duplicates)."""
        if any(self._sp.piece_to_id(s) != self._sp.unk_id() or s == self._sp.id_to_piece(self._sp.unk_id())
               for s in self.special_tokens):
            return b""
        return special_pieces_suffix(self._specials.tokens, self.n_ordinary)

    def _saved_files(self) -> dict[str, bytes]:
        return {MODEL_FILE: self._proto + self._special_suffix()}

    def _hf_backend(self) -> Any:
        if self.engine_config.get("normalization", "identity") != "identity":
            raise HFExportError(
                "nfkc: Hugging Face's Precompiled normalizer does not apply SentencePiece's compiled NFKC map the "
                "same way (\"\\r\\n\" becomes one space there, two here), so the ids would differ on such text; "
                "identity-normalized models are exported"
            )
        sp = self._sp
        n = sp.get_piece_size()
        kinds = [
            "byte" if sp.is_byte(i) else "unknown" if sp.is_unknown(i) else "control" if sp.is_control(i) else "normal"
            for i in range(n)
        ]
        return byte_fallback_bpe([sp.id_to_piece(i) for i in range(n)], [sp.get_score(i) for i in range(n)], kinds)

    @classmethod
    def _from_engine_files(cls, files: dict[str, bytes], config: dict[str, Any]) -> SentencePieceTokenizer:
        normalization = config.get("engine_config", {}).get("normalization", "identity")
        proto = files[MODEL_FILE]
        specials = [SpecialToken(t["content"], t.get("role")) for t in config.get("special_tokens", [])]
        if specials:
            suffix = special_pieces_suffix(specials, config["n_ordinary"])
            if proto.endswith(suffix):  # saved with our specials in it; 0.1.0 saved the trained model alone
                proto = proto[: -len(suffix)]
        return cls(proto, normalization)
