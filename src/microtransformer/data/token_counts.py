"""How often each token id occurs in a split's ids: what the options that depend on token frequency read.

``new_names`` finds its name tokens by their counts and ``head_split`` orders
the output layer by them. A split can be billions of ids in shards on disk, so
the count reads a prefix of at most :data:`COUNT_LIMIT` ids, a chunk at a time
(the frequent tokens of a corpus show in its first tens of millions).

>>> token_counts(np.array([2, 0, 2, 5]), 4).tolist()  # ids past vocab_size are not counted
[1, 0, 2, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: how many ids of a split are counted at most (a prefix), and how many are read at a time
COUNT_LIMIT = 50_000_000
COUNT_CHUNK = 1 << 20


def token_counts(ids: Any, vocab_size: int) -> np.ndarray:
    """``(vocab_size,)`` int64 counts of the first :data:`COUNT_LIMIT` of ``ids`` (an array, a memmap or a stream
    that slices into one)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, min(len(ids), COUNT_LIMIT), COUNT_CHUNK):
        chunk = np.asarray(ids[start : start + COUNT_CHUNK], dtype=np.int64)
        counts += np.bincount(chunk[chunk < vocab_size], minlength=vocab_size)
    return counts
