"""TensorFlow inputs: ``return_tensors="tf"`` everywhere, and ``to_tf_dataset`` from shards and from texts."""

from __future__ import annotations

import numpy as np
import pytest

from microtransformer.data.batches import create_causal_lm_inputs, create_mlm_inputs, prepare_input_for_batch
from microtransformer.data.corpus import Corpus
from microtransformer.data.loader import ShardDataset
from microtransformer.data.prepare import prepare_shards
from microtransformer.errors import ConfigError
from microtransformer.tokenization import MicroTransformerTokenizer

TEXTS = ["Hello world!", "TensorFlow integration with our tokenizer.", "Tokenizers are fun to build."]


@pytest.fixture(scope="module")
def tok() -> MicroTransformerTokenizer:
    from pydoc_data.topics import topics

    return MicroTransformerTokenizer.train_from_iterator(list(topics.values())[:30], engine="bpe", vocab_size=600)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, tok):
    from pydoc_data.topics import topics

    d = tmp_path_factory.mktemp("docs")
    for i, name in enumerate(sorted(topics)[:30]):
        (d / f"{i:03d}.txt").write_text(topics[name], encoding="utf-8")
    out = tmp_path_factory.mktemp("shards")
    prepare_shards(Corpus.from_dir(d), tok, out, val_fraction=0.2, show_progress=False)
    return out


def test_return_tensors_tf_on_every_call(tf, tok):
    checks = {
        "__call__": lambda kind: tok(TEXTS, padding=True, return_tensors=kind),
        "encode": lambda kind: {"input_ids": tok.encode(TEXTS[0], add_special_tokens=True, return_tensors=kind)},
        "prepare_input_for_batch": lambda kind: prepare_input_for_batch(TEXTS, tok, max_length=8, return_tensors=kind),
        "create_causal_lm_inputs": lambda kind: create_causal_lm_inputs(TEXTS, tok, max_length=8, return_tensors=kind),
        "create_mlm_inputs": lambda kind: create_mlm_inputs(
            TEXTS * 4, MicroTransformerTokenizer.train_from_iterator(TEXTS * 5, vocab_size=300, special_tokens=["<|pad|>", "<|mask|>"]),
            seed=0, return_tensors=kind),
    }
    for name, call in checks.items():
        got, want = call("tf"), call("np")
        assert set(got) == set(want), name
        for key in want:
            assert isinstance(got[key], tf.Tensor) and got[key].dtype == tf.int32, (name, key)
            np.testing.assert_array_equal(got[key].numpy(), want[key], err_msg=f"{name}[{key}]")


def test_tf_dataset_windows_equal_get_batch_windows(tf, shards):
    """Batch i of the TF dataset == ShardDataset.get_batch with numpy.random.default_rng((seed, i))."""
    from microtransformer.integrations import to_tf_dataset

    torch_data = ShardDataset(shards, block_size=32)
    for split in ("train", "val"):
        ds = to_tf_dataset(shards, split=split, block_size=32, batch_size=4, seed=7, num_batches=3)
        assert ds.element_spec[0].shape == (4, 32) and ds.element_spec[0].dtype == tf.int32
        epoch1 = [(x.numpy(), y.numpy()) for x, y in ds]
        epoch2 = [(x.numpy(), y.numpy()) for x, y in ds]
        assert len(epoch1) == len(epoch2) == 3
        for i, (x, y) in enumerate(epoch1 + epoch2):  # epoch 2 continues at batch 3: new windows
            tx, ty = torch_data.get_batch(split, 4, np.random.default_rng((7, i)))
            np.testing.assert_array_equal(x, tx.numpy())
            np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(epoch1[0][0][:, 1:], epoch1[0][1][:, :-1])  # targets = inputs shifted
    # the val split's windows come from the val files: a window of train never has to appear there
    val = torch_data.memmap("val")[:]
    x, _ = next(iter(to_tf_dataset(ShardDataset(shards, 32), split="val", batch_size=2, seed=0)))
    starts = [np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(val, 32) == row, axis=1)) for row in x.numpy()]
    assert all(len(s) for s in starts)
    default = to_tf_dataset(shards, block_size=32, batch_size=4)
    assert sum(1 for _ in default) == max(1, torch_data.num_tokens("train") // (4 * 32))


def test_tf_dataset_from_texts_pads_with_the_pad_id(tf, tok):
    from microtransformer.integrations import to_tf_dataset

    ds = to_tf_dataset(TEXTS, tok, batch_size=3, shuffle=False)
    (x, y), = list(ds)
    x, y = x.numpy(), y.numpy()
    for row, text in enumerate(TEXTS):
        ids = tok.encode(text, add_special_tokens=True)
        n = len(ids) - 1
        assert x[row, :n].tolist() == ids[:-1] and y[row, :n].tolist() == ids[1:]
        assert (x[row, n:] == tok.pad_id).all() and (y[row, n:] == tok.pad_id).all()
    assert tok.pad_id != 0 and (x == 0).sum() == 0
    shuffled = [b[0].numpy().tolist() for b in to_tf_dataset(TEXTS * 4, tok, batch_size=2, seed=3)]
    again = [b[0].numpy().tolist() for b in to_tf_dataset(TEXTS * 4, tok, batch_size=2, seed=3)]
    assert shuffled == again and len(shuffled) == 6
    truncated = next(iter(to_tf_dataset(TEXTS, tok, max_length=4, shuffle=False)))
    assert truncated[0].shape[1] == 4


def test_tf_dataset_errors(tf, tok, shards):
    from microtransformer.integrations import to_tf_dataset

    with pytest.raises(ConfigError, match="needs the tokenizer"):
        to_tf_dataset(TEXTS)
    with pytest.raises(ConfigError, match="block_size"):
        to_tf_dataset(shards)
    with pytest.raises(ConfigError, match="batch_size"):
        to_tf_dataset(shards, block_size=8, batch_size=0)
    with pytest.raises(ConfigError, match="pad token"):
        to_tf_dataset(TEXTS, MicroTransformerTokenizer.train_from_iterator(TEXTS, vocab_size=260, special_tokens=["<|bos|>"]))
