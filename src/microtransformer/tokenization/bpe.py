"""GPT-style byte-level BPE: trained with ``rustbpe``, encoded with ``tiktoken``.

This is nanochat's recipe: rustbpe learns the merges fast (parallel chunk
counting in Rust), tiktoken encodes and decodes fast. rustbpe has no save/load
and no special tokens; we save the ranks in tiktoken's own ``.tiktoken`` format
(``base64(token) rank`` per line) plus the merges as id pairs, and the base
class handles special tokens. With ``special_tokens="nanochat"`` and
``pattern="nanochat"`` the ids are those of nanochat's ``RustBPETokenizer``.

Plain tiktoken builds the same ``Encoding`` from the saved directory::

    ranks = tiktoken.load.load_tiktoken_bpe("tok/tokenizer.tiktoken")
    enc = tiktoken.Encoding("tok", pat_str=GPT4_SPLIT_PATTERN, mergeable_ranks=ranks,
                            special_tokens={s: len(ranks) + i for i, s in enumerate(specials)})

>>> tok = BPETokenizer.train_from_iterator(["low lower lowest"] * 50, vocab_size=270)
>>> tok.decode(tok.encode("lowest low"))
'lowest low'
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import rustbpe
import tiktoken

from microtransformer.errors import ConfigError, TokenizerFormatError
from microtransformer.tokenization.base import MicroTransformerTokenizer
from microtransformer.tokenization.interop.hf_export import bytelevel_bpe
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

logger = logging.getLogger(__name__)

RANKS_FILE = "tokenizer.tiktoken"
MERGES_FILE = "merges.txt"
# Documents rustbpe holds at once (``buffer_size``); its own default, 8192, held a whole book in memory.
# The merges do not depend on it: only how many documents are counted per batch.
DEFAULT_BUFFER_SIZE = 256


def ranks_to_tiktoken_file(ranks: Sequence[bytes]) -> bytes:
    """tiktoken's ``.tiktoken`` format: one ``base64(token) rank`` line per token."""
    return b"".join(base64.b64encode(tok) + b" %d\n" % rank for rank, tok in enumerate(ranks))


def parse_tiktoken_file(data: bytes) -> list[bytes]:
    """Inverse of :func:`ranks_to_tiktoken_file`; ranks must be exactly 0..n-1."""
    table: dict[int, bytes] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            tok, rank = line.split()
            table[int(rank)] = base64.b64decode(tok, validate=True)
        except ValueError as exc:
            raise TokenizerFormatError(f"{RANKS_FILE} line {lineno} is damaged: {line[:60]!r}") from exc
    if sorted(table) != list(range(len(table))):
        raise TokenizerFormatError(f"{RANKS_FILE} ranks are not contiguous 0..{len(table) - 1}")
    return [table[i] for i in range(len(table))]


def recover_merges(ranks: Sequence[bytes]) -> list[tuple[int, int]]:
    """The (left_id, right_id) pair behind every merged token, from the ranks alone.

    rustbpe exposes only ``get_mergeable_ranks``; a token of rank r is made by
    byte-level BPE of its own bytes with ranks < r until two parts remain.
    """
    rank_of = {b: i for i, b in enumerate(ranks)}
    merges: list[tuple[int, int]] = []
    for rank in range(256, len(ranks)):
        parts = [bytes([b]) for b in ranks[rank]]
        while len(parts) > 2:
            best, best_rank = -1, rank
            for i in range(len(parts) - 1):
                r = rank_of.get(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:
                    best, best_rank = i, r
            if best < 0:
                raise TokenizerFormatError(f"token {rank} ({ranks[rank]!r}) cannot be built from lower ranks")
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        merges.append((rank_of[parts[0]], rank_of[parts[1]]))
    return merges


class BPETokenizer(MicroTransformerTokenizer):
    """Byte-level BPE with a regex pre-split (GPT-4 pattern by default)."""

    engine_name = "bpe"
    releases_gil = True
    uses_buffer_size = True

    def __init__(self, ranks: Sequence[bytes], pattern: str = GPT4_SPLIT_PATTERN) -> None:
        self._ranks = list(ranks)
        self._enc = tiktoken.Encoding(
            name="microtransformer-bpe",
            pat_str=pattern,
            mergeable_ranks={tok: rank for rank, tok in enumerate(self._ranks)},
            special_tokens={},
        )
        self._init_common(pattern=pattern)
        self._enc_with_specials: tuple[object, tiktoken.Encoding] | None = None

    @classmethod
    def _train_engine(
        cls,
        texts: Iterable[str],
        *,
        n_ordinary: int,
        pattern: str | None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        **options: Any,
    ) -> BPETokenizer:
        if options:
            raise ConfigError(
                f"the bpe engine does not take {', '.join(sorted(options))} (it takes --pattern); "
                "drop the option or choose the engine it belongs to"
            )
        pattern = pattern or GPT4_SPLIT_PATTERN
        if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or buffer_size < 1:
            raise ConfigError(f"buffer_size must be a positive int (documents per batch), got {buffer_size!r}")
        # n_ordinary >= 256 is checked by the base class: rustbpe panics (a BaseException) below 256.
        trainer = rustbpe.Tokenizer()
        try:
            # a bounded buffer of documents: memory stays flat however large the corpus (pieces are <= 64K chars)
            trainer.train_from_iterator(texts, n_ordinary, buffer_size=buffer_size, pattern=pattern)
        except ValueError as exc:  # rustbpe's regex engine (fancy-regex) refused the pattern
            if "regex" not in str(exc).lower():
                raise
            raise ConfigError(f"--pattern {pattern!r} cannot be used: {exc}") from None
        ranks = sorted(trainer.get_mergeable_ranks(), key=lambda kv: kv[1])
        return cls([bytes(tok) for tok, _ in ranks], pattern)

    def _encode_ordinary(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def _decode_ordinary(self, ids: Sequence[int]) -> bytes:
        return self._enc.decode_bytes(ids)

    def _ordinary_token_bytes(self) -> list[bytes]:
        return self._ranks

    @cached_property
    def merges(self) -> list[tuple[int, int]]:
        """Merges in order; merge i created token ``256 + i`` (derived once: save, fingerprint and pickle use it)."""
        return recover_merges(self._ranks)

    def _engine_files(self) -> dict[str, bytes]:
        merges = "".join(f"{a} {b}\n" for a, b in self.merges).encode("ascii")
        return {RANKS_FILE: ranks_to_tiktoken_file(self._ranks), MERGES_FILE: merges}

    @classmethod
    def _from_engine_files(cls, files: dict[str, bytes], config: dict[str, Any]) -> BPETokenizer:
        return cls(parse_tiktoken_file(files[RANKS_FILE]), config.get("pattern") or GPT4_SPLIT_PATTERN)

    def _hf_backend(self) -> Any:
        return bytelevel_bpe(self._ranks, self.pattern)

    @property
    def tiktoken_encoding(self) -> tiktoken.Encoding:
        """A ``tiktoken.Encoding`` with our ordinary ranks, pattern and special tokens (with our ids).

        tiktoken's own rules apply to it: ``encode`` raises on special-token
        text unless ``allowed_special`` names it (ours encodes it as text).

        >>> tok.tiktoken_encoding.encode("<|bos|>hi", allowed_special="all")[0] == tok.bos_id  # doctest: +SKIP
        True

        A tokenizer trained with ``space_after_newline`` has none (tiktoken cannot add the spaces, and would give
        other ids): :class:`ConfigError`.
        """
        if self.space_after_newline:
            raise ConfigError(
                "this tokenizer puts a space after every line break (space_after_newline), which tiktoken cannot: "
                "its tiktoken Encoding would give other ids; encode with the tokenizer itself"
            )
        cached = self._enc_with_specials
        if cached is None or cached[0] is not self._specials:
            enc = tiktoken.Encoding(
                name="microtransformer-bpe",
                pat_str=self.pattern,
                mergeable_ranks={tok: rank for rank, tok in enumerate(self._ranks)},
                special_tokens=self.special_tokens,
            )
            cached = self._enc_with_specials = (self._specials, enc)
        return cached[1]
