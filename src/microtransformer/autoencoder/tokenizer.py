"""The learned auto-encoder tokenizer (engine ``autoencoder``).

A token is an FSQ code of the chunk auto-encoder (:mod:`.model`): text is
cut into chunks (:mod:`.chunking`), the encoder maps a chunk to a code, the
decoder maps the code back to bytes. Ids ``0..255`` are the 256 bytes (any
text encodes); ids ``256..`` are codes, most used first, each verified when
the vocabulary is built (:mod:`.vocab`): the network encodes a string to it
and decodes it back to exactly that string, one string per code.

Encode, per chunk: the verified chunk -> id table, else greedy longest match
over vocabulary strings, else bytes. The network is only needed to build the
table (:meth:`AutoEncoderTokenizer.encode_with_network` runs it and gives
the same ids; a test checks). Decode reads the same table, so
``decode(encode(s)) == s`` for every string. Why a table: encode is a dict
lookup and torch is never imported to encode or decode.

>>> tok = AutoEncoderTokenizer.from_checkpoint("ckpt/checkpoint_best", corpus, vocab_size=32768)  # doctest: +SKIP
>>> tok.decode(tok.encode("hello world"))  # doctest: +SKIP
'hello world'
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import regex

from microtransformer.autoencoder.chunking import (
    DEFAULT_MAX_CHUNK_LEN,
    count_chunks,
    iter_chunks,
    split_piece,
)
from microtransformer.autoencoder.config import AutoEncoderConfig, PretrainConfig
from microtransformer.autoencoder.vocab import build_vocabulary, greedy_split
from microtransformer.errors import ConfigError, TokenizerFormatError
from microtransformer.tokenization.base import (
    EngineFile,
    LazyFile,
    MicroTransformerTokenizer,
)
from microtransformer.tokenization.interop.hf_export import HFExportError
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

if TYPE_CHECKING:  # torch stays out of import time: the network modules are imported where they are used
    from microtransformer.autoencoder.model import ChunkAutoEncoder

__all__ = ["AutoEncoderTokenizer"]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "autoencoder.safetensors"
MODEL_CONFIG_FILE = "autoencoder_config.json"
VOCAB_FILE = "vocab.json"
VOCAB_FORMAT = 1
N_BYTES = 256
_FALLBACK_CACHE_MAX = 1 << 16


def _saved_model_config(config: AutoEncoderConfig) -> dict[str, Any]:
    """The model config as ``autoencoder_config.json`` stores it: the fields the earlier release wrote, and a newer
    field only where it differs from what its absence means (``pattern``: the tokenizer's own;
    ``memory_hash_version`` 2), so the same export keeps the same fingerprint."""
    saved = config.to_dict()
    del saved["pattern"]
    if saved["memory_hash_version"] == AutoEncoderConfig.memory_hash_version:
        del saved["memory_hash_version"]
    return saved


class AutoEncoderTokenizer(MicroTransformerTokenizer):
    """Engine ``autoencoder``: FSQ codes of a chunk auto-encoder as tokens (see module docstring)."""

    engine_name = "autoencoder"
    min_ordinary_vocab = N_BYTES
    # encode/decode use the table: the 27 MB of weights are read only when the network is used
    lazy_files = frozenset({WEIGHTS_FILE})

    def __init__(
        self,
        *,
        weights: bytes | LazyFile,
        model_config: dict[str, Any],
        codes: Sequence[int],
        chunks: Sequence[bytes],
        pattern: str | None = None,
        engine_config: dict[str, Any] | None = None,
    ) -> None:
        if len(codes) != len(chunks):
            raise TokenizerFormatError(f"vocabulary has {len(codes)} codes but {len(chunks)} chunks")
        if len(set(codes)) != len(codes):
            raise TokenizerFormatError("vocabulary maps two chunks to one code; rebuild it")
        max_chunk_len = int(model_config.get("max_chunk_len", DEFAULT_MAX_CHUNK_LEN))
        for c in chunks:
            if not 2 <= len(c) <= max_chunk_len:
                raise TokenizerFormatError(f"vocabulary chunk {c!r} is not 2..{max_chunk_len} bytes long")
        self._weights: bytes | LazyFile = weights  # a LazyFile after from_pretrained: read by `model`
        self._model_config = dict(model_config)
        self.max_chunk_len = max_chunk_len
        self.codes: list[int] = [int(c) for c in codes]
        self.chunks: list[bytes] = list(chunks)
        self._model: ChunkAutoEncoder | None = None
        self._split_pattern = pattern or GPT4_SPLIT_PATTERN
        self._regex = regex.compile(self._split_pattern)
        # chunk bytes -> id; the fallback cache memoizes greedy splits of unknown chunks
        self._chunk_to_id: dict[bytes, int] = {c: N_BYTES + i for i, c in enumerate(self.chunks)}
        self._code_to_id: dict[int, int] = {k: N_BYTES + i for i, k in enumerate(self.codes)}
        self._fallback_cache: dict[bytes, tuple[int, ...]] = {}
        cfg = {"max_chunk_len": max_chunk_len, "n_codes": len(self.codes)}
        cfg.update(engine_config or {})
        self._init_common(pattern=self._split_pattern, engine_config=cfg)

    # ----------------------------------------------------------- the network
    @property
    def model(self) -> ChunkAutoEncoder:
        """The auto-encoder (loaded on first use: this is where torch gets imported and saved weights are read).

        A lazy weights file is read and verified here and not kept as bytes:
        the model holds the weights, and ``save`` reads the file again.
        """
        if self._model is None:
            from safetensors.torch import load  # torch: only when the network is used

            from microtransformer.autoencoder.model import ChunkAutoEncoder

            weights = self._weights.read() if isinstance(self._weights, LazyFile) else self._weights
            model = ChunkAutoEncoder(AutoEncoderConfig.from_dict({"pattern": self._split_pattern, **self._model_config}))
            model.load_state_dict(load(weights))
            self._model = model.eval()
        return self._model

    # ------------------------------------------------------ engine contract
    @classmethod
    def _train_engine(
        cls,
        texts: Iterable[str],
        *,
        n_ordinary: int,
        pattern: str | None,
        checkpoint: str | None = None,
        model: ChunkAutoEncoder | None = None,
        preset: str = "cpu",
        steps: int | None = None,
        pretrain_options: dict[str, Any] | None = None,
        piece_fraction: float = 0.0,
        strategy: str = "compression",
        show_progress: bool = False,
        **options: Any,
    ) -> AutoEncoderTokenizer:
        """Count chunks, get a network (``checkpoint``, ``model``, or an in-memory pre-training of ``preset``), build the vocab.

        Without a network, the named preset (``cpu`` by default: a small model,
        1,500 steps) is pre-trained in memory; ``steps`` and
        ``pretrain_options`` (PretrainConfig fields) override its pre-training.
        Real tokenizers come from ``mtx autoencoder pretrain`` + ``export``.
        """
        if options:
            raise ConfigError(
                f"unknown options for the autoencoder engine: {sorted(options)}; "
                "use checkpoint=, model=, preset=, steps=, pretrain_options=, strategy= or piece_fraction="
            )
        source: dict[str, Any] = {}
        if checkpoint is not None:
            from microtransformer.autoencoder.checkpoint import (
                load_autoencoder,  # torch
            )

            model = load_autoencoder(checkpoint)
            source["checkpoint"] = str(checkpoint)
        if model is not None:
            split = pattern or model.config.pattern
            counts = count_chunks(texts, max_chunk_len=model.config.max_chunk_len, pattern=split)
        else:
            model, counts, split, trained = cls._pretrain_in_memory(texts, pattern, preset, steps, pretrain_options, show_progress)
            source.update(trained)
        return cls.from_model(
            model, counts, n_codes=max(0, n_ordinary - N_BYTES), pattern=split, piece_fraction=piece_fraction,
            strategy=strategy, show_progress=show_progress, source=source,
        )

    @staticmethod
    def _pretrain_in_memory(
        texts: Iterable[str], pattern: str | None, preset: str, steps: int | None, options: dict[str, Any] | None, show_progress: bool
    ) -> tuple[ChunkAutoEncoder, Counter[bytes], str, dict[str, Any]]:
        """A network for :meth:`_train_engine` without one: ``(model, chunk counts, pattern, source record)``."""
        from microtransformer.autoencoder.dataset import ChunkDataset  # torch
        from microtransformer.autoencoder.pretrain import pretrain_autoencoder

        model_config = AutoEncoderConfig.preset(preset)
        model_config = replace(model_config, pattern=pattern or model_config.pattern)
        pcfg = PretrainConfig.preset(preset)
        if steps is not None:
            pcfg = replace(pcfg, steps=steps, eval_every=steps)
        pcfg = PretrainConfig.from_dict({**pcfg.to_dict(), **(options or {})})
        dataset = ChunkDataset.from_documents(
            texts, max_chunk_len=model_config.max_chunk_len, val_fraction=pcfg.val_fraction,
            split_block_chars=pcfg.split_block_chars, seed=pcfg.seed, pattern=model_config.pattern,
        )
        result = pretrain_autoencoder(dataset=dataset, model_config=model_config, config=pcfg, checkpoint_dir=None, progress=show_progress)
        source = {"preset": preset, "steps": pcfg.steps, "val_char_accuracy": result.best_val_char_accuracy}
        return result.model, dataset.all_counts(), model_config.pattern, source

    @classmethod
    def from_model(
        cls,
        model: ChunkAutoEncoder,
        chunk_counts: Counter[bytes] | dict[bytes, int],
        *,
        n_codes: int,
        pattern: str | None = None,
        piece_fraction: float = 0.0,
        strategy: str = "compression",
        show_progress: bool = False,
        source: dict[str, Any] | None = None,
    ) -> AutoEncoderTokenizer:
        """Tokenizer from a trained model and chunk counts (no special tokens: the base adds them)."""
        from safetensors.torch import save

        codes, chunks, report = build_vocabulary(
            model, chunk_counts, n_codes, strategy=strategy, piece_fraction=piece_fraction, show_progress=show_progress
        )
        weights = save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
        engine_config = {"vocabulary": report.to_dict(), "source": dict(source or {})}
        tok = cls(
            weights=weights, model_config=_saved_model_config(model.config), codes=codes, chunks=chunks, pattern=pattern,
            engine_config=engine_config,
        )
        tok._model = model.eval()
        return tok

    def _encode_ordinary(self, text: str) -> list[int]:
        table = self._chunk_to_id
        max_len = self.max_chunk_len
        pieces = self._regex.findall(text)
        try:
            encoded = [p.encode("utf-8") for p in pieces]
        except UnicodeEncodeError:
            encoded = None
        if encoded is None or sum(map(len, pieces)) != len(text):
            # a pattern with gaps, or text chunking must reject: the general path
            chunks: Iterable[bytes] = iter_chunks(text, max_chunk_len=max_len, pattern=self._split_pattern)
        else:
            chunks = encoded
        ids: list[int] = []
        append, extend = ids.append, ids.extend
        for chunk in chunks:
            i = table.get(chunk)
            if i is not None:
                append(i)
            elif len(chunk) == 1:
                append(chunk[0])
            elif len(chunk) > max_len:
                for part in split_piece(chunk.decode("utf-8"), max_len):
                    extend(self.encode_chunk(part))
            else:
                extend(self._fallback(chunk))
        return ids

    def encode_chunk(self, chunk: bytes) -> list[int]:
        """Ids of one chunk's bytes: its vocabulary id, else the fallback split."""
        i = self._chunk_to_id.get(chunk)
        if i is not None:
            return [i]
        if len(chunk) == 1:
            return [chunk[0]]
        return list(self._fallback(chunk))

    def _fallback(self, chunk: bytes) -> tuple[int, ...]:
        """Greedy longest match over vocabulary strings, else single bytes (memoized)."""
        hit = self._fallback_cache.get(chunk)
        if hit is not None:
            return hit
        table = self._chunk_to_id
        result = tuple(table[p] if len(p) > 1 else p[0] for p in greedy_split(chunk, table))
        if len(self._fallback_cache) < _FALLBACK_CACHE_MAX:
            self._fallback_cache[chunk] = result
        return result

    def _ordinary_token_bytes(self) -> list[bytes]:
        return [bytes([b]) for b in range(N_BYTES)] + self.chunks

    def _hf_backend(self) -> Any:
        raise HFExportError(
            "the autoencoder engine cuts regex chunks longer than max_chunk_len bytes at UTF-8 character "
            "boundaries before its longest-match lookup, and no Hugging Face pre-tokenizer cuts by bytes on "
            "character boundaries (FixedLength counts characters), so a tokenizer.json would give other ids "
            "on non-ASCII text. Load the directory with MicroTransformerTokenizer.from_pretrained"
        )

    def _engine_files(self) -> dict[str, EngineFile]:
        """The saved files; their bytes are what the fingerprint hashes (see ``MicroTransformerTokenizer.fingerprint``).

        A new key in the model config (``autoencoder_config.json``) or in
        ``vocab.json`` changes the fingerprint of every tokenizer saved from
        then on, and shards and runs refuse a tokenizer whose fingerprint
        differs from theirs. Directories already on disk keep theirs: the
        config is kept as loaded, not rewritten from today's defaults.
        """
        vocab = {
            "format_version": VOCAB_FORMAT,
            "max_chunk_len": self.max_chunk_len,
            "first_id": N_BYTES,
            "codes": self.codes,
            "chunks_hex": [c.hex() for c in self.chunks],
        }
        return {
            WEIGHTS_FILE: self._weights,
            MODEL_CONFIG_FILE: json.dumps({"model": self._model_config}, indent=2, sort_keys=True).encode("utf-8"),
            VOCAB_FILE: json.dumps(vocab, sort_keys=True).encode("utf-8"),
        }

    @classmethod
    def _from_engine_files(cls, files: dict[str, EngineFile], config: dict[str, Any]) -> AutoEncoderTokenizer:
        try:
            vocab = json.loads(files[VOCAB_FILE])
            model_cfg = json.loads(files[MODEL_CONFIG_FILE])["model"]
            weights = files[WEIGHTS_FILE]
        except KeyError as exc:
            raise TokenizerFormatError(f"the autoencoder tokenizer is missing {exc}; re-export it") from exc
        if int(vocab.get("format_version", 1)) > VOCAB_FORMAT:
            raise TokenizerFormatError("vocab.json was written by a newer microtransformer; upgrade to load it")
        engine_config = {k: v for k, v in dict(config.get("engine_config", {})).items() if k not in ("max_chunk_len", "n_codes")}
        return cls(
            weights=weights,
            model_config=model_cfg,
            codes=vocab["codes"],
            chunks=[bytes.fromhex(h) for h in vocab["chunks_hex"]],
            pattern=config.get("pattern"),
            engine_config=engine_config,
        )

    # ------------------------------------------------- the network paths
    def encode_with_network(self, text: str) -> list[int]:
        """Ordinary-text encode that runs the encoder and decoder for every chunk.

        Per chunk: the encoder's code, if it is in the vocabulary and the
        decoder reconstructs this exact chunk from it, else the same fallback
        as :meth:`encode`. Equals ``encode_ordinary`` (a test checks it); it
        exists to show the table is a cache of the network, not a different
        tokenizer.
        """
        chunks = list(iter_chunks(text, max_chunk_len=self.max_chunk_len, pattern=self._split_pattern))
        if not chunks:
            return []
        decoded, codes = self.model.reconstruct(chunks)
        ids: list[int] = []
        for chunk, dec, code in zip(chunks, decoded, codes.tolist()):
            i = self._code_to_id.get(code)
            if i is not None and dec == chunk:
                ids.append(i)
            elif len(chunk) == 1:
                ids.append(chunk[0])
            else:
                ids.extend(self._fallback(chunk))
        return ids

    def decode_with_network(self, ids: Sequence[int]) -> bytes:
        """Bytes of ordinary ids with every code token decoded by the decoder network."""
        ids = list(ids)
        self._check_ids(ids)
        code_ids = [i for i in ids if N_BYTES <= i < self.n_ordinary]
        decoded = dict(zip(code_ids, self.model.decode_indices([self.codes[i - N_BYTES] for i in code_ids]))) if code_ids else {}
        out = []
        for i in ids:
            if i < N_BYTES:
                out.append(bytes([i]))
            elif i < self.n_ordinary:
                out.append(decoded[i])
            else:
                out.append(self._specials.id_to_content[i].encode("utf-8"))
        return b"".join(out)

    def verify(self) -> list[int]:
        """Ids whose table bytes differ from the decoder's output (empty when the cache is exact)."""
        if not self.codes:
            return []
        decoded = self.model.decode_indices(self.codes)
        return [N_BYTES + i for i, (c, d) in enumerate(zip(self.chunks, decoded)) if c != d]

    def code_of(self, token_id: int) -> int | None:
        """The FSQ codebook index behind an ordinary id (None for byte tokens and specials)."""
        if N_BYTES <= token_id < self.n_ordinary:
            return self.codes[token_id - N_BYTES]
        return None
