"""``model.generate``: batched == one prompt at a time, cache == full recompute, eos per row, seeding."""

from __future__ import annotations

import pytest
import torch

from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig, LSTMConfig, LSTMLanguageModel

VOCAB = 70


def make(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gpt":
        return GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=40, dropout=0.1))
    return LSTMLanguageModel(LSTMConfig(vocab_size=VOCAB, n_embd=16, n_hidden=32, n_layer=2))


KINDS = ["gpt", "lstm"]
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3], [40, 41, 42, 43]]


def tutorial_greedy(model, prompt: list[int], n: int) -> list[int]:
    """The tutorials' loop: full recompute, argmax of the last position, append (the slow reference)."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids[:, -40:])[0][:, -1, :]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt) :].tolist()


def padded(prompts, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(map(len, prompts))
    pad = 69  # any id: the mask says it is padding
    if side == "left":
        ids = [[pad] * (T - len(p)) + p for p in prompts]
        mask = [[0] * (T - len(p)) + [1] * len(p) for p in prompts]
    else:
        ids = [p + [pad] * (T - len(p)) for p in prompts]
        mask = [[1] * len(p) + [0] * (T - len(p)) for p in prompts]
    return torch.tensor(ids), torch.tensor(mask)


@pytest.mark.parametrize("kind", KINDS)
def test_single_prompt_greedy_equals_the_tutorial_loop(kind):
    model = make(kind)
    out = model.generate(torch.tensor([PROMPTS[0]]), max_new_tokens=20, do_sample=False)
    assert out.shape == (1, 7 + 20)
    assert out[0, :7].tolist() == PROMPTS[0]
    model.eval()
    assert out[0, 7:].tolist() == tutorial_greedy(model, PROMPTS[0], 20)
    assert model.generate(PROMPTS[0], max_new_tokens=20, temperature=0).tolist() == out.tolist()  # a plain list works


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_greedy_equals_each_prompt_alone(kind, side, use_cache):
    model = make(kind)
    alone = [model.generate([p], max_new_tokens=15, do_sample=False)[0, len(p) :].tolist() for p in PROMPTS]
    ids, mask = padded(PROMPTS, side)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=15, do_sample=False, use_cache=use_cache)
    assert torch.equal(out[:, : ids.size(1)], ids)  # the prompts come back as given
    assert out[:, ids.size(1) :].tolist() == alone
    assert model.training  # training mode restored


@pytest.mark.parametrize("kind", KINDS)
def test_kv_cache_equals_full_recompute_with_padding(kind):
    model = make(kind)
    ids, mask = padded(PROMPTS, "left")
    cached = model.generate(ids, attention_mask=mask, max_new_tokens=25, do_sample=False)
    naive = model.generate(ids, attention_mask=mask, max_new_tokens=25, do_sample=False, use_cache=False)
    assert torch.equal(cached, naive)


def test_sliding_window_past_block_size_matches_one_prompt_alone():
    """Past block_size the GPT re-runs the last half of its window; a batch does it like each row alone."""
    model = make("gpt")
    prompts = [list(range(1, 31)), [7, 8]]
    alone = [model.generate([p], max_new_tokens=30, do_sample=False)[0, len(p) :].tolist() for p in prompts]
    ids, mask = padded(prompts, "left")
    out = model.generate(ids, attention_mask=mask, max_new_tokens=30, do_sample=False)
    assert out[:, 30:].tolist() == alone


@pytest.mark.parametrize("kind", KINDS)
def test_rows_stop_at_their_own_eos(kind):
    model = make(kind)
    ids, mask = padded(PROMPTS, "left")
    free = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False)[:, ids.size(1) :]
    eos = int(free[1, 3])  # the token row 1 emits at step 3 becomes eos
    out = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=0)
    new = out[:, ids.size(1) :]
    for row in range(3):
        hits = (free[row] == eos).nonzero()
        stop = int(hits[0]) if len(hits) else None
        if stop is None:
            assert new[row].tolist() == free[row, : new.size(1)].tolist()
        else:
            assert new[row, : stop + 1].tolist() == free[row, : stop + 1].tolist()  # the eos is kept
            assert (new[row, stop + 1 :] == 0).all()  # then padding
    # every row stopped: the loop ends early
    all_stop = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                              eos_token_id=free[:, 0].tolist())
    assert all_stop.size(1) == ids.size(1) + 1


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_sampling_repeats_and_rows_are_independent_of_the_batch(kind):
    model = make(kind)
    ids, mask = padded(PROMPTS, "left")

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return model.generate(ids, attention_mask=mask, max_new_tokens=20, temperature=1.0, top_k=10, top_p=0.9, generator=g)

    a, b, c = draw(1), draw(1), draw(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a[:, ids.size(1):].max()) < VOCAB


def test_generate_rejects_bad_input():
    model = make("gpt")
    with pytest.raises(ConfigError, match="at least one prompt token"):
        model.generate(torch.tensor([[1, 2]]), attention_mask=torch.tensor([[0, 0]]))
    with pytest.raises(ConfigError, match=r"\[0, 70\)"):
        model.generate([[1, 70]])
    with pytest.raises(ConfigError, match="top_k"):
        model.generate([[1]], top_k=-1)
    with pytest.raises(ConfigError, match="pad_token_id -100"):
        model.generate([[1]], eos_token_id=2, pad_token_id=-100)
    with pytest.raises(ConfigError, match="different lengths"):
        model.generate([[1, 2], [3]])
    assert model.generate([[1, 2]], max_new_tokens=0).tolist() == [[1, 2]]
