"""Split patterns, the special-token registry and the injection guard.

Special tokens live *after* an engine's ordinary vocabulary (ids
``n_ordinary .. n_ordinary + n_special - 1``), so every engine handles them the
same way. Their strings are never matched inside user text unless the caller
names them in ``allowed_special`` (tiktoken's rule, made the safe default: the
text is encoded as ordinary bytes instead of raising).

>>> reg = SpecialTokenRegistry(parse_special_tokens(["[CLS]", "[SEP]", "[PAD]"]), first_id=1000)
>>> reg.role_id("pad"), reg.content_to_id["[SEP]"]
(1002, 1001)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Union

from microtransformer.errors import ConfigError

# GPT-4 (cl100k) pre-split pattern, as used by tiktoken/nanochat. Note the
# possessive quantifiers: they need the ``regex`` module, not ``re``.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
# GPT-2 pattern (what Hugging Face's ByteLevel pre-tokenizer uses).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# nanochat's split: GPT-4's with numbers in runs of at most 2 digits.
NANOCHAT_SPLIT_PATTERN = GPT4_SPLIT_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}{1,2}")
SPLIT_PATTERNS = {"gpt4": GPT4_SPLIT_PATTERN, "gpt2": GPT2_SPLIT_PATTERN, "nanochat": NANOCHAT_SPLIT_PATTERN}


def resolve_pattern(pattern: str | None) -> str | None:
    """A preset name (``"gpt4"``, ``"gpt2"``, ``"nanochat"``) -> its regex; a regex or None as is.

    >>> resolve_pattern("nanochat") == NANOCHAT_SPLIT_PATTERN
    True
    """
    if pattern is None:
        return None
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"pattern must be a regex or one of {sorted(SPLIT_PATTERNS)}, got {pattern!r}")
    return SPLIT_PATTERNS.get(pattern, pattern)

ROLES = ("bos", "eos", "pad", "unk", "mask")

# nanochat's chat tokens, in its order.
CHAT_TOKENS = (
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
)

# Well-known names get their role without the user spelling it out.
KNOWN_ROLES: dict[str, str] = {
    "<|bos|>": "bos", "<|eos|>": "eos", "<|pad|>": "pad", "<|unk|>": "unk", "<|mask|>": "mask",
    "<|endoftext|>": "eos",
    "<s>": "bos", "</s>": "eos", "<pad>": "pad", "<unk>": "unk", "<mask>": "mask",
    "[CLS]": "bos", "[SEP]": "eos", "[PAD]": "pad", "[UNK]": "unk", "[MASK]": "mask",
}


@dataclass(frozen=True)
class SpecialToken:
    """A special token's text and its role (``bos``, ``eos``, ``pad``, ``unk``, ``mask`` or None)."""

    content: str
    role: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.content, str) or not self.content:
            raise ConfigError(f"special token must be a non-empty string, got {self.content!r}")
        if self.role is not None and self.role not in ROLES:
            raise ConfigError(f"unknown special-token role {self.role!r}; use one of {', '.join(ROLES)}")


DEFAULT_SPECIAL_TOKENS: tuple[SpecialToken, ...] = (
    SpecialToken("<|bos|>", "bos"),
    SpecialToken("<|eos|>", "eos"),
    SpecialToken("<|pad|>", "pad"),
    SpecialToken("<|mask|>", "mask"),
    *(SpecialToken(t) for t in CHAT_TOKENS),
)

# nanochat's SPECIAL_TOKENS, in its order: bos first, then the chat tokens.
NANOCHAT_SPECIAL_TOKENS: tuple[SpecialToken, ...] = (SpecialToken("<|bos|>", "bos"), *(SpecialToken(t) for t in CHAT_TOKENS))
SPECIAL_TOKEN_PRESETS: dict[str, tuple[SpecialToken, ...]] = {
    "default": DEFAULT_SPECIAL_TOKENS,
    "nanochat": NANOCHAT_SPECIAL_TOKENS,
}

SpecialTokensSpec = Union[None, str, Sequence[Union[str, SpecialToken]], Mapping[str, str]]


def parse_special_tokens(spec: SpecialTokensSpec) -> tuple[SpecialToken, ...]:
    """Normalize the ways users name special tokens.

    ``None`` gives the defaults; a preset name (``"nanochat"``, ``"default"``)
    its tokens; a list takes strings (``"[SEP]"`` gets its
    well-known role, ``"eos=</doc>"`` names one) or :class:`SpecialToken`; a
    mapping is ``{role: content}``.
    """
    if spec is None:
        return DEFAULT_SPECIAL_TOKENS
    if isinstance(spec, str):
        if spec in SPECIAL_TOKEN_PRESETS:
            return SPECIAL_TOKEN_PRESETS[spec]
        raise ConfigError(
            f"special_tokens must be a list of strings or a preset ({', '.join(SPECIAL_TOKEN_PRESETS)}), "
            f"not the string {spec!r}: pass [{spec!r}]"
        )
    items: list[SpecialToken] = []
    if isinstance(spec, Mapping):
        items = [SpecialToken(content, role) for role, content in spec.items()]
    else:
        for item in spec:
            if isinstance(item, SpecialToken):
                items.append(item)
            elif isinstance(item, str):
                role, sep, content = item.partition("=")
                if sep and role in ROLES and content:
                    items.append(SpecialToken(content, role))
                else:
                    items.append(SpecialToken(item, KNOWN_ROLES.get(item)))
            else:
                raise ConfigError(f"special token must be a string, got {type(item).__name__}")
    seen: set[str] = set()
    roles: dict[str, str] = {}
    for tok in items:
        if tok.content in seen:
            raise ConfigError(f"special token {tok.content!r} is listed twice")
        seen.add(tok.content)
        if tok.role is not None:
            if tok.role in roles:
                raise ConfigError(
                    f"two special tokens claim the role {tok.role!r}: {roles[tok.role]!r} and {tok.content!r}"
                )
            roles[tok.role] = tok.content
    return tuple(items)


class SpecialTokenRegistry:
    """Special tokens with ids, roles and the splitter used for ``allowed_special``."""

    def __init__(self, tokens: Iterable[SpecialToken], first_id: int) -> None:
        self.tokens: tuple[SpecialToken, ...] = tuple(tokens)
        self.first_id = first_id
        self.content_to_id: dict[str, int] = {t.content: first_id + i for i, t in enumerate(self.tokens)}
        self.id_to_content: dict[int, str] = {i: c for c, i in self.content_to_id.items()}
        self._role_to_id = {t.role: first_id + i for i, t in enumerate(self.tokens) if t.role}
        self._splitters: dict[frozenset[str], re.Pattern[str]] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def role_id(self, role: str) -> int | None:
        return self._role_to_id.get(role)

    @cached_property
    def ids(self) -> frozenset[int]:
        return frozenset(self.id_to_content)

    def to_json(self) -> list[dict]:
        return [{"content": t.content, "role": t.role, "id": self.first_id + i} for i, t in enumerate(self.tokens)]

    def resolve_allowed(self, allowed_special: Literal["all"] | Iterable[str]) -> frozenset[str]:
        """Check ``allowed_special`` names registered tokens; ``"all"`` allows every one."""
        if allowed_special == "all":
            return frozenset(self.content_to_id)
        if isinstance(allowed_special, str):
            raise ConfigError(
                f"allowed_special must be a set of token strings or 'all', got the string {allowed_special!r}; "
                f"pass {{{allowed_special!r}}}"
            )
        allowed = frozenset(allowed_special)
        unknown = allowed - self.content_to_id.keys()
        if unknown:
            raise ConfigError(
                f"allowed_special names tokens that are not special tokens of this tokenizer: {sorted(unknown)}; "
                f"registered: {sorted(self.content_to_id)}"
            )
        return allowed

    def splitter(self, allowed: frozenset[str]) -> re.Pattern[str]:
        """A compiled regex matching the allowed special strings (longest first)."""
        pat = self._splitters.get(allowed)
        if pat is None:
            alternatives = sorted(allowed, key=len, reverse=True)
            pat = re.compile("|".join(re.escape(s) for s in alternatives))
            self._splitters[allowed] = pat
        return pat

    def split(self, text: str, allowed: frozenset[str]) -> list[str | int]:
        """Cut ``text`` into ordinary pieces (str) and allowed special tokens (their id).

        >>> r = SpecialTokenRegistry([SpecialToken("<|eos|>", "eos")], first_id=300)
        >>> r.split("a<|eos|>b", frozenset({"<|eos|>"}))
        ['a', 300, 'b']
        """
        out: list[str | int] = []
        pos = 0
        for m in self.splitter(allowed).finditer(text):
            if m.start() > pos:
                out.append(text[pos : m.start()])
            out.append(self.content_to_id[m.group()])
            pos = m.end()
        if pos < len(text):
            out.append(text[pos:])
        return out
