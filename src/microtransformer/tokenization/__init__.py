"""Tokenizers: one interface (:class:`MicroTransformerTokenizer`) over several engines."""

from microtransformer.tokenization.base import BatchEncoding, MicroTransformerTokenizer
from microtransformer.tokenization.registry import available_engines, get_engine, register_engine
from microtransformer.tokenization.special import (
    CHAT_TOKENS,
    DEFAULT_SPECIAL_TOKENS,
    GPT4_SPLIT_PATTERN,
    SpecialToken,
)

__all__ = [
    "BatchEncoding",
    "MicroTransformerTokenizer",
    "SpecialToken",
    "DEFAULT_SPECIAL_TOKENS",
    "CHAT_TOKENS",
    "GPT4_SPLIT_PATTERN",
    "available_engines",
    "get_engine",
    "register_engine",
]
