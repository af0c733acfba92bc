"""new_names: made-up names swapped into training windows (data/new_names.py and the trainer's use of it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microtransformer.data.new_names import NameSwap
from microtransformer.errors import ConfigError
from microtransformer.training.trainer import TrainConfig

from window_testkit import split_run_losses, tiny_trainer

NAMES = (1, 2)
CAPITALS = (10, 11, 12)
PIECES = (20, 21, 22, 23)


def _swap(**kw) -> NameSwap:
    mask = np.zeros(30, dtype=bool)
    mask[list(NAMES)] = True
    return NameSwap(mask, np.array(CAPITALS), np.array(PIECES), **kw)


def _spellings(row: list[int]) -> list[tuple[int, ...]]:
    """The made-up names in a swapped row: each a capital followed by its pieces."""
    out, i = [], 0
    while i < len(row):
        if row[i] in CAPITALS:
            j = i + 1
            while j < len(row) and row[j] in PIECES:
                j += 1
            out.append(tuple(row[i:j]))
            i = j
        else:
            i += 1
    return out


def test_each_name_becomes_one_made_up_name_throughout_the_window():
    row = np.array([[5, 1, 6, 2, 7, 1, 8, 2, 9, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]])
    out = _swap(max_pieces=3)(row)[0].tolist()
    assert len(out) == row.shape[1] and not set(out) & set(NAMES)
    names = _spellings(out)
    assert len(names) == 5 and names[0] == names[2] == names[4] and names[1] == names[3]  # 1 _ 2 _ 1 _ 2 _ 1
    assert all(2 <= len(n) <= 4 for n in names)
    assert [t for t in out if t not in CAPITALS + PIECES][:5] == [5, 6, 7, 8, 9]  # the other ids keep their order


def test_a_window_gets_the_same_names_every_time_and_another_seed_others():
    rows = np.tile(np.array([5, 1, 6, 2] * 8), (16, 1)) + np.arange(16)[:, None] * (np.arange(32) == 0)
    a, b = _swap()(rows), _swap()(rows)
    assert np.array_equal(a, b)  # a pure function of the window: resume and DDP ranks see the same rows
    assert not np.array_equal(a, _swap(seed=1)(rows))


def test_share_and_rows_without_names():
    rows = np.array([[5, 1, 6, 1]] * 200)
    rows[:, 0] = np.arange(200) % 10 + 3  # 200 different windows
    rows[:, 2] = np.arange(200) // 10 + 3
    changed = (_swap(share=0.5)(rows) != rows).any(axis=1).mean()
    assert 0.3 < changed < 0.7
    plain = np.array([[5, 6, 7, 8]])
    assert np.array_equal(_swap()(plain), plain)
    off = _swap(share=0.0)
    assert not off.active and off(rows) is rows


class _Vocab:
    """A tokenizer stand-in: ``id_to_token`` over a fixed list of strings."""

    def __init__(self, strings: list[str]) -> None:
        self.strings = strings
        self.vocab_size = len(strings)

    def id_to_token(self, token_id: int) -> str:
        return self.strings[token_id]


def test_name_tokens_are_capitalised_words_seldom_seen_in_lowercase():
    strings = [" Pierre", " The", " the", " Rare", "Pierre", " B", " Ka", " Kate", "ar", "zz", " Moscow", " moscow"]
    counts = {0: 40, 1: 40, 2: 400, 3: 5, 4: 40, 7: 40, 8: 60, 9: 3, 10: 40, 11: 30}
    ids = np.concatenate([np.full(n, i) for i, n in counts.items()])
    swap = NameSwap.from_tokenizer(_Vocab(strings), ids)
    assert [strings[i] for i in np.flatnonzero(swap.names)] == [" Pierre", " Kate"]
    # " The": common as " the"; " Rare": too rare; "Pierre": no space; " Moscow": " moscow" is not rare enough
    assert sorted(strings[i] for i in swap.capitals) == [" B", " Ka"]
    assert [strings[i] for i in swap.pieces] == ["ar"]  # "zz" is too rare to spell with


def test_config_checks_the_share():
    with pytest.raises(ConfigError, match="new_names"):
        TrainConfig(new_names=1.5)


@pytest.fixture(scope="module")
def named_text(tmp_path_factory):
    from microtransformer.tokenization import MicroTransformerTokenizer

    rng = np.random.default_rng(0)
    people, words = ["Pierre", "Natasha", "Andrew", "Sonya"], ["the", "day", "was", "fine", "and", "bar", "car", "Bo", "Ka"]
    text = " ".join(
        f"{rng.choice(people)} said to {rng.choice(people)} that {' '.join(rng.choice(words, 4))}. The man went to the house."
        for _ in range(400)
    )
    root = tmp_path_factory.mktemp("names")
    (root / "t.txt").write_text(text, encoding="utf-8")
    tok = MicroTransformerTokenizer.train(root / "t.txt", vocab_size=330, show_progress=False)
    return tok, np.array(tok.encode(text))


def test_trainer_feeds_the_model_made_up_names_and_resumes_exactly(named_text, tmp_path):
    tok, _ = named_text
    trainer, model = tiny_trainer(*named_text, tmp_path / "full", tokenizer=tok, new_names=1.0)
    names = {tok.id_to_token(int(i)) for i in np.flatnonzero(trainer.name_swap.names)}
    assert {" Natasha", " Andrew"} <= names and " The" not in names  # " The" is common as " the"
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0]) if m.training else None)
    full = trainer.fit()
    fed = torch.cat([x.flatten() for x in seen]).numpy()
    assert len(fed) and not trainer.name_swap.names[fed].any()

    assert split_run_losses(*named_text, tmp_path / "split", new_names=1.0) == [s.loss for s in full.history]


def test_trainer_without_a_tokenizer_says_it_trains_without_the_swap(named_text, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="microtransformer.training.trainer"):
        trainer, _ = tiny_trainer(*named_text, tmp_path / "run", new_names=1.0)
    assert trainer.name_swap is None and "new_names is off: it needs the tokenizer to find" in caplog.text
