"""line_columns: each token's byte column in its line, as a table the GPT adds to the token embedding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from microtransformer.data.loader import TokenArrayDataset
from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig
from microtransformer.models.line_columns import TokenLayout, column_rows
from microtransformer.training import checkpoint as ckpt
from microtransformer.training.trainer import TrainConfig, Trainer

PIECES = [b"a", b"bc", b" def", b"\n", b"g\nhi", b"\r\n", b"\n\n", b"jk\n", b"", b"lmnopqrstu"]
BOS = 8  # the empty piece stands for a document start


def _reference(ids: list[int], n_rows: int, start: int = -1) -> tuple[list[int], int]:
    """Rows by reading the bytes one at a time: the column counts bytes since the last newline or BOS."""
    col, rows = start, []
    for i in ids:
        if i == BOS:
            col = 0
        for byte in PIECES[i]:
            col = 0 if byte == ord("\n") else (col + 1 if col >= 0 else -1)
        rows.append(0 if col < 0 else 1 + min(col, n_rows - 2))
    return rows, col


LAYOUT = TokenLayout.from_token_bytes(PIECES, line_starts=(BOS,))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(PIECES) - 1), min_size=1, max_size=40), st.integers(2, 12), st.data())
def test_rows_are_the_byte_columns_and_a_carried_column_continues_them(ids, n_rows, data) -> None:
    rows, end = column_rows(torch.tensor([ids]), LAYOUT.length, LAYOUT.tail, n_rows)
    want, want_end = _reference(ids, n_rows)
    assert rows[0].tolist() == want and int(end[0]) == want_end
    cut = data.draw(st.integers(0, len(ids) - 1))
    _, carried = column_rows(torch.tensor([ids[:cut]]), LAYOUT.length, LAYOUT.tail, n_rows) if cut else (None, torch.tensor([-1]))
    rest, end2 = column_rows(torch.tensor([ids[cut:]]), LAYOUT.length, LAYOUT.tail, n_rows, start=carried)
    assert rest[0].tolist() == want[cut:] and int(end2[0]) == want_end
    padded = torch.tensor([[3, 4] + ids])  # padding that holds newlines must count for nothing
    mask = torch.tensor([[False, False] + [True] * len(ids)])
    assert column_rows(padded, LAYOUT.length, LAYOUT.tail, n_rows, mask=mask)[0][0, 2:].tolist() == want


def test_the_layout_comes_from_the_tokenizer_bytes(shakespeare_200k, tmp_path) -> None:
    from microtransformer.tokenization import MicroTransformerTokenizer

    (tmp_path / "t.txt").write_text(shakespeare_200k[:50_000], encoding="utf-8")
    tok = MicroTransformerTokenizer.train(tmp_path / "t.txt", vocab_size=300, show_progress=False)
    layout = TokenLayout.from_tokenizer(tok)
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak."
    ids = tok.encode(text)
    rows, _ = column_rows(torch.tensor([ids]), layout.length, layout.tail, 128)
    ends = np.cumsum([len(tok.decode_bytes([i])) for i in ids])  # each token's end, as a byte offset
    raw = text.encode()
    want = [0 if b"\n" not in raw[:e] else 1 + e - 1 - raw[:e].rindex(b"\n") for e in ends]
    assert rows[0].tolist() == want
    assert int(layout.length[tok.bos_id]) == 0 and int(layout.tail[tok.bos_id]) == 0


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(PIECES), n_layer=1, n_head=2, n_embd=16, block_size=32, line_columns=8, **kw))
    model.set_token_layout(LAYOUT)
    return model


def test_the_table_adds_the_row_of_each_column_to_the_embedding() -> None:
    ids = torch.tensor([[0, 1, 3, 2, 4, 0]])
    model = _model(position="rotary")
    seen = []
    model.transformer.h[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    logits = model(ids).logits
    with torch.no_grad():
        model.transformer.col.weight.zero_()  # a table of zeros is the model without it
    assert not torch.allclose(model(ids).logits, logits)
    rows, _ = column_rows(ids, LAYOUT.length, LAYOUT.tail, 8)
    assert rows.tolist() == [[0, 0, 1, 5, 3, 4]]  # "a bc\n def g\nhi a": unknown, unknown, 0, 4, 2, 3
    torch.testing.assert_close(seen[0] - seen[1], _model(position="rotary").transformer.col.weight[rows])


def test_config_bounds_and_a_model_without_its_layout() -> None:
    for bad in (1, -1, True, 2.5):
        with pytest.raises(ConfigError, match="line_columns must be 0 \\(off\\) or an integer >= 2"):
            GPTConfig(vocab_size=10, line_columns=bad)
    model = GPT(GPTConfig(vocab_size=10, n_layer=1, n_head=1, n_embd=8, line_columns=4))
    assert not model.has_token_layout
    with pytest.raises(ConfigError, match="a token layout of 3 ids for a model of vocab_size 10"):
        model.set_token_layout(TokenLayout.from_token_bytes([b"a", b"b", b"c"]))
    with pytest.raises(ConfigError, match="for a model with line_columns > 0"):
        GPT(GPTConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=8)).set_token_layout(LAYOUT)


def test_the_trainer_needs_the_tokens_bytes_and_the_checkpoint_keeps_them(tmp_path) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(PIECES), 3000)
    data = TokenArrayDataset({"train": ids[:-500], "val": ids[-500:]}, 16, vocab_size=len(PIECES))
    cfg = TrainConfig(max_steps=3, batch_size=4, eval_interval=3, eval_iters=1, device="cpu", precision="fp32")
    blank = GPT(GPTConfig(vocab_size=len(PIECES), n_layer=1, n_head=2, n_embd=16, block_size=16, line_columns=8))
    with pytest.raises(ConfigError, match="line_columns needs the tokenizer's token bytes"):
        Trainer(blank, data, cfg, tmp_path / "blank", show_progress=False)
    model = GPT(dataclasses.replace(blank.config))
    model.set_token_layout(LAYOUT)  # set by hand: no tokenizer needed
    Trainer(model, data, cfg, tmp_path / "run", show_progress=False).fit()
    loaded, _ = ckpt.load_model_from_checkpoint(ckpt.resolve_checkpoint(tmp_path / "run", "last"))
    assert loaded.has_token_layout and torch.equal(loaded.token_line_tail[: len(PIECES)], LAYOUT.tail)
    x = torch.tensor(ids[:16])[None]
    torch.testing.assert_close(loaded.eval()(x).logits, model.eval()(x).logits)
