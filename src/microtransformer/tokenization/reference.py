"""The ``reference`` engine: pure-Python BPE, the exactness oracle.

Same regex pre-split and byte-level merges as the ``bpe`` engine, written so a
reader can follow every step (:mod:`.reference_bpe`). With the default
``tie_break="lowest"`` it learns the same merges and ids as rustbpe; a test
asserts it. ``tie_break="first"`` is minbpe's rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from microtransformer.errors import ConfigError, TokenizerFormatError
from microtransformer.tokenization.base import MicroTransformerTokenizer
from microtransformer.tokenization.interop.hf_export import bytelevel_bpe
from microtransformer.tokenization.reference_bpe import ReferenceBPE, count_pieces, train_merges
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

MERGES_FILE = "merges.json"


class ReferenceTokenizer(MicroTransformerTokenizer):
    """Pure-Python byte-level BPE (slow, readable, exact)."""

    engine_name = "reference"

    def __init__(self, merges: list[tuple[int, int]], pattern: str = GPT4_SPLIT_PATTERN, tie_break: str = "lowest") -> None:
        self._bpe = ReferenceBPE(merges, pattern)
        self.merges = list(merges)
        self._init_common(pattern=pattern, engine_config={"tie_break": tie_break})

    @classmethod
    def _train_engine(
        cls,
        texts: Iterable[str],
        *,
        n_ordinary: int,
        pattern: str | None,
        tie_break: str = "lowest",
        show_progress: bool = False,
        **options: Any,
    ) -> ReferenceTokenizer:
        if options:
            raise ConfigError(
                f"the reference engine does not take {', '.join(sorted(options))} (it takes --pattern and --tie_break); "
                "drop the option or choose the engine it belongs to"
            )
        pattern = pattern or GPT4_SPLIT_PATTERN
        merges = train_merges(count_pieces(texts, pattern), n_ordinary, tie_break=tie_break, progress=show_progress)
        return cls(merges, pattern, tie_break)

    def _encode_ordinary(self, text: str) -> list[int]:
        return self._bpe.encode_ordinary(text)

    def _ordinary_token_bytes(self) -> list[bytes]:
        return self._bpe.vocab

    def _hf_backend(self) -> Any:
        return bytelevel_bpe(self._bpe.vocab, self.pattern, merges=self.merges)

    def _engine_files(self) -> dict[str, bytes]:
        return {MERGES_FILE: json.dumps([list(m) for m in self.merges]).encode("ascii")}

    @classmethod
    def _from_engine_files(cls, files: dict[str, bytes], config: dict[str, Any]) -> ReferenceTokenizer:
        try:
            merges = [(int(a), int(b)) for a, b in json.loads(files[MERGES_FILE])]
        except (ValueError, TypeError) as exc:
            raise TokenizerFormatError(f"{MERGES_FILE} is damaged: {exc}") from exc
        tie_break = config.get("engine_config", {}).get("tie_break", "lowest")
        return cls(merges, config.get("pattern") or GPT4_SPLIT_PATTERN, tie_break)
