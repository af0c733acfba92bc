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

import regex

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


# Text a split pattern is tried on before training: a pattern must never match the empty string here.
_PATTERN_PROBES = ("", "a", "Hello, world! 123 x_y-z 'q'\n\n\tnaïve 東京 🙂  end.\n")


def validate_pattern(pattern: str) -> str:
    r"""``pattern`` if it is a usable pre-split regex, else :class:`ConfigError` with the reason.

    Refused: an invalid regex (the regex error is in the message) and a
    pattern that can match the empty string (``x*``): tiktoken panics on it
    at every encode.

    >>> validate_pattern(r"\w+|\s+|.") == r"\w+|\s+|."
    True
    """
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"the split pattern must be a non-empty regex string, got {pattern!r}")
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise ConfigError(f"--pattern {pattern!r} is not a valid regex: {exc}") from None
    for probe in _PATTERN_PROBES:
        for m in compiled.finditer(probe):
            if m.start() == m.end():
                raise ConfigError(
                    f"--pattern {pattern!r} can match the empty string (at {m.start()} of {probe!r}); "
                    "every alternative must consume at least one character (use + instead of *)"
                )
    return pattern


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

# Well-known names get their role without the user spelling it out (any case of the ones below).
KNOWN_ROLES: dict[str, str] = {
    "<|bos|>": "bos", "<|eos|>": "eos", "<|pad|>": "pad", "<|unk|>": "unk", "<|mask|>": "mask",
    "<|endoftext|>": "eos", "<|startoftext|>": "bos", "<|begin_of_text|>": "bos", "<|end_of_text|>": "eos",
    "<s>": "bos", "</s>": "eos", "<pad>": "pad", "<unk>": "unk", "<mask>": "mask",
    "<bos>": "bos", "<eos>": "eos", "<cls>": "bos", "<sep>": "eos",
    "[CLS]": "bos", "[SEP]": "eos", "[PAD]": "pad", "[UNK]": "unk", "[MASK]": "mask",
    "[BOS]": "bos", "[EOS]": "eos",
}
_KNOWN_ROLES_FOLDED = {k.lower(): v for k, v in KNOWN_ROLES.items()}
_ROLE_PREFIX = re.compile(r"[A-Za-z_]+")


def known_role(token: str) -> str | None:
    """The role a well-known special-token spelling implies (``"<BOS>"`` -> ``"bos"``), else None."""
    return _KNOWN_ROLES_FOLDED.get(token.lower())


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
    its tokens; a list takes strings (``"[SEP]"`` and ``"<eos>"`` get their
    well-known role, ``"eos=</doc>"`` names one) or :class:`SpecialToken`; a
    mapping is ``{role: content}``. A word before ``=`` that is not a role
    (``"boss=<a>"``) and an empty token (``"bos="``) are errors, not literal
    tokens.
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
                items.append(_parse_one(item))
            else:
                raise ConfigError(f"special token must be a string, got {type(item).__name__}")
    _check_unique(items)
    return tuple(items)


def _check_unique(tokens: Sequence[SpecialToken]) -> None:
    """Each special-token string once, each role once."""
    seen: set[str] = set()
    roles: dict[str, str] = {}
    for tok in tokens:
        if tok.content in seen:
            raise ConfigError(f"special token {tok.content!r} is listed twice")
        seen.add(tok.content)
        if tok.role is not None:
            if tok.role in roles:
                raise ConfigError(
                    f"two special tokens claim the role {tok.role!r}: {roles[tok.role]!r} and {tok.content!r}"
                )
            roles[tok.role] = tok.content


def _parse_one(item: str) -> SpecialToken:
    """``"TOKEN"`` (role from :data:`KNOWN_ROLES`) or ``"role=TOKEN"``."""
    role, sep, content = item.partition("=")
    if not sep or not _ROLE_PREFIX.fullmatch(role):  # "<a=b>", "=": a literal token with an "=" in it
        return SpecialToken(item, known_role(item))
    if role.lower() not in ROLES:
        raise ConfigError(
            f"special token {item!r}: {role!r} is not a role; write role=TOKEN with a role of {', '.join(ROLES)}, "
            "or the token alone"
        )
    if not content:
        raise ConfigError(f"special token {item!r} names the role {role.lower()!r} but no token; write e.g. {role.lower()}=<|{role.lower()}|>")
    return SpecialToken(content, role.lower())


class SpecialTokenRegistry:
    """Special tokens with ids, roles and the splitter used for ``allowed_special``."""

    def __init__(self, tokens: Iterable[SpecialToken], first_id: int) -> None:
        self.tokens: tuple[SpecialToken, ...] = tuple(tokens)
        _check_unique(self.tokens)  # a loaded config too: two ids for one string would break decode
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
