"""Model-ready batches from text: padded inputs, causal-LM and masked-LM targets.

Written once over :class:`MicroTransformerTokenizer`, so they work for every
engine. Label positions the loss must ignore are ``-100`` (PyTorch's
``cross_entropy`` default ``ignore_index``, Hugging Face's convention, and
what our models ignore), so a batch goes straight into a model:

>>> out = model(**create_causal_lm_inputs(texts, tok))  # doctest: +SKIP
>>> out.loss.backward()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microtransformer.errors import ConfigError
from microtransformer.tokenization.base import BatchEncoding, MicroTransformerTokenizer, TensorType, _to_tensor

IGNORE_INDEX = -100  # == microtransformer.models.outputs.IGNORE_INDEX (kept here so this module needs no torch)


def prepare_input_for_batch(
    texts: Sequence[str],
    tokenizer: MicroTransformerTokenizer,
    max_length: int = 128,
    padding: bool | str = True,
    truncation: bool = True,
    return_tensors: TensorType = "pt",
    add_special_tokens: bool = False,
) -> BatchEncoding:
    """``input_ids`` + ``attention_mask`` for a batch: the tutorial one-liner.

    >>> batch = prepare_input_for_batch(["hi", "hello there"], tok)  # doctest: +SKIP
    >>> batch["input_ids"].shape  # (B, T)  # doctest: +SKIP
    """
    return tokenizer(
        list(texts),
        max_length=max_length,
        padding=padding,
        truncation=truncation,
        return_tensors=return_tensors,
        add_special_tokens=add_special_tokens,
    )


def create_causal_lm_inputs(
    texts: Sequence[str],
    tokenizer: MicroTransformerTokenizer,
    max_length: int = 128,
    return_tensors: TensorType = "pt",
    add_special_tokens: bool = True,
) -> BatchEncoding:
    """Inputs, attention mask and Hugging Face causal-LM ``labels``: a copy of ``input_ids``, padding at ``-100``.

    As HF's ``DataCollatorForLanguageModeling(mlm=False)``: the labels are
    *not* shifted; the model scores ``logits[:, t]`` against ``labels[:, t + 1]``
    itself, so ``model(**batch).loss`` is the next-token loss over real tokens.
    (``get_batch`` gives the other form, already-shifted ``targets``.)
    """
    enc = _padded_arrays(texts, tokenizer, max_length, add_special_tokens)
    ids = enc["input_ids"]  # (B, T)
    mask = enc["attention_mask"]  # (B, T)
    labels = np.where(mask == 1, ids, IGNORE_INDEX)  # (B, T)
    return _finish({"input_ids": ids, "attention_mask": mask, "labels": labels}, return_tensors)


def create_mlm_inputs(
    texts: Sequence[str],
    tokenizer: MicroTransformerTokenizer,
    max_length: int = 128,
    mlm_probability: float = 0.15,
    seed: int | None = None,
    return_tensors: TensorType = "pt",
    add_special_tokens: bool = True,
) -> BatchEncoding:
    """BERT-style masking: pick ``mlm_probability`` of the non-special tokens;
    of those 80 % become the mask token, 10 % a random ordinary token, 10 % stay.
    ``labels`` hold the original id at picked positions and ``-100`` elsewhere.
    """
    if tokenizer.mask_id is None:
        raise ConfigError("masked-LM inputs need a mask token; train the tokenizer with '<|mask|>' or '[MASK]'")
    if not 0.0 < mlm_probability < 1.0:
        raise ConfigError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
    enc = _padded_arrays(texts, tokenizer, max_length, add_special_tokens)
    ids = enc["input_ids"].copy()  # (B, T)
    rng = np.random.default_rng(seed)
    candidates = ids < tokenizer.n_ordinary  # special tokens (bos/eos/pad/...) are never picked
    picked = (rng.random(ids.shape) < mlm_probability) & candidates
    labels = np.where(picked, ids, IGNORE_INDEX)
    roll = rng.random(ids.shape)
    to_mask = picked & (roll < 0.8)
    to_random = picked & (roll >= 0.8) & (roll < 0.9)
    ids[to_mask] = tokenizer.mask_id
    ids[to_random] = rng.integers(0, tokenizer.n_ordinary, size=int(to_random.sum()))
    return _finish({"input_ids": ids, "attention_mask": enc["attention_mask"], "labels": labels}, return_tensors)


def _padded_arrays(
    texts: Sequence[str], tokenizer: MicroTransformerTokenizer, max_length: int, add_special_tokens: bool
) -> BatchEncoding:
    """Right-padded, truncated numpy ``input_ids``/``attention_mask`` (both label builders start here)."""
    return tokenizer(
        list(texts),
        max_length=max_length,
        padding=True,
        truncation=True,
        add_special_tokens=add_special_tokens,
        padding_side="right",
        return_tensors="np",
    )


def _finish(arrays: dict[str, np.ndarray], return_tensors: TensorType) -> BatchEncoding:
    if return_tensors == "np":
        return BatchEncoding(arrays)
    rows = {k: v.tolist() for k, v in arrays.items()}
    if return_tensors is None:
        return BatchEncoding(rows)
    return BatchEncoding({k: _to_tensor(v, return_tensors) for k, v in rows.items()})
