"""Typed exceptions for user-facing failures.

Every error a user can cause (bad corpus, bad vocab size, damaged files) is a
``MicroTransformerError`` whose message says what to do next. The CLI turns
these into exit code 2 without a traceback; ``assert`` is kept for internal
invariants only (``python -O`` strips asserts).
"""

from __future__ import annotations


class MicroTransformerError(Exception):
    """Base class of every error raised on purpose by microtransformer."""


class ConfigError(MicroTransformerError, ValueError):
    """An argument or config value is invalid (e.g. an impossible vocab size)."""


class CorpusError(MicroTransformerError, ValueError):
    """The training text cannot be used: empty, binary, or invalid UTF-8."""


class TokenizerError(MicroTransformerError):
    """Base class for tokenizer failures."""


class UnknownEngineError(TokenizerError, ValueError):
    """The requested tokenizer engine name is not registered."""


class TokenizerNotFoundError(TokenizerError, FileNotFoundError):
    """A tokenizer directory or one of its files does not exist."""


class TokenizerFormatError(TokenizerError):
    """A tokenizer file is damaged or written by a newer format version."""


class DataError(MicroTransformerError, ValueError):
    """Token shards or batches are unusable (e.g. block_size larger than a shard)."""


class CheckpointError(MicroTransformerError):
    """A checkpoint is missing, damaged, or does not match the model/tokenizer."""


class VocabSizeError(ConfigError):
    """The requested vocabulary size is impossible for the engine or corpus."""


class InvalidTokenIdError(TokenizerError, ValueError):
    """A token id is negative or not below ``vocab_size``."""


class UnsafePathError(MicroTransformerError, ValueError):
    """A manifest names a file that is not a plain name inside its own directory."""


class DirectoryInUseError(MicroTransformerError):
    """Another live process holds the lock of a run, checkpoint or shards directory."""
