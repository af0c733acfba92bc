from __future__ import annotations

import numpy as np
import pytest

from microtransformer.data.batches import create_causal_lm_inputs, create_mlm_inputs, prepare_input_for_batch
from microtransformer.errors import ConfigError
from microtransformer.tokenization import MicroTransformerTokenizer

TEXTS = ["the quick brown fox jumps over the lazy dog", "hello", "a b c d e f g h i j k l m n o p"]


@pytest.fixture(scope="module")
def tok() -> MicroTransformerTokenizer:
    return MicroTransformerTokenizer.train_from_iterator([" ".join(TEXTS) * 30], vocab_size=320)


def test_prepare_input_for_batch(tok) -> None:
    b = prepare_input_for_batch(TEXTS, tok, max_length=8)
    assert tuple(b["input_ids"].shape) == (3, 8)
    assert b["attention_mask"][1].tolist() == [1] * len(tok.encode("hello")) + [0] * (8 - len(tok.encode("hello")))


def test_causal_labels_are_input_ids_with_padding_ignored(tok) -> None:
    """Hugging Face's causal-LM convention: labels == input_ids (unshifted), padding at -100."""
    b = create_causal_lm_inputs(TEXTS, tok, max_length=12, return_tensors="np")
    ids, mask, labels = b["input_ids"], b["attention_mask"], b["labels"]
    assert (mask == 0).any(), "the test needs a padded row"
    for row in range(3):
        n = int(mask[row].sum())
        assert ids[row, 0] == tok.bos_id
        assert labels[row, :n].tolist() == ids[row, :n].tolist()
        assert (labels[row, n:] == -100).all()
        assert (ids[row, n:] == tok.pad_id).all()


def test_ignore_index_is_the_models_ignore_index() -> None:
    from microtransformer.data.batches import IGNORE_INDEX
    from microtransformer.models.outputs import IGNORE_INDEX as MODEL_IGNORE_INDEX

    assert IGNORE_INDEX == MODEL_IGNORE_INDEX == -100


def test_mlm_proportions_and_specials(tok) -> None:
    texts = [TEXTS[0] * 20] * 64
    b = create_mlm_inputs(texts, tok, max_length=128, seed=1, return_tensors="np")
    orig = create_causal_lm_inputs(texts, tok, max_length=128, return_tensors="np")["input_ids"]
    picked = b["labels"] != -100
    ordinary = orig < tok.n_ordinary
    assert not (picked & ~ordinary).any(), "special tokens must never be picked"
    rate = picked.sum() / ordinary.sum()
    assert 0.13 < rate < 0.17
    masked = (b["input_ids"] == tok.mask_id) & picked
    kept = (b["input_ids"] == orig) & picked
    assert 0.76 < masked.sum() / picked.sum() < 0.84
    assert 0.07 < kept.sum() / picked.sum() < 0.14  # 10 % kept + random draws that hit the same id
    assert (b["labels"][picked] == orig[picked]).all()
    again = create_mlm_inputs(texts, tok, max_length=128, seed=1, return_tensors="np")
    assert np.array_equal(again["input_ids"], b["input_ids"])


def test_mlm_needs_mask_token() -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(["abc"], vocab_size=260, special_tokens=["<|pad|>"])
    with pytest.raises(ConfigError, match="mask token"):
        create_mlm_inputs(["abc"], tok)
