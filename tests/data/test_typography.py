"""typography: training windows re-set in drawn apostrophe, dash and double-quote styles (data/typography.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from microtransformer.data.typography import TypographySwap
from microtransformer.errors import ConfigError
from microtransformer.training.trainer import TrainConfig

from window_testkit import split_run_losses, tiny_trainer

PARAGRAPHS = (
    "“I don’t know,” said he—and then, “You’re late.”",
    '"It is the knight\'s horse," said Sancho--"the one he\'s riding."',
    "“Why, Mr. Darcy,” she cried, “you can't mean it--can you?”",
    'He said: "Yes." She said "no"; and the sea\'s edge was grey, the dog’s bark loud.',
)


def _plain(text: str) -> str:
    """One style for every mark: what a re-set window must still say."""
    return text.replace("’", "'").replace("—", "--").replace("“", '"').replace("”", '"')


@pytest.fixture(scope="module")
def styled(tmp_path_factory):
    from microtransformer.tokenization import MicroTransformerTokenizer

    rng = np.random.default_rng(0)
    text = "\n\n".join(str(rng.choice(PARAGRAPHS)) for _ in range(600))
    root = tmp_path_factory.mktemp("typography")
    (root / "t.txt").write_text(text, encoding="utf-8")
    tok = MicroTransformerTokenizer.train(root / "t.txt", vocab_size=400, show_progress=False)
    return tok, np.array(tok.encode(text))


def _windows(ids: np.ndarray, n: int = 40, width: int = 48) -> np.ndarray:
    starts = np.linspace(0, len(ids) - width, n).astype(int)
    return np.stack([ids[s : s + width] for s in starts]).astype(np.int64)


def test_a_re_set_window_says_the_same_in_one_style_per_mark(styled):
    tok, ids = styled
    swap = TypographySwap.from_tokenizer(tok, share=1.0)
    rows = _windows(ids)
    out = swap(rows)
    assert out.shape == rows.shape
    styles = set()
    for before, after in zip(rows, out):
        a, b = tok.decode(before.tolist()), tok.decode(after.tolist())
        assert _plain(a).startswith(_plain(b)[:-12])  # the same text (its end may be cut: a row keeps its length)
        assert not ("’" in b and "'" in b) and not ("—" in b and "--" in b)  # one style per mark in a window
        assert not ('"' in b and re.search("[“”]", b))
        for m in re.finditer("[“”]", b):  # curly quotes open after a space and close after a word
            before_mark = b[m.start() - 1] if m.start() else " "
            assert (m.group() == "“") == (before_mark.isspace() or before_mark in "([—-")
        styles.add(("’" in b, "—" in b, "“" in b))
    assert len(styles) >= 4  # the styles are drawn, not fixed


def test_a_window_gets_the_same_styles_every_time_and_another_seed_others(styled):
    tok, ids = styled
    rows = _windows(ids)
    a = TypographySwap.from_tokenizer(tok, share=1.0)(rows)
    assert np.array_equal(a, TypographySwap.from_tokenizer(tok, share=1.0)(rows))  # resume and DDP see the same rows
    assert not np.array_equal(a, TypographySwap.from_tokenizer(tok, share=1.0, seed=1)(rows))


def test_share(styled):
    tok, ids = styled
    rows = _windows(ids, n=200)
    changed = (TypographySwap.from_tokenizer(tok, share=0.5)(rows) != rows).any(axis=1).mean()
    assert 0.2 < changed < 0.6  # half the windows drawn, and some of those drawn keep their styles
    off = TypographySwap.from_tokenizer(tok, share=0.0)
    assert not off.active and off(rows) is rows


def test_config_checks_the_share():
    with pytest.raises(ConfigError, match="typography"):
        TrainConfig(typography=-0.1)


def test_trainer_feeds_re_set_windows_and_resumes_exactly(styled, tmp_path):
    tok, _ = styled
    trainer, model = tiny_trainer(*styled, tmp_path / "full", tokenizer=tok, typography=1.0, new_names=1.0)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0]) if m.training else None)
    full = trainer.fit()
    fed = [tok.decode(x.tolist()) for batch in seen for x in batch]
    assert any("’" in t for t in fed) and any("'" in t for t in fed)  # both apostrophe styles reach the model
    assert not any("’" in t and "'" in t for t in fed)

    losses = split_run_losses(*styled, tmp_path / "split", typography=1.0, new_names=1.0)
    assert losses == [s.loss for s in full.history]


def test_trainer_without_a_tokenizer_warns_and_trains_without(styled, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="microtransformer.training.trainer"):
        trainer, _ = tiny_trainer(*styled, tmp_path / "run", typography=1.0, new_names=1.0)
    assert trainer.typography_swap is None and "typography is off: it needs the tokenizer" in caplog.text
