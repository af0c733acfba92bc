"""Both models take the calls nanoGPT, the tutorials and Hugging Face users write.

``logits, loss = model(idx, targets)``, ``model(idx)[0]``, ``model(**batch).loss``
with HF labels (-100 ignored, shifted inside), ``attention_mask`` with left
and right padding, and ``logits`` with exactly ``vocab_size`` columns.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microtransformer.data.batches import create_causal_lm_inputs, prepare_input_for_batch
from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig, LSTMConfig, LSTMLanguageModel
from microtransformer.models.outputs import CausalLMOutput
from microtransformer.tokenization import MicroTransformerTokenizer

VOCAB = 100  # not a multiple of 64: the GPT pads to 128 inside


def make(kind: str, vocab_size: int = VOCAB) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gpt":
        return GPT(GPTConfig(vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32)).eval()
    return LSTMLanguageModel(LSTMConfig(vocab_size=vocab_size, n_embd=16, n_hidden=24, n_layer=2)).eval()


KINDS = ["gpt", "lstm"]


@pytest.fixture(scope="module")
def tok() -> MicroTransformerTokenizer:
    text = "the quick brown fox jumps over the lazy dog, then naps in the warm sun. "
    return MicroTransformerTokenizer.train_from_iterator([text * 20], vocab_size=300)


@pytest.mark.parametrize("kind", KINDS)
def test_output_unpacks_indexes_and_has_attributes(kind):
    model = make(kind)
    x = torch.randint(0, VOCAB, (2, 6))
    out = model(x, torch.randint(0, VOCAB, (2, 6)))
    assert isinstance(out, CausalLMOutput)
    logits, loss = out
    assert out[0] is logits is out.logits and out[1] is loss is out.loss
    assert logits.shape == (2, 6, VOCAB) and logits.size(-1) == model.vocab_size
    assert logits.is_contiguous()
    assert model(x).loss is None
    assert model(x, last_only=True).logits.shape == (2, 1, VOCAB)


@pytest.mark.parametrize("kind", KINDS)
def test_minus_100_is_ignored_and_nothing_else_is_special(kind):
    model = make(kind)
    x = torch.randint(0, VOCAB, (3, 10))
    y = torch.randint(0, VOCAB, (3, 10))
    keep = torch.rand(3, 10) < 0.6
    y_ignored = torch.where(keep, y, torch.full_like(y, -100))
    logits, loss = model(x, y_ignored)
    expected = F.cross_entropy(logits[keep], y[keep])  # only the kept positions, by hand
    torch.testing.assert_close(loss, expected)
    # what sits at an ignored position does not matter
    y_other = torch.where(keep, y, torch.randint(0, VOCAB, y.shape))
    assert not torch.isclose(model(x, y_other).loss, loss)
    # -1 (nanoGPT's old marker) is not special any more: it is an invalid class
    with pytest.raises((IndexError, RuntimeError)):
        model(x, torch.where(keep, y, torch.full_like(y, -1)))


@pytest.mark.parametrize("kind", KINDS)
def test_model_star_star_batch_with_labels_equals_the_manual_shift(kind, tok):
    model = make(kind, tok.vocab_size)
    texts = ["the quick brown fox", "naps", "then the lazy dog jumps over the fox in the sun"]
    batch = create_causal_lm_inputs(texts, tok, max_length=16)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    out = model(**batch)
    logits = out.logits  # (B, T, V)
    labels = batch["labels"]
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, tok.vocab_size), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, manual)
    # the same loss through nanoGPT's already-shifted targets
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]
    torch.testing.assert_close(model(batch["input_ids"], targets, attention_mask=batch["attention_mask"]).loss, out.loss)
    # and it only counts real tokens: each row alone, weighted by its number of predictions
    per_row = []
    for i, text in enumerate(texts):
        alone = create_causal_lm_inputs([text], tok, max_length=16)
        per_row.append((model(**alone).loss, int(alone["attention_mask"].sum()) - 1))
    weighted = sum(loss * n for loss, n in per_row) / sum(n for _, n in per_row)
    torch.testing.assert_close(out.loss, weighted, rtol=1e-5, atol=1e-5)
    out.loss.backward()


def test_labels_and_targets_together_are_refused():
    model = make("gpt")
    x = torch.randint(0, VOCAB, (1, 4))
    with pytest.raises(ConfigError, match="not both"):
        model(x, x, labels=x)
    with pytest.raises(ConfigError, match="attention_mask has shape"):
        model(x, attention_mask=torch.ones(1, 5))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_gives_each_sequence_its_logits_alone(kind, side, tok):
    """fp32: the real positions of a padded batch match each sequence run alone to 1e-5."""
    model = make(kind, tok.vocab_size)
    texts = ["the quick brown fox jumps over the lazy dog", "naps", "then the warm sun"]
    batch = prepare_input_for_batch(texts, tok, max_length=32)
    ids = batch["input_ids"]
    mask = batch["attention_mask"]
    if side == "left":  # move each row's padding to the front
        ids = torch.stack([torch.roll(r, int((m == 0).sum())) for r, m in zip(ids, mask)])
        mask = torch.stack([torch.roll(m, int((m == 0).sum())) for m in mask])
        assert mask[:, -1].all() and not mask[:, 0].all()
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits  # (B, T, V)
    assert torch.isfinite(logits).all(), "padding positions must not produce NaN"
    for row, text in enumerate(texts):
        alone = torch.tensor([tok.encode(text)])
        with torch.no_grad():
            want = model(alone).logits[0]  # (n, V)
        got = logits[row][mask[row].bool()]  # (n, V)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gpt_positions_count_from_the_first_real_token():
    """A left-padded row longer than block_size still fits when its real tokens do."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=16, block_size=8)).eval()
    real = torch.randint(0, VOCAB, (1, 8))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), real], dim=1)  # 12 columns, 8 real
    mask = torch.cat([torch.zeros(1, 4), torch.ones(1, 8)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, attention_mask=mask).logits[:, 4:], model(real).logits)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.randint(0, VOCAB, (1, 10)), attention_mask=torch.tensor([[0] + [1] * 9]))  # 9 real tokens


def test_gpt_cache_with_padding_equals_full_forward():
    """Prefill a left-padded batch into the KV cache, then feed tokens one by one: same logits as one pass."""
    model = make("gpt")
    ids = torch.randint(0, VOCAB, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :4] = 0
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        cache = model.new_cache(2)
        parts = [model(ids[:, :6], attention_mask=mask[:, :6], cache=cache).logits]
        for t in range(6, 10):
            parts.append(model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache).logits)
    got = torch.cat(parts, dim=1)
    torch.testing.assert_close(got[mask.bool()], full[mask.bool()], rtol=1e-5, atol=1e-5)


def test_lstm_refuses_a_mask_with_gaps():
    model = make("lstm")
    with pytest.raises(ConfigError, match="one run"):
        model(torch.randint(0, VOCAB, (1, 5)), attention_mask=torch.tensor([[1, 0, 1, 1, 0]]))


def test_tutorial_pytorch_loop_shapes(tok):
    """The PyTorch loop's ``criterion(logits.view(-1, vocab_size), y.view(-1))`` works on our logits."""
    model = make("gpt", tok.vocab_size)
    x = torch.randint(0, tok.vocab_size, (2, 7))
    logits, _ = model(x)
    loss = torch.nn.CrossEntropyLoss()(logits.view(-1, tok.vocab_size), x.view(-1))
    assert torch.isfinite(loss)


def test_lstm_row_without_new_tokens_keeps_its_state():
    model = make("lstm")
    ids = torch.randint(0, VOCAB, (2, 4))
    with torch.no_grad():
        cache = model.new_cache(2)
        model(ids, cache=cache)
        h, c = (t.clone() for t in cache.hc)
        step = torch.randint(0, VOCAB, (2, 1))
        mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])  # row 1's new token is padding
        model(step, attention_mask=mask, cache=cache)
        torch.testing.assert_close(cache.hc[0][:, 1], h[:, 1])
        torch.testing.assert_close(cache.hc[1][:, 1], c[:, 1])
        assert not torch.equal(cache.hc[0][:, 0], h[:, 0])  # row 0 moved on
        alone = model.new_cache(1)
        model(torch.cat([ids[:1], step[:1]], 1), cache=alone)
        torch.testing.assert_close(cache.hc[0][:, :1], alone.hc[0], rtol=1e-5, atol=1e-6)
