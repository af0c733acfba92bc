"""``tf.data`` datasets of ``(inputs, targets)`` for Keras: from token shards or from texts.

From **token shards** (what ``mtx data prepare`` writes): batch ``i`` holds
the random windows ``ShardDataset.get_batch(split, batch_size,
numpy.random.default_rng((seed, i)))`` draws, as int32; the split is the
shards' own ``train`` / ``val`` files. The memmaps are reopened per batch and
only ``prefetch`` batches wait in memory, so a corpus larger than RAM streams.
Epochs continue the sequence (epoch 2 starts at batch ``num_batches``), so
each epoch sees new windows and a run is repeatable from ``seed``.

From **texts** (the tutorial's way): each text is encoded (BOS/EOS added),
truncated to ``max_length + 1`` tokens and split into ``inputs = ids[:-1]``
and ``targets = ids[1:]``; a batch is right-padded with the tokenizer's pad
id (our Keras models mask it, and :func:`~.keras_lm.masked_lm_loss` leaves
padded targets out). The texts are shuffled per epoch from ``seed``.

>>> train = to_tf_dataset("shards/", split="train", block_size=128, batch_size=16, seed=0)  # doctest: +SKIP
>>> inputs, targets = next(iter(train))  # (16, 128) int32 each  # doctest: +SKIP
>>> ds = to_tf_dataset(["Hello world!", "Tokenizers are fun to build."], tok, batch_size=2)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from microtransformer.errors import ConfigError
from microtransformer.integrations import require_tensorflow

if TYPE_CHECKING:  # pragma: no cover
    from microtransformer.data.loader import ShardDataset
    from microtransformer.tokenization import MicroTransformerTokenizer


def to_tf_dataset(
    source: str | os.PathLike[str] | ShardDataset | Sequence[str],
    tokenizer: MicroTransformerTokenizer | None = None,
    **kwargs: Any,
) -> Any:
    """A ``tf.data.Dataset`` of ``(inputs, targets)``: shards (a path or a ``ShardDataset``) or a list of texts.

    Shards take :func:`shards_to_tf_dataset`'s keywords, texts need the
    ``tokenizer`` and take :func:`texts_to_tf_dataset`'s.
    """
    from microtransformer.data.loader import ShardDataset

    if isinstance(source, (str, os.PathLike, ShardDataset)):
        if tokenizer is not None:
            raise ConfigError("token shards are already encoded: pass no tokenizer (or pass a list of texts)")
        return shards_to_tf_dataset(source, **kwargs)
    if tokenizer is None:
        raise ConfigError("a list of texts needs the tokenizer: to_tf_dataset(texts, tok, ...)")
    return texts_to_tf_dataset(list(source), tokenizer, **kwargs)


def shards_to_tf_dataset(
    shards: str | os.PathLike[str] | ShardDataset,
    *,
    split: str = "train",
    block_size: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    num_batches: int | None = None,
    prefetch: int = 2,
) -> Any:
    """Random ``(inputs, targets)`` windows from token shards, ``(batch_size, block_size)`` int32 each.

    ``num_batches`` per epoch defaults to one pass over the split's tokens
    (``tokens // (batch_size * block_size)``, at least 1). ``block_size`` is
    required with a path and taken from a ``ShardDataset``.
    """
    from microtransformer.data.loader import ShardDataset, sample_windows

    tf = require_tensorflow()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(shards, ShardDataset):
        data = shards
    else:
        if block_size is None:
            raise ConfigError("pass block_size (the window length), e.g. block_size=128")
        data = ShardDataset(shards, block_size)
    T = data.block_size
    if num_batches is None:
        num_batches = max(1, data.num_tokens(split) // (batch_size * T))
    if not isinstance(num_batches, int) or num_batches < 1:
        raise ConfigError(f"num_batches must be a positive integer, got {num_batches!r}")
    epochs_started = [0]

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        first = epochs_started[0] * num_batches
        epochs_started[0] += 1
        for i in range(first, first + num_batches):
            rows = sample_windows(data.memmap(split), T, batch_size, np.random.default_rng((seed, i)))  # (B, T+1)
            yield rows[:, :-1].astype(np.int32), rows[:, 1:].astype(np.int32)

    spec = tf.TensorSpec(shape=(batch_size, T), dtype=tf.int32)
    ds = tf.data.Dataset.from_generator(batches, output_signature=(spec, spec))
    # a known length: Keras shows progress and ends epochs without an "ran out of data" warning
    return ds.apply(tf.data.experimental.assert_cardinality(num_batches)).prefetch(prefetch)


def texts_to_tf_dataset(
    texts: Sequence[str],
    tokenizer: MicroTransformerTokenizer,
    *,
    max_length: int = 128,
    batch_size: int = 16,
    shuffle: bool = True,
    seed: int = 0,
    add_special_tokens: bool = True,
) -> Any:
    """``(inputs, targets)`` batches from texts, right-padded with the pad id to the longest in the batch."""
    tf = require_tensorflow()
    if isinstance(texts, str):
        raise ConfigError("pass a list of texts, not one string")
    pad = tokenizer.pad_id
    if pad is None:
        raise ConfigError("padding needs a pad token; train the tokenizer with one (the default special tokens have '<|pad|>')")
    rows = [ids for ids in tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens) if len(ids) >= 2]
    if not rows:
        raise ConfigError("no text gives 2 or more tokens: nothing to predict")
    rows = [ids[: max_length + 1] for ids in rows]
    inputs = tf.ragged.constant([ids[:-1] for ids in rows], dtype=tf.int32)
    targets = tf.ragged.constant([ids[1:] for ids in rows], dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    ds = ds.ragged_batch(batch_size)
    return ds.map(lambda x, y: (x.to_tensor(default_value=pad), y.to_tensor(default_value=pad)))
