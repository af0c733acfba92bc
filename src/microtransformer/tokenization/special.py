"""Split patterns, the special-token registry and the injection guard."""

from __future__ import annotations

# GPT-4 (cl100k) pre-split pattern, as used by tiktoken/nanochat. Note the
# possessive quantifiers: they need the ``regex`` module, not ``re``.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
# GPT-2 pattern (what Hugging Face's ByteLevel pre-tokenizer uses).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
