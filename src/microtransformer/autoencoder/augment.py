"""Synthetic variants of training chunks, so the auto-encoder's code reaches past the books.

Four novels contain no ``Hello``, ``141``, ``):\\n`` or ``café``; a network
that only memorizes their chunks gives such strings the code of a neighbour.
A share of each pre-training batch (``PretrainConfig.augment_share``) is
replaced by one of these variants of a sampled chunk:

* **case**: capitalized, lower-cased or upper-cased (``the`` -> ``The``);
* **lead**: the leading space dropped or added, or replaced by an opening
  character (`` word`` -> ``(word``, ``word``);
* **digits**: a random group of 1-3 digits, maybe after a space (the
  GPT-4 split cuts numbers into such groups);
* **punct**: a run of 1-3 ASCII punctuation marks, maybe after a space or
  before a newline (``):\\n``, `` --``);
* **accent**: one vowel or ``n``/``c`` replaced by an accented letter.

Random choices come from the caller's ``torch.Generator`` (the sampler's,
saved in every checkpoint), so a resumed run draws the same variants.

>>> g = torch.Generator().manual_seed(0)
>>> len({augment_chunk(b" walking", g, 16) for _ in range(50)}) > 5
True
"""

from __future__ import annotations

import string

import torch

__all__ = ["TRANSFORMS", "augment_chunk"]

TRANSFORMS = ("case", "lead", "digits", "punct", "accent")
_OPENERS = "([{<\"'-\t\n#*_/@"
_PUNCT = string.punctuation
_ACCENTS = {
    "a": "áàâäã", "e": "éèêë", "i": "íìîï", "o": "óòôöõ", "u": "úùûü", "n": "ñ", "c": "ç",
    "A": "ÁÀÂÄ", "E": "ÉÈÊ", "I": "ÍÎ", "O": "ÓÔÖ", "U": "ÚÜ", "N": "Ñ", "C": "Ç",
}


def _randint(g: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (1,), generator=g))


def _choice(g: torch.Generator, seq: str | tuple[str, ...]) -> str:
    return seq[_randint(g, len(seq))]


def augment_chunk(chunk: bytes, g: torch.Generator, max_len: int) -> bytes:
    """One random variant of ``chunk`` (or a synthetic number/punctuation chunk), at most ``max_len`` bytes.

    Returns ``chunk`` itself when the drawn transform does not apply (not
    UTF-8, no letter to change) or the variant would be too long.
    """
    kind = _choice(g, TRANSFORMS)
    if kind == "digits":
        text = "".join(_choice(g, string.digits) for _ in range(1 + _randint(g, 3)))
        text = " " + text if _randint(g, 2) else text
    elif kind == "punct":
        text = "".join(_choice(g, _PUNCT) for _ in range(1 + _randint(g, 3)))
        text = (" " + text) if _randint(g, 3) == 0 else (text + "\n") if _randint(g, 4) == 0 else text
    else:
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            return chunk
        if kind == "case":
            text = _choice(g, (text.capitalize(), text.lower(), text.upper(), text.lstrip().capitalize().rjust(len(text))))
        elif kind == "lead":
            if text.startswith(" "):
                text = text[1:] if _randint(g, 2) else _choice(g, _OPENERS) + text[1:]
            else:
                text = " " + text
        else:  # accent
            spots = [i for i, ch in enumerate(text) if ch in _ACCENTS]
            if not spots:
                return chunk
            i = spots[_randint(g, len(spots))]
            text = text[:i] + _choice(g, _ACCENTS[text[i]]) + text[i + 1 :]
    out = text.encode("utf-8")
    return out if 1 <= len(out) <= max_len else chunk
