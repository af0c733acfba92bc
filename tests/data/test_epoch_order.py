"""EpochOrder: every window once per epoch, a deal that continues across calls, ranks and resumes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microtransformer.data.loader import EpochOrder, TokenArrayDataset, window_starts
from microtransformer.errors import ConfigError, DataError


def windows_per_epoch(n_tokens: int, block_size: int) -> int:
    return max(1, (n_tokens - 1) // block_size - 1)


def test_one_epoch_deals_every_window_once_in_a_shuffled_order():
    order = EpochOrder(seed=3)
    n, T = 1000, 8
    L = windows_per_epoch(n, T)  # 123
    starts = np.concatenate([order.take(n, T, k) for k in (1, 50, 72)])  # calls of any size
    offset = int(starts.min())
    assert 0 <= offset < T
    assert sorted(((starts - offset) // T).tolist()) == list(range(L))  # each window once, one phase
    assert ((starts - offset) % T == 0).all()
    assert not np.array_equal(starts, np.sort(starts))  # shuffled, not in reading order
    assert int(starts.max()) + T + 1 <= n


def test_the_deal_continues_across_calls_and_from_any_row():
    n, T = 777, 5
    whole = EpochOrder(seed=1).take(n, T, 500)  # more than three epochs
    parts = EpochOrder(seed=1)
    assert np.array_equal(np.concatenate([parts.take(n, T, 120), parts.take(n, T, 380)]), whole)
    assert np.array_equal(EpochOrder(seed=1, row=321).take(n, T, 100), whole[321:421])  # a resumed run
    assert not np.array_equal(EpochOrder(seed=2).take(n, T, 500), whole)


def test_each_epoch_is_a_new_shuffle_and_may_move_the_cuts():
    n, T = 5000, 16
    L = windows_per_epoch(n, T)
    starts = EpochOrder(seed=0).take(n, T, 4 * L).reshape(4, L)
    assert len({tuple(e.tolist()) for e in starts}) == 4
    assert len({int(e.min()) % T for e in starts}) > 1  # the offsets differ (four draws from 16 phases)
    for epoch in starts:
        assert len(set(epoch.tolist())) == L


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 3000), T=st.integers(1, 64), row=st.integers(0, 10_000), count=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_window_fits_and_an_epoch_never_repeats_one(n, T, row, count, seed):
    if n < T + 1:
        with pytest.raises(DataError, match="block_size"):
            EpochOrder(seed).take(n, T, count)
        return
    starts = EpochOrder(seed, row=row).take(n, T, count)
    assert starts.dtype == np.int64 and len(starts) == count
    assert (starts >= 0).all() and (starts + T + 1 <= n).all()
    L = windows_per_epoch(n, T)
    epochs = np.arange(row, row + count) // L
    for e in np.unique(epochs):
        here = starts[epochs == e]
        assert len(set(here.tolist())) == len(here)


def test_ranks_take_their_rows_of_one_global_deal():
    n, T, B, W = 2000, 10, 3, 2
    world = window_starts(n, T, B * W, EpochOrder(seed=4, row=60))
    ranks = [window_starts(n, T, B, EpochOrder(seed=4, row=60), rank=r, world_size=W) for r in range(W)]
    assert np.array_equal(np.concatenate(ranks), world)


def test_datasets_read_the_dealt_windows():
    ids = np.arange(500)
    ds = TokenArrayDataset({"train": ids, "val": ids[:100]}, block_size=12, vocab_size=500)
    x, y = ds.get_batch("train", 6, EpochOrder(seed=9))
    starts = EpochOrder(seed=9).take(500, 12, 6)
    assert x[:, 0].tolist() == starts.tolist()
    assert np.array_equal(y.numpy(), x.numpy() + 1)


def test_a_source_with_its_own_random_windows_is_told_to_use_random_sampling():
    with pytest.raises(ConfigError, match="sampling='random'"):
        EpochOrder(seed=0).integers(0, 10, size=3)
