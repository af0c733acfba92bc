"""The one tokenizer interface, and everything built once on top of the engines.

An *engine* (``bpe``, ``hf-bytelevel``, ``sentencepiece``, ``reference``,
``autoencoder``) subclasses :class:`MicroTransformerTokenizer` and implements a
small core over its **ordinary** vocabulary (ids ``0 .. n_ordinary-1``):

========================================  =====================================
``engine_name: ClassVar[str]``            registry name, stored in the config
``_train_engine(texts, n_ordinary,        classmethod: train on an iterator of
pattern, **options) -> Self``             ``str`` documents; may stop short
                                          of ``n_ordinary`` (base warns)
``_encode_ordinary(text) -> list[int]``   ordinary text only, never specials
``_ordinary_token_bytes() -> list[bytes]`` id -> exact bytes of each token
``_engine_files() -> dict[str, bytes]``   file name -> content, for ``save``
``_from_engine_files(files, config)``     classmethod: inverse of the above
========================================  =====================================

and may override ``_encode_ordinary_batch`` (native threads),
``_decode_ordinary`` (native decode), ``_saved_files`` (what ``save`` writes,
when it differs from the canonical ``_engine_files`` the fingerprint hashes:
the SentencePiece model with our special tokens in it) and ``_hf_backend``
(a Hugging Face ``tokenizers.Tokenizer`` with the same ordinary ids, for the
exported ``tokenizer.json``; see :mod:`.interop.hf_export`). An engine's
``__init__`` builds its own state and ends with ``self._init_common(pattern=..., engine_config=...)``
(``engine_config``: JSON-able options saved in the config and handed back to
``_from_engine_files``); the base attaches special tokens afterwards. Register
the engine name in :mod:`.registry`.

An engine may name files in ``lazy_files`` that only some of its methods need
(the ``autoencoder`` network weights: encode/decode use a table, not the
network). Loading checks those by streaming their SHA-256 and hands the
engine a :class:`LazyFile` instead of the bytes, so they cost no memory until
used; ``_engine_files`` may return that :class:`LazyFile` back.

Written once here, for every engine: special tokens (ids after the ordinary
vocabulary, injection-safe), padding/truncation/attention masks,
``return_tensors``, batching, save/load with versioned JSON config and hashed
files (no pickle) plus Hugging Face's files, imports from other libraries
(:mod:`.interop`), pickling for DataLoader workers, ``token_bytes`` for
bits-per-byte, and chat rendering (``chat.py``).

>>> tok = MicroTransformerTokenizer.train_from_iterator(["hello world"] * 10, vocab_size=300)
>>> tok.decode(tok.encode("hello world"))
'hello world'
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union

import numpy as np

from microtransformer import __version__
from microtransformer.data.corpus import TRAIN_PIECE_CHARS, Corpus
from microtransformer.errors import (
    ConfigError,
    CorpusError,
    InvalidTokenIdError,
    TokenizerFormatError,
    TokenizerNotFoundError,
    VocabSizeError,
)
from microtransformer.io import atomic_write_bytes, atomic_write_json, member_path, sha256_bytes, sha256_file
from microtransformer.tokenization.chat import render_conversation, render_for_completion, visualize_tokenization
from microtransformer.tokenization.interop.hf_export import HF_FILES, HFExportError, hf_files
from microtransformer.tokenization import line_breaks
from microtransformer.tokenization.registry import get_engine
from microtransformer.tokenization.special import (
    SpecialToken,
    SpecialTokenRegistry,
    SpecialTokensSpec,
    parse_special_tokens,
    resolve_pattern,
    validate_pattern,
)

if TYPE_CHECKING:
    from microtransformer.data.corpus import Corpus

logger = logging.getLogger(__name__)

#: Our metadata. ``tokenizer_config.json`` is Hugging Face's (see :mod:`.interop.hf_export`).
CONFIG_FILE = "microtransformer.json"
#: Where releases up to 0.1.0 kept our metadata (format_version 1); still read.
LEGACY_CONFIG_FILE = "tokenizer_config.json"
FORMAT_VERSION = 2

PaddingStrategy = Union[bool, Literal["longest", "max_length", "do_not_pad"]]
TensorType = Literal["np", "pt", "tf"] | None
AllowedSpecial = Union[Literal["all"], Iterable[str]]
_JOIN_BLOCK = 8192  # ids per bytes.join in _decode_ordinary
_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    """Lone UTF-16 surrogates become U+FFFD, as tiktoken does; valid text is returned as is.

    A ``str`` can hold a lone surrogate (``"\\ud83d"``, e.g. from a JSON escape
    cut in half) that has no UTF-8 form. Every engine sees the replaced text,
    in encode and in training, so they all agree. A surrogate *pair* becomes the
    character it encodes, again as in tiktoken.

    >>> replace_surrogates("a\\ud83db") == "a\\ufffdb"
    True
    """
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _missing_file_error(path: Path) -> TokenizerNotFoundError:
    return TokenizerNotFoundError(f"{path} is missing from the saved tokenizer; re-save or retrain it")


def _damaged_file_error(path: Path) -> TokenizerFormatError:
    return TokenizerFormatError(
        f"{path} is damaged (its SHA-256 does not match {CONFIG_FILE}); re-save or retrain the tokenizer"
    )


class LazyFile:
    """A saved engine file checked at load but read only when used (see ``lazy_files``).

    Keeps the path and the SHA-256 from ``tokenizer_config.json``: hashing,
    the fingerprint and the config need only the digest, and :meth:`read`
    hashes again, so a file changed or damaged after loading fails loudly
    instead of loading other weights.
    """

    __slots__ = ("path", "sha256")

    def __init__(self, path: str | os.PathLike[str], sha256: str) -> None:
        self.path = Path(path).absolute()  # read later, maybe after a chdir or in a worker
        self.sha256 = sha256

    def read(self) -> bytes:
        """The file's bytes, verified against the digest taken at load."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise _missing_file_error(self.path) from None
        if sha256_bytes(data) != self.sha256:
            raise _damaged_file_error(self.path)
        return data

    def __reduce__(self) -> tuple[Any, ...]:
        return (LazyFile, (str(self.path), self.sha256))

    def __repr__(self) -> str:
        return f"LazyFile({str(self.path)!r}, sha256={self.sha256[:12]}...)"


#: What an engine's files map holds: the content, or a verified lazy file.
EngineFile = Union[bytes, LazyFile]


def _digest(data: EngineFile) -> str:
    return data.sha256 if isinstance(data, LazyFile) else sha256_bytes(data)


class BatchEncoding(dict):
    """``input_ids`` and ``attention_mask`` as a dict with attribute access (HF-style).

    >>> enc = BatchEncoding({"input_ids": [[1, 2]], "attention_mask": [[1, 1]]})
    >>> enc.input_ids
    [[1, 2]]
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> BatchEncoding:
        """Move torch tensors to ``device`` (no-op for lists/arrays)."""
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


#: Always part of the lossless check: ASCII punctuation, digits, whitespace kinds and non-Latin text.
LOSSLESS_PROBE = "Hello, world! 123 x_y-z 'q' (a+b)*2;\n\tnaïve café 東京 🙂  end.\n"
_SAMPLE_CHARS = 1024  # per document, for the lossless check after training
_SAMPLE_BUDGET = 1 << 18


class _CheckedTexts:
    """Wraps a training iterator: rejects non-``str`` items, counts documents and bytes, keeps a small sample.

    rustbpe iterates a bare ``str`` per character and learns nothing; we reject
    that shape of mistake before any engine sees it. Lone surrogates become
    U+FFFD (:func:`replace_surrogates`), as they do in encode. The sample (the
    start of each document, up to 256K characters) is what the trained
    tokenizer must round-trip.
    """

    def __init__(self, texts: Iterable[str]) -> None:
        self._it = iter(texts)
        self.documents = 0
        self.chars = 0
        self.sample: list[str] = []
        self._budget = _SAMPLE_BUDGET

    def __iter__(self) -> Iterator[str]:
        for item in self._it:
            if not isinstance(item, str):
                raise ConfigError(
                    f"training texts must be str, got {type(item).__name__}; decode bytes first "
                    "(e.g. b.decode('utf-8'))"
                )
            if item:
                self.documents += 1
                self.chars += len(item)
                item = replace_surrogates(item)
                if self._budget > 0:
                    self.sample.append(item[:_SAMPLE_CHARS])
                    self._budget -= len(self.sample[-1])
                yield item


def _as_id_list(ids: Any) -> list[int]:
    """Accept list/tuple, numpy arrays and torch tensors (1-D) as token ids."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):
        raise ConfigError("decode takes one sequence of ids; use decode_batch for a batch")
    return list(ids)


class MicroTransformerTokenizer:
    """The tokenizer interface every engine shares. See the module docstring."""

    engine_name: ClassVar[str] = ""
    #: Byte-level engines need the 256 byte tokens below any merge.
    min_ordinary_vocab: ClassVar[int] = 256
    #: Saved files loaded as :class:`LazyFile` (hash streamed, bytes read on use).
    lazy_files: ClassVar[frozenset[str]] = frozenset()
    #: Whether ``_train_engine`` takes ``buffer_size`` (documents read per batch).
    uses_buffer_size: ClassVar[bool] = False
    #: Whether ``encode_batch`` runs in native code outside the GIL, so threads scale; else
    #: ``mtx data prepare`` encodes on worker processes.
    releases_gil: ClassVar[bool] = False

    # ------------------------------------------------------------------ setup
    def _init_common(
        self,
        *,
        pattern: str | None = None,
        engine_config: dict[str, Any] | None = None,
        special_tokens: Sequence[SpecialToken] = (),
        padding_side: str = "right",
    ) -> None:
        """Called at the end of every engine ``__init__``, once its ordinary vocab exists."""
        self.pattern = validate_pattern(pattern) if pattern is not None else None  # a loaded config too
        self.engine_config: dict[str, Any] = dict(engine_config or {})
        #: Longest input the model takes, when known (exported as HF's ``model_max_length``).
        self.model_max_length: int | None = None
        self._table: list[bytes] = self._ordinary_token_bytes()
        self.n_ordinary = len(self._table)
        #: Encode with a space after every line break, decode without (:mod:`.line_breaks`); set by ``train``.
        self.space_after_newline = False
        self._bytes_to_id: dict[bytes, int] | None = None
        self._set_specials(special_tokens, padding_side)

    def _set_specials(self, special_tokens: Sequence[SpecialToken], padding_side: str = "right") -> None:
        """Attach special tokens after the ordinary vocab (ids ``n_ordinary ..``)."""
        if padding_side not in ("left", "right"):
            raise ConfigError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.padding_side = padding_side
        self._specials = SpecialTokenRegistry(special_tokens, first_id=self.n_ordinary)
        self._token_bytes_arr: np.ndarray | None = None
        self._fingerprint: str | None = None

    # ------------------------------------------------------- engine contract
    @classmethod
    def _train_engine(
        cls, texts: Iterable[str], *, n_ordinary: int, pattern: str | None, **options: Any
    ) -> MicroTransformerTokenizer:
        raise NotImplementedError

    def _encode_ordinary(self, text: str) -> list[int]:
        raise NotImplementedError

    def _ordinary_token_bytes(self) -> list[bytes]:
        raise NotImplementedError

    def _engine_files(self) -> Mapping[str, EngineFile]:
        raise NotImplementedError

    @classmethod
    def _from_engine_files(cls, files: dict[str, EngineFile], config: dict[str, Any]) -> MicroTransformerTokenizer:
        raise NotImplementedError

    def _saved_files(self) -> Mapping[str, EngineFile]:
        """The engine files as ``save`` writes them (default: the canonical ones)."""
        return self._engine_files()

    def _hf_backend(self) -> Any:
        """A ``tokenizers.Tokenizer`` giving our ordinary ids (no special tokens), for ``tokenizer.json``."""

        raise HFExportError(f"the {self.engine_name} engine has no Hugging Face tokenizer.json export")

    def _encode_ordinary_batch(self, texts: Sequence[str], num_threads: int) -> list[list[int]]:
        """Default: one contiguous slice of ``texts`` per thread (engines may override with native batching).

        One task per slice, not per text: on many short texts the per-task
        bookkeeping costs more than a second thread gains (measured with
        tiktoken: 15-17 MB/s sliced vs 11 MB/s one task per text).
        """
        encode = self._encode_ordinary
        if num_threads <= 1 or len(texts) <= 1:
            return [encode(t) for t in texts]
        size = -(-len(texts) // num_threads)
        slices = [texts[i : i + size] for i in range(0, len(texts), size)]
        with ThreadPoolExecutor(len(slices)) as ex:
            parts = list(ex.map(lambda part: [encode(t) for t in part], slices))
        return [ids for part in parts for ids in part]

    def _decode_ordinary(self, ids: Sequence[int]) -> bytes:
        """Join the tokens' bytes in blocks of ``_JOIN_BLOCK`` ids.

        ``bytes.join`` holds an 80-byte buffer view per item while it runs:
        one join over a whole book (260K ids) peaked at 24 MB, blocks at
        1.4 MB, at the same speed.
        """
        table = self._table
        if len(ids) <= _JOIN_BLOCK:
            return b"".join([table[i] for i in ids])
        return b"".join(
            [b"".join([table[i] for i in ids[k : k + _JOIN_BLOCK]]) for k in range(0, len(ids), _JOIN_BLOCK)]
        )

    # -------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        corpus: Corpus | str | os.PathLike[str] | Iterable[str] | None = None,
        *,
        engine: str | None = None,
        vocab_size: int = 8192,
        special_tokens: SpecialTokensSpec = None,
        pattern: str | None = None,
        padding_side: str = "right",
        show_progress: bool = True,
        **options: Any,
    ) -> MicroTransformerTokenizer:
        """Train on a :class:`Corpus`, a file or folder path, ``None`` (built-in corpus) or texts.

        >>> tok = MicroTransformerTokenizer.train("data/", vocab_size=5000)  # doctest: +SKIP
        """

        if corpus is None:
            corpus = Corpus.builtin()
        elif isinstance(corpus, (str, os.PathLike)):
            corpus = Corpus.from_path(corpus)
        if isinstance(corpus, Corpus):  # a large file comes in pieces cut between pre-split chunks

            texts = corpus.iter_documents(progress=show_progress, max_chars=TRAIN_PIECE_CHARS)
        else:
            texts = corpus
        return cls.train_from_iterator(
            texts,
            engine=engine,
            vocab_size=vocab_size,
            special_tokens=special_tokens,
            pattern=pattern,
            padding_side=padding_side,
            **options,
        )

    @classmethod
    def train_from_iterator(
        cls,
        iterator: Iterable[str],
        vocab_size: int = 8192,
        *,
        engine: str | None = None,
        special_tokens: SpecialTokensSpec = None,
        pattern: str | None = None,
        padding_side: str = "right",
        buffer_size: int | None = None,
        allow_lossy: bool = False,
        space_after_newline: bool = False,
        **options: Any,
    ) -> MicroTransformerTokenizer:
        """Train from an iterator of documents (streamed; never joined into one string).

        ``vocab_size`` counts everything, special tokens included (as in
        nanochat). ``special_tokens="nanochat"`` and ``pattern="nanochat"`` are
        nanochat's tokens and split (``pattern`` also takes ``"gpt4"``,
        ``"gpt2"`` or a regex). ``buffer_size`` is how many documents rustbpe
        reads per batch (``bpe`` engine; the others accept and ignore it).
        The result must give back every sampled training text exactly
        (``decode(encode(t)) == t``); a tokenizer that loses text (say a
        ``pattern`` that skips punctuation) is refused with
        :class:`ConfigError`, or kept with a loud warning when ``allow_lossy``.
        ``space_after_newline``: encode with a space after every line break,
        so a line's first word is the token it is after a space (for
        hard-wrapped text; :mod:`.line_breaks`). Its ``tokenizer.json`` does
        the same (a normalizer and a decoder); tiktoken cannot, so it has no
        ``tiktoken_encoding``.

        >>> tok = MicroTransformerTokenizer.train_from_iterator(docs, vocab_size=4096, buffer_size=8192)  # doctest: +SKIP
        """

        engine_cls = get_engine(engine or cls.engine_name or "bpe")
        specials = parse_special_tokens(special_tokens)
        pattern = resolve_pattern(pattern)
        if pattern is not None:
            pattern = validate_pattern(pattern)
        if buffer_size is not None and engine_cls.uses_buffer_size:
            options["buffer_size"] = buffer_size
        if isinstance(iterator, str):  # one document, not a sequence of characters
            iterator = [iterator]
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise VocabSizeError(f"vocab_size must be an int, got {vocab_size!r}")
        minimum = engine_cls.min_ordinary_vocab + len(specials)
        if vocab_size < minimum:
            raise VocabSizeError(
                f"vocab_size={vocab_size} is too small for engine {engine_cls.engine_name!r}: it needs at least "
                f"{engine_cls.min_ordinary_vocab} ordinary tokens + {len(specials)} special tokens = {minimum}. "
                f"Pass --vocab_size {minimum} or more."
            )
        n_ordinary = vocab_size - len(specials)
        checked = _CheckedTexts(iterator)
        texts = _first_nonempty_or_raise(checked)
        if space_after_newline:
            texts = (line_breaks.add_spaces(t) for t in texts)
        tok = engine_cls._train_engine(texts, n_ordinary=n_ordinary, pattern=pattern, **options)
        tok.space_after_newline = bool(space_after_newline)
        tok._set_specials(specials, padding_side)
        if tok.n_ordinary < n_ordinary:
            logger.warning(
                "vocab capped: the corpus only supports %d ordinary tokens (asked for %d), so vocab_size is %d "
                "instead of %d. Use more text or a smaller --vocab_size.",
                tok.n_ordinary, n_ordinary, tok.vocab_size, vocab_size,
            )
        logger.info(
            "trained %s tokenizer: vocab %d on %d documents (%d chars)",
            engine_cls.engine_name, tok.vocab_size, checked.documents, checked.chars,
        )
        if tok.check_lossless(checked.sample, allow_lossy=allow_lossy):
            tok.check_lossless([LOSSLESS_PROBE], allow_lossy=allow_lossy, what="a probe text (punctuation, digits, tabs, non-Latin)")
        return tok

    def check_lossless(self, texts: Iterable[str], *, allow_lossy: bool = False, what: str = "the training sample") -> bool:
        """True when ``decode(encode(t)) == t`` for every text; else :class:`ConfigError` (or a warning with ``allow_lossy``).

        >>> tok.check_lossless(["Hello, world!"])  # doctest: +SKIP
        True
        """
        for text in texts:
            got = self.decode(self.encode(text))
            if got == text:
                continue
            at = next((i for i, (a, b) in enumerate(zip(text, got)) if a != b), min(len(text), len(got)))
            example = f"{text[max(0, at - 20):at + 20]!r} comes back as {got[max(0, at - 20):at + 20]!r}"
            why = f"the pattern {self.pattern!r}" if self.pattern else "the engine's normalization"
            message = f"this {self.engine_name} tokenizer loses text: on {what}, {example} (from character {at}); check {why}"
            if not allow_lossy:
                raise ConfigError(message + "; fix it, or pass --allow_lossy (allow_lossy=True) to keep a lossy tokenizer")
            logger.warning("LOSSY TOKENIZER: %s. Kept because allow_lossy is set: decode(encode(text)) != text.", message)
            return False
        return True

    # ------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        """Total vocabulary: ordinary tokens + special tokens."""
        return self.n_ordinary + len(self._specials)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id, in registration order."""
        return dict(self._specials.content_to_id)

    @property
    def special_token_roles(self) -> dict[str, str]:
        """Role (``bos``, ``eos``, ...) -> special token string."""
        return {t.role: t.content for t in self._specials.tokens if t.role}

    @property
    def special_ids(self) -> frozenset[int]:
        return self._specials.ids

    @property
    def bos_id(self) -> int | None:
        return self._specials.role_id("bos")

    @property
    def eos_id(self) -> int | None:
        return self._specials.role_id("eos")

    @property
    def pad_id(self) -> int | None:
        return self._specials.role_id("pad")

    @property
    def mask_id(self) -> int | None:
        return self._specials.role_id("mask")

    @property
    def unk_id(self) -> int | None:
        return self._specials.role_id("unk")

    def token_to_id(self, token: str | bytes) -> int | None:
        """Id of a special token or an ordinary token, given as text or bytes; None if absent.

        >>> tok.token_to_id("<|bos|>") == tok.token_to_id(b"<|bos|>") == tok.bos_id  # doctest: +SKIP
        True
        """
        if isinstance(token, (bytes, bytearray)):
            try:
                sid = self._specials.content_to_id.get(bytes(token).decode("utf-8"))
            except UnicodeDecodeError:
                sid = None
            if sid is not None:
                return sid
            token = bytes(token)
        else:
            sid = self._specials.content_to_id.get(token)
            if sid is not None:
                return sid
            token = token.encode("utf-8", "surrogatepass")
        if self._bytes_to_id is None:
            self._bytes_to_id = {b: i for i, b in enumerate(self._table)}
        return self._bytes_to_id.get(token)

    def id_to_bytes(self, token_id: int) -> bytes:
        """Exact bytes of one token (a special token's UTF-8 text)."""
        self._check_ids([token_id])
        if token_id >= self.n_ordinary:
            return self._specials.id_to_content[token_id].encode("utf-8")
        return self._table[token_id]

    def id_to_token(self, token_id: int) -> str:
        """Readable text of one token; bytes that are not valid UTF-8 alone show as ``\\xNN``."""
        return self.id_to_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def token_bytes(self) -> np.ndarray:
        """UTF-8 byte length of every token id (0 for special tokens), for bits-per-byte."""
        if self._token_bytes_arr is None:
            arr = np.zeros(self.vocab_size, dtype=np.int64)
            arr[: self.n_ordinary] = [len(b) for b in self._table]
            arr.setflags(write=False)
            self._token_bytes_arr = arr
        return self._token_bytes_arr

    def token_text_bytes(self) -> np.ndarray:
        """Bytes of text each token id stands for, the denominator of bits per byte: ``token_bytes()`` less the
        space ``space_after_newline`` adds after each line break (a sum over ids is exact: :mod:`.line_breaks`)."""
        if not self.space_after_newline:
            return self.token_bytes()
        arr = np.zeros(self.vocab_size, dtype=np.int64)
        arr[: self.n_ordinary] = line_breaks.text_byte_lengths(self._table)
        arr.setflags(write=False)
        return arr

    def text_ids(self) -> np.ndarray:
        """``(vocab_size,)`` bool: the ids that stand for text, whose losses bits per byte count: those with bytes
        (not special tokens, nor an engine's byteless control pieces). For ``token_text_bytes``, where a bare line
        break has 0 bytes and its loss still counts."""
        return self.token_bytes() > 0

    # -------------------------------------------------------------- encoding
    def _encode_one(self, text: str, allowed: frozenset[str], disallowed: frozenset[str] = frozenset()) -> list[int]:
        if not isinstance(text, str):
            raise ConfigError(f"encode takes str, got {type(text).__name__}")
        text = replace_surrogates(text)
        if disallowed:
            self._raise_if_disallowed(text, disallowed)
        if not allowed:
            return self._encode_ordinary(self._prepared(text))
        ids: list[int] = []
        for piece in self._specials.split(text, allowed):
            if isinstance(piece, int):
                ids.append(piece)
            else:
                ids.extend(self._encode_ordinary(self._prepared(piece)))
        return ids

    def _prepared(self, text: str) -> str:
        """Ordinary text as the engine encodes it (a space after each line break with ``space_after_newline``)."""
        return line_breaks.add_spaces(text) if self.space_after_newline else text

    def _resolve_disallowed(self, disallowed_special: AllowedSpecial, allowed: frozenset[str]) -> frozenset[str]:
        if not disallowed_special:
            return frozenset()
        return self._specials.resolve_allowed(disallowed_special) - allowed

    def _raise_if_disallowed(self, text: str, disallowed: frozenset[str]) -> None:
        """tiktoken's check, opt-in here (``disallowed_special="all"``): special-token text raises."""
        match = self._specials.splitter(disallowed).search(text)
        if match:
            token = match.group()
            raise ConfigError(
                f"Encountered text corresponding to disallowed special token {token!r}. If you want this text to "
                f"be encoded as a special token, pass it to `allowed_special`, e.g. allowed_special={{{token!r}}}. "
                "If you want it encoded as ordinary text, leave `disallowed_special` at its default ()."
            )

    def _added_ids(self, add_special_tokens: bool) -> tuple[list[int], list[int]]:
        if not add_special_tokens:
            return [], []
        return ([self.bos_id] if self.bos_id is not None else []), ([self.eos_id] if self.eos_id is not None else [])

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with special-token strings treated as plain text."""
        return self._encode_one(text, frozenset())

    def encode(
        self,
        text: str | Sequence[str],
        prepend: int | str | None = None,
        append: int | str | None = None,
        num_threads: int | None = None,
        *,
        add_special_tokens: bool = False,
        allowed_special: AllowedSpecial = frozenset(),
        disallowed_special: AllowedSpecial = (),
        max_length: int | None = None,
        truncation: bool = False,
        padding: PaddingStrategy = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: TensorType = None,
    ) -> Any:
        """Encode one text (or a list: a list of id lists, as nanochat's ``encode``) to ids.

        Special-token strings inside ``text`` are ordinary text unless listed in
        ``allowed_special`` (or ``"all"``); ``disallowed_special="all"`` makes
        them raise instead, as tiktoken does. ``prepend``/``append`` add one
        token (an id or a special token's string) around each text, as in
        nanochat; ``add_special_tokens`` wraps the ids in BOS/EOS where the
        tokenizer has them. Lone surrogates are encoded as U+FFFD. With
        ``return_tensors`` the result has shape ``(1, T)``.

        >>> tok.encode("hello")  # doctest: +SKIP
        [31373]
        >>> tok.encode(["Hello", "world"], prepend="<|bos|>", num_threads=8)  # doctest: +SKIP
        [[2036, 15496], [2036, 995]]
        """
        if not isinstance(text, str) and isinstance(text, (list, tuple)):
            if padding or truncation or return_tensors:
                raise ConfigError("for padded or tensor batches call the tokenizer: tok(texts, padding=True, ...)")
            return self.encode_batch(
                text, prepend=prepend, append=append, num_threads=num_threads,
                add_special_tokens=add_special_tokens, allowed_special=allowed_special,
                disallowed_special=disallowed_special,
            )
        head = [self._token_arg(prepend)] if prepend is not None else []
        tail = [self._token_arg(append)] if append is not None else []
        if not (padding or truncation or return_tensors):  # the common case, kept cheap
            allowed = self._specials.resolve_allowed(allowed_special) if allowed_special else frozenset()
            ids = self._encode_one(text, allowed, self._resolve_disallowed(disallowed_special, allowed))
            if add_special_tokens:
                bos, eos = self._added_ids(True)
                ids = bos + ids + eos
            return head + ids + tail if (head or tail) else ids
        if head or tail:
            raise ConfigError("prepend/append do not combine with padding, truncation or return_tensors")
        enc = self(
            [text],
            add_special_tokens=add_special_tokens,
            allowed_special=allowed_special,
            disallowed_special=disallowed_special,
            max_length=max_length,
            truncation=truncation,
            padding=padding,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_attention_mask=False,
        )
        ids = enc["input_ids"]
        return ids if return_tensors else ids[0]

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        num_threads: int | None = None,
        add_special_tokens: bool = False,
        allowed_special: AllowedSpecial = frozenset(),
        disallowed_special: AllowedSpecial = (),
        prepend: int | str | None = None,
        append: int | str | None = None,
    ) -> list[list[int]]:
        """Encode many texts in parallel threads (native batching where the engine has it)."""
        if isinstance(texts, str):
            raise ConfigError("encode_batch takes a list of strings; use encode for one string")
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise ConfigError(f"encode_batch takes str items, got {type(t).__name__}")
        texts = [replace_surrogates(t) for t in texts]
        n = num_threads or min(8, os.cpu_count() or 1)
        allowed = self._specials.resolve_allowed(allowed_special)
        disallowed = self._resolve_disallowed(disallowed_special, allowed)
        if len(texts) <= 1 or n == 1 or disallowed:  # no pool for a single text (encode() comes through here)
            out = [self._encode_one(t, allowed, disallowed) for t in texts]
        elif allowed:
            with ThreadPoolExecutor(n) as ex:
                out = list(ex.map(lambda t: self._encode_one(t, allowed), texts))
        else:
            out = self._encode_ordinary_batch([self._prepared(t) for t in texts], n)
        head, tail = self._added_ids(add_special_tokens)
        if prepend is not None:
            head = [self._token_arg(prepend), *head]
        if append is not None:
            tail = [*tail, self._token_arg(append)]
        if head or tail:
            out = [head + ids + tail for ids in out]
        return out

    def _token_arg(self, token: int | str) -> int:
        """``prepend``/``append``: a token id, or a special token's string."""
        if isinstance(token, str):
            return self.encode_special(token)
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            raise ConfigError(f"prepend/append take a token id or a special token string, got {token!r}")
        self._check_ids([int(token)])
        return int(token)

    # --------------------------------------------------------- nanochat API
    def encode_special(self, token: str) -> int:
        """Id of a special token given by its exact string (nanochat's name).

        >>> tok.encode_special("<|assistant_start|>")  # doctest: +SKIP
        2039
        """
        token_id = self._specials.content_to_id.get(token)
        if token_id is None:
            raise ConfigError(
                f"{token!r} is not a special token of this tokenizer; registered: {sorted(self._specials.content_to_id)}"
            )
        return token_id

    def get_bos_token_id(self) -> int | None:
        """The bos id (nanochat's getter for :attr:`bos_id`)."""
        return self.bos_id

    def get_vocab_size(self) -> int:
        """nanochat's getter for :attr:`vocab_size`."""
        return self.vocab_size

    def get_special_tokens(self) -> set[str]:
        """The special token strings, as a set (nanochat's ``get_special_tokens``)."""
        return set(self._specials.content_to_id)

    def render_for_completion(self, conversation: Any) -> list[int]:
        """A chat ending in an assistant turn, rendered without it and primed with ``<|assistant_start|>``."""

        return render_for_completion(self, conversation)

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        add_special_tokens: bool = False,
        allowed_special: AllowedSpecial = frozenset(),
        disallowed_special: AllowedSpecial = (),
        padding: PaddingStrategy = False,
        truncation: bool = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: TensorType = None,
        return_attention_mask: bool = True,
        num_threads: int | None = None,
    ) -> BatchEncoding:
        """Encode one text or a batch into a :class:`BatchEncoding` (``input_ids``, ``attention_mask``).

        >>> enc = tok(["a b", "a"], padding=True, return_tensors="pt")  # doctest: +SKIP
        >>> enc["input_ids"].shape  # (B, T)  # doctest: +SKIP
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        head, tail = self._added_ids(add_special_tokens)
        seqs = self.encode_batch(
            texts, num_threads=num_threads, allowed_special=allowed_special, disallowed_special=disallowed_special
        )
        if truncation:
            if max_length is None:
                raise ConfigError("truncation=True needs max_length (e.g. max_length=128)")
            room = max_length - len(head) - len(tail)
            if room < 0:
                raise ConfigError(f"max_length={max_length} cannot hold the {len(head) + len(tail)} added special tokens")
            seqs = [s[:room] for s in seqs]
        seqs = [head + s + tail for s in seqs] if (head or tail) else seqs
        ids, mask = self._pad(seqs, padding, max_length, pad_to_multiple_of, padding_side or self.padding_side)
        data: dict[str, Any] = {"input_ids": ids}
        if return_attention_mask:
            data["attention_mask"] = mask
        if return_tensors is not None:
            data = {k: _to_tensor(v, return_tensors) for k, v in data.items()}
        elif single:
            data = {k: v[0] for k, v in data.items()}
        return BatchEncoding(data)

    def _pad(
        self,
        seqs: list[list[int]],
        padding: PaddingStrategy,
        max_length: int | None,
        multiple: int | None,
        side: str,
    ) -> tuple[list[list[int]], list[list[int]]]:
        if side not in ("left", "right"):
            raise ConfigError(f"padding_side must be 'left' or 'right', got {side!r}")
        if padding in (False, "do_not_pad", None):
            return seqs, [[1] * len(s) for s in seqs]
        if padding in (True, "longest"):
            target = max((len(s) for s in seqs), default=0)
        elif padding == "max_length":
            if max_length is None:
                raise ConfigError("padding='max_length' needs max_length")
            target = max_length
        else:
            raise ConfigError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        if multiple:
            target = -(-target // multiple) * multiple
        pad = self.pad_id
        if pad is None:
            raise ConfigError(
                "this tokenizer has no pad token; train it with one (e.g. special_tokens=['<|pad|>', ...]) "
                "or call without padding"
            )
        ids, mask = [], []
        for s in seqs:
            n = target - len(s)
            if n < 0:  # longer than max_length without truncation: left as is, like HF
                ids.append(s)
                mask.append([1] * len(s))
            elif side == "right":
                ids.append(s + [pad] * n)
                mask.append([1] * len(s) + [0] * n)
            else:
                ids.append([pad] * n + s)
                mask.append([0] * n + [1] * len(s))
        return ids, mask

    # -------------------------------------------------------------- decoding
    def _check_ids(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        lo, hi = min(ids), max(ids)
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise InvalidTokenIdError(
                f"token id {bad} is out of range for this tokenizer (vocab_size={self.vocab_size}); "
                "were these ids made by another tokenizer, or do they include -100 label padding?"
            )

    def decode_bytes(self, ids: Any, *, skip_special_tokens: bool = False) -> bytes:
        """Exact bytes of ``ids`` (no UTF-8 repair): what streaming decoders need."""
        ids = _as_id_list(ids)
        self._check_ids(ids)
        n = self.n_ordinary
        if not ids or max(ids) < n:
            return self._decode_run(ids)
        parts: list[bytes] = []
        run: list[int] = []
        for i in ids:
            if i < n:
                run.append(i)
                continue
            if run:
                parts.append(self._decode_run(run))
                run = []
            if not skip_special_tokens:
                parts.append(self._specials.id_to_content[i].encode("utf-8"))
        if run:
            parts.append(self._decode_run(run))
        return b"".join(parts)

    def _decode_run(self, ids: Sequence[int]) -> bytes:
        """Ordinary ids back to text bytes (the spaces ``space_after_newline`` added dropped)."""
        data = self._decode_ordinary(ids)
        return line_breaks.remove_spaces(data) if self.space_after_newline else data

    def decode_stream(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> Iterator[bytes]:
        """Each id's bytes as it comes, joining to ``decode_bytes(ids)``: what streaming generation prints.

        >>> b"".join(tok.decode_stream(ids)) == tok.decode_bytes(ids)  # doctest: +SKIP
        True
        """
        n = self.n_ordinary
        remover = line_breaks.SpaceRemover() if self.space_after_newline else None
        for i in ids:
            i = int(i)
            self._check_ids([i])
            if i >= n:
                if remover is not None:
                    remover.reset()
                if not skip_special_tokens:
                    yield self._specials.id_to_content[i].encode("utf-8")
                continue
            data = self._decode_ordinary([i])
            yield remover(data) if remover is not None else data

    def decode(self, ids: Any, *, skip_special_tokens: bool = False, errors: str = "replace") -> str:
        """Ids back to text; ``errors`` is passed to ``bytes.decode`` (``replace``, ``strict``, ...)."""
        return self.decode_bytes(ids, skip_special_tokens=skip_special_tokens).decode("utf-8", errors=errors)

    def decode_batch(self, batch: Iterable[Any], *, skip_special_tokens: bool = False, errors: str = "replace") -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens, errors=errors) for ids in batch]

    def bytes_per_token(self, texts: Iterable[str]) -> float:
        """UTF-8 bytes per token over ``texts``: the compression figure tokenizers are compared on."""
        texts = list(texts)
        n_tokens = sum(len(ids) for ids in self.encode_batch(texts))
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        return n_bytes / max(n_tokens, 1)

    # ------------------------------------------------------------------ chat
    def render_conversation(self, conversation: Any, max_tokens: int = 2048) -> tuple[list[int], list[int]]:
        """Token ids and loss mask (1 on assistant tokens) of a chat; see :mod:`.chat`."""

        return render_conversation(self, conversation, max_tokens=max_tokens)

    def visualize_tokenization(
        self, ids: Sequence[int], mask: Sequence[int] | None = None, color: bool = True, with_token_id: bool = False
    ) -> str:
        """Ids with visible token boundaries (ANSI colours); see :mod:`.chat`."""

        return visualize_tokenization(self, ids, mask, color=color, with_token_id=with_token_id)

    # ------------------------------------------------------------ save/load
    def _config(self, files: Mapping[str, EngineFile], hf_files: Sequence[str] = ()) -> dict[str, Any]:
        """Our metadata (``microtransformer.json``): ``files`` are the engine files as written."""
        cfg = self._fingerprint_config(files)
        cfg.update(
            format_version=FORMAT_VERSION,
            microtransformer_version=__version__,
            model_max_length=self.model_max_length,
            hf_files=sorted(hf_files),
        )
        return cfg

    def _fingerprint_config(self, files: Mapping[str, EngineFile] | None = None) -> dict[str, Any]:
        """The 0.1.0 config over the canonical engine files: what the fingerprint hashes.

        Kept in that exact form so a fingerprint stored with shards or runs by
        an earlier release still matches the same tokenizer saved in today's
        layout (the export files and new metadata fields do not enter it).
        """
        files = self._engine_files() if files is None else files
        return {
            "format_version": 1,
            "engine": self.engine_name,
            "vocab_size": self.vocab_size,
            "n_ordinary": self.n_ordinary,
            "pattern": self.pattern,
            "padding_side": self.padding_side,
            "special_tokens": self._specials.to_json(),
            "engine_config": self.engine_config,
            "files": {name: _digest(data) for name, data in sorted(files.items())},
            # written only when set: tokenizers without it keep the fingerprint earlier releases gave them
            **({"space_after_newline": True} if self.space_after_newline else {}),
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the engine's files, the Hugging Face files and ``microtransformer.json`` (each atomically).

        The directory loads here (``from_pretrained``) and in Hugging Face
        (``AutoTokenizer.from_pretrained``); an engine with no exact
        ``tokenizer.json`` (``autoencoder``) logs why and writes none. A
        :class:`LazyFile` is read (and verified) here, one at a time.
        """

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = self._saved_files()
        try:
            hf = {name: data for name, data in hf_files(self).items() if name not in files}
        except HFExportError as exc:
            logger.warning("%s: no Hugging Face tokenizer.json written: %s", directory, exc)
            hf = {}
            for name in HF_FILES:  # a stale export from an earlier save would give other ids
                if name not in files:
                    (directory / name).unlink(missing_ok=True)
        for name, data in files.items():
            atomic_write_bytes(directory / name, data.read() if isinstance(data, LazyFile) else data)
        for name, data in hf.items():
            atomic_write_bytes(directory / name, data)
        exported = [*hf, *(n for n in files if n in HF_FILES)]
        atomic_write_json(directory / CONFIG_FILE, self._config(files, exported))  # last: marks the save complete
        logger.info("saved %s tokenizer (vocab %d) to %s", self.engine_name, self.vocab_size, directory)
        return directory

    save_pretrained = save

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        pattern: str | None = None,
        special_tokens: SpecialTokensSpec = None,
    ) -> MicroTransformerTokenizer:
        """Load a tokenizer directory (any engine, any release), or import another library's file.

        ``path`` may be a directory ``save`` wrote, a Hugging Face directory or
        ``tokenizer.json`` (BPE), a ``.tiktoken`` file (give ``pattern``, and
        ``special_tokens`` if it has any), a SentencePiece ``.model`` or a minbpe
        ``.model``. ``pattern`` and ``special_tokens`` only apply to imports
        (see :mod:`.interop.imports`).

        >>> tok = MicroTransformerTokenizer.from_pretrained("tok/")  # doctest: +SKIP
        >>> tok = MicroTransformerTokenizer.from_pretrained("cl.tiktoken", pattern="gpt4")  # doctest: +SKIP
        """
        # the importers build engines, which subclass this class: imported here, as the registry imports engines
        from microtransformer.tokenization.interop import imports

        path = Path(path)
        if path.is_file():
            return imports.import_file(path, pattern=pattern, special_tokens=special_tokens)
        if not path.is_dir():
            raise TokenizerNotFoundError(
                f"no tokenizer directory at {path}; train one with "
                f"`mtx tokenizer train --output_dir {path}` or check the path"
            )
        cfg_path = path / CONFIG_FILE
        if not cfg_path.is_file():
            legacy = path / LEGACY_CONFIG_FILE
            if legacy.is_file() and _is_our_legacy_config(legacy):
                cfg_path = legacy
            elif imports.is_hf_dir(path):
                return imports.import_hf(path, special_tokens=special_tokens)
            else:
                raise TokenizerNotFoundError(
                    f"{cfg_path} is missing: {path} is not a saved tokenizer (expected {CONFIG_FILE}, "
                    f"a Hugging Face tokenizer.json, or {LEGACY_CONFIG_FILE} from microtransformer 0.1)"
                )
        if pattern is not None or special_tokens is not None:
            raise ConfigError(
                f"{path} is a saved microtransformer tokenizer: its pattern and special tokens are fixed; "
                "pattern= and special_tokens= apply to imported files only"
            )
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            version = int(config["format_version"])
            engine_name = config["engine"]
            file_hashes = dict(config["files"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise TokenizerFormatError(f"{cfg_path} is damaged ({exc}); re-save or retrain the tokenizer") from exc
        if version > FORMAT_VERSION:
            raise TokenizerFormatError(
                f"{cfg_path} has format_version {version}, newer than this microtransformer understands "
                f"({FORMAT_VERSION}); upgrade microtransformer (pip install -U microtransformer)"
            )
        engine_cls = get_engine(engine_name)
        files = engine_cls._read_engine_files(path, file_hashes)
        return engine_cls._load(files, config, source=path)

    @classmethod
    def _read_engine_files(cls, directory: Path, file_hashes: dict[str, str]) -> dict[str, EngineFile]:
        """Every file verified against its SHA-256; ``lazy_files`` hashed in 1 MB blocks and not kept.

        Only plain file names inside ``directory`` are opened (:func:`~microtransformer.io.member_path`).
        """
        files: dict[str, EngineFile] = {}
        for name, digest in file_hashes.items():
            path = member_path(directory, name, manifest=CONFIG_FILE, error=TokenizerFormatError)
            if not path.is_file():
                raise _missing_file_error(path)
            if name in cls.lazy_files:
                if sha256_file(path) != digest:
                    raise _damaged_file_error(path)
                files[name] = LazyFile(path, digest)
                continue
            data = path.read_bytes()
            if sha256_bytes(data) != digest:
                raise _damaged_file_error(path)
            files[name] = data
        return files

    @classmethod
    def _load(cls, files: dict[str, EngineFile], config: dict[str, Any], source: Any = "<memory>") -> MicroTransformerTokenizer:
        try:
            specials = [SpecialToken(t["content"], t.get("role")) for t in config["special_tokens"]]
            tok = cls._from_engine_files(files, config)
            tok.space_after_newline = bool(config.get("space_after_newline", False))
            tok._set_specials(specials, config.get("padding_side", "right"))
            tok.model_max_length = config.get("model_max_length")
        except TokenizerFormatError:
            raise
        except Exception as exc:  # engine parsers raise many kinds; name the source
            raise TokenizerFormatError(f"cannot load the {cls.engine_name} tokenizer in {source}: {exc}") from exc
        if tok.vocab_size != config.get("vocab_size", tok.vocab_size):
            raise TokenizerFormatError(
                f"{source}: files give vocab_size {tok.vocab_size} but {CONFIG_FILE} says {config['vocab_size']}"
            )
        return tok

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical saved form: equal fingerprints mean identical tokenization.

        Stable across releases and layouts (see :meth:`_fingerprint_config`):
        shards and runs record it, and check it against the tokenizer they load.
        Its scope is every key of that config (``engine_config`` included) and
        the bytes of every engine file: a key added to either changes the
        fingerprint of tokenizers saved from then on, and shard directories
        made with the earlier fingerprint refuse them. So a new setting goes
        where it does not enter the hash, or is written only when it differs
        from what earlier files meant; directories already on disk keep their
        fingerprint because their files are written back as they were read.
        """
        if self._fingerprint is None:
            cfg = self._fingerprint_config()
            self._fingerprint = sha256_bytes(json.dumps(cfg, sort_keys=True).encode("utf-8"))
        return self._fingerprint

    # -------------------------------------------------------------- pickling
    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as (engine, files, config): DataLoader workers get a copy, no file is unpickled.

        A :class:`LazyFile` stays lazy (path + digest): workers only encode,
        so each would otherwise receive and hold bytes it never uses (27 MB of
        autoencoder weights). The cost: such a pickle needs the saved
        directory unchanged to use those files; ``read`` says so if it changed.
        """
        files = self._engine_files()
        return (_rebuild, (self.engine_name, files, self._config(files)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(engine={self.engine_name!r}, vocab_size={self.vocab_size}, "
            f"special_tokens={len(self._specials)})"
        )


def _rebuild(engine_name: str, files: dict[str, EngineFile], config: dict[str, Any]) -> MicroTransformerTokenizer:
    return get_engine(engine_name)._load(files, config)


def is_saved_tokenizer_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory ``save`` wrote, in today's layout or 0.1.0's."""
    path = Path(path)
    legacy = path / LEGACY_CONFIG_FILE
    return (path / CONFIG_FILE).is_file() or (legacy.is_file() and _is_our_legacy_config(legacy))


def _is_our_legacy_config(path: Path) -> bool:
    """True for the ``tokenizer_config.json`` microtransformer 0.1 wrote, False for Hugging Face's.

    Unreadable JSON counts as ours, so loading reports it as damaged.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return True
    return isinstance(data, dict) and "format_version" in data and "engine" in data


def _first_nonempty_or_raise(checked: _CheckedTexts) -> Iterator[str]:
    """Fail fast on an empty corpus, before the engine spends any time."""
    it = iter(checked)
    first = next(it, None)
    if first is None:
        raise CorpusError("the training corpus is empty (no non-empty documents); point it at some text")
    yield first
    yield from it


def _to_tensor(rows: list[list[int]], kind: str) -> Any:
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ConfigError(
            f"sequences have different lengths {sorted(lengths)[:4]}...; pass padding=True (or truncation with "
            "padding='max_length') to get a rectangular tensor"
        )
    if kind == "np":
        return np.asarray(rows, dtype=np.int64)
    if kind == "pt":
        import torch

        return torch.tensor(rows, dtype=torch.long)
    if kind == "tf":
        try:
            import tensorflow as tf
        except ImportError:
            raise ConfigError("return_tensors='tf' needs TensorFlow: pip install 'microtransformer[tf]'") from None
        return tf.constant(rows, dtype=tf.int32)  # int32, as Hugging Face's TF tokenizers return
    raise ConfigError(f"return_tensors must be None, 'np', 'pt' or 'tf', got {kind!r}")
