"""A space after every line break, for tokenizers of hard-wrapped text (``space_after_newline``).

Byte-level BPE splits words with their leading space (`` word``), so the first
word of a line, which follows a ``\\n`` and not a space, is another token
(``word``, often in more pieces), learnt apart from its common form. In
hard-wrapped books (a line break every ~70 characters) that is one word in
ten. A tokenizer with ``space_after_newline`` encodes ``text.replace("\\n",
"\\n ")`` and decodes by dropping the space after each line break, so a line's
first word is the same token as anywhere else: SentencePiece's dummy prefix,
per line rather than per text.

The change is a bijection on text and local to each ``\\n``: the pieces a
corpus is read in change as the whole would, and decode back whole.
A token's *text bytes* (for bits per byte) are its bytes less one per ``\\n``
in it: the space the tokenizer added after that line break is not text, and
it is counted once over a sequence wherever BPE put it.

>>> add_spaces("one\\ntwo")
'one\\n two'
>>> remove_spaces(add_spaces("one\\n two\\n\\n").encode()) == "one\\n two\\n\\n".encode()
True
>>> text_byte_lengths([b"\\n", b" two", b"a"])
[0, 4, 1]
"""

from __future__ import annotations

from collections.abc import Sequence


def add_spaces(text: str) -> str:
    """``text`` as the tokenizer encodes it: a space after every line break."""
    return text.replace("\n", "\n ")


def remove_spaces(data: bytes) -> bytes:
    """Decoded bytes back to text: the space after each line break dropped."""
    return data.replace(b"\n ", b"\n")


def text_byte_lengths(pieces: Sequence[bytes]) -> list[int]:
    """Bytes of text each token stands for: its bytes less the space added after each of its line breaks."""
    return [len(b) - b.count(b"\n") for b in pieces]


class SpaceRemover:
    """:func:`remove_spaces` token by token, for streaming: remembers whether the last bytes ended a line.

    >>> r = SpaceRemover()
    >>> [r(b) for b in (b"one\\n", b" two", b"\\n \\n", b" ")]
    [b'one\\n', b'two', b'\\n\\n', b'']
    """

    def __init__(self) -> None:
        self.after_newline = False

    def __call__(self, data: bytes) -> bytes:
        if self.after_newline and data.startswith(b" "):
            data = data[1:]
        self.after_newline = data.endswith(b"\n")  # then a space comes next, in this token or the next
        return remove_spaces(data)

    def reset(self) -> None:
        """A special token between: the next ordinary bytes start a new run (as in ``decode_bytes``)."""
        self.after_newline = False
