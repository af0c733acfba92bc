"""A space after line breaks, for tokenizers of hard-wrapped text (``space_after_newline``).

Byte-level BPE splits words with their leading space (`` word``), so the first
word of a line, which follows a ``\\n`` and not a space, is another token
(``word``, often in more pieces), learnt apart from its common form. In
hard-wrapped books (a line break every ~70 characters) that is one word in
ten. A tokenizer with ``space_after_newline`` encodes the text with a space
after its line breaks and decodes by dropping the space after each line
break, so a line's first word is the same token as anywhere else:
SentencePiece's dummy prefix, per line rather than per text. Two rules:

- ``"last"`` (what ``space_after_newline=True`` trains): a space after the last
  line break of each run, ``"end.\\n\\nNext"`` -> ``"end.\\n\\n Next"``, so a
  paragraph break stays the one token it was;
- ``"every"`` (tokenizers saved before ``"last"`` existed): a space after every
  line break, ``"end.\\n \\n Next"``, which costs a token at many paragraph ends.

Both are bijections on text, and a corpus cut into pieces between a line
break and text (as :mod:`microtransformer.data.corpus` cuts it) changes as
the whole would. The space right after a ``\\n`` in encoded text is always
the tokenizer's, so a token's *text bytes* (for bits per byte) are its bytes
less one per ``"\\n "`` in it, and one less again when it starts with a space
and the token before it ends with a line break (:func:`text_byte_lengths`,
:func:`added_space_pairs`): exact over any sequence, whichever token BPE put
the space in.

>>> add_spaces("one\\ntwo\\n\\nthree"), add_spaces("one\\n\\ntwo", "every")
('one\\n two\\n\\n three', 'one\\n \\n two')
>>> remove_spaces(add_spaces("one\\n two\\n\\n").encode()) == "one\\n two\\n\\n".encode()
True
>>> text_byte_lengths([b"\\n", b" two", b"a\\n b"]), added_space_pairs([b"\\n", b" two", b"a\\n b"])
([1, 4, 3], ([False, True, False], [True, False, False]))
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: the rules ``space_after_newline`` takes; ``True`` means the first
RULES: tuple[str, ...] = ("last", "every")
_LAST = re.compile(r"\n(?!\n)")


def rule_of(value: bool | str) -> str:
    """``space_after_newline``'s value as a rule name (``""``: off); ``True`` is ``"last"``.

    >>> rule_of(True), rule_of(False), rule_of("every")
    ('last', '', 'every')
    """
    if isinstance(value, bool):
        return RULES[0] if value else ""
    if value in RULES or value == "":
        return value
    raise ValueError(f"space_after_newline must be true, false or one of {', '.join(RULES)}; got {value!r}")


def describe(value: bool | str) -> str:
    """A rule in words, for what a command prints (``""`` for none).

    >>> describe(True)
    'a space after line breaks'
    """
    return {"last": "a space after line breaks", "every": "a space after every line break"}.get(rule_of(value), "")


def stored_rule(rule: str) -> bool | str:
    """How ``microtransformer.json`` keeps a rule: ``true`` for ``"every"`` (the value tokenizers saved before
    ``"last"`` existed hold, so their fingerprints stay), else its name."""
    return True if rule == "every" else rule


def loaded_rule(value: object) -> str:
    """A stored value (:func:`stored_rule`) back to a rule name (``""``: none).

    >>> loaded_rule(True), loaded_rule("last"), loaded_rule(None)
    ('every', 'last', '')
    """
    if value is True:
        return "every"
    if value is None or value is False:
        return ""
    return rule_of(str(value))


def add_spaces(text: str, rule: str = "last") -> str:
    """``text`` as the tokenizer encodes it: a space after the last line break of each run (``"every"``: after
    every line break)."""
    return text.replace("\n", "\n ") if rule == "every" else _LAST.sub("\n ", text)


def remove_spaces(data: bytes) -> bytes:
    """Decoded bytes back to text: the space after each line break dropped (either rule)."""
    return data.replace(b"\n ", b"\n")


def text_byte_lengths(pieces: Sequence[bytes]) -> list[int]:
    """Bytes of text each token stands for on its own: its bytes less the space added after each line break inside
    it (a space it starts with is the next function's)."""
    return [len(b) - b.count(b"\n ") for b in pieces]


def added_space_pairs(pieces: Sequence[bytes]) -> tuple[list[bool], list[bool]]:
    """``(starts with a space, ends with a line break)`` per token: a token of the first kind after one of the
    second stands for one byte less, the space the tokenizer added after that line break."""
    return [b.startswith(b" ") for b in pieces], [b.endswith(b"\n") for b in pieces]


class SpaceRemover:
    """:func:`remove_spaces` token by token, for streaming: remembers whether the last bytes ended a line.

    >>> r = SpaceRemover()
    >>> [r(b) for b in (b"one\\n", b" two", b"\\n\\n", b" ")]
    [b'one\\n', b'two', b'\\n\\n', b'']
    """

    def __init__(self) -> None:
        self.after_newline = False

    def __call__(self, data: bytes) -> bytes:
        if not data:  # a byteless piece changes nothing
            return data
        if self.after_newline and data.startswith(b" "):
            data = data[1:]
        self.after_newline = data.endswith(b"\n")  # then a space or a line break comes next
        return remove_spaces(data)

    def reset(self) -> None:
        """A special token between: the next ordinary bytes start a new run (as in ``decode_bytes``)."""
        self.after_newline = False
