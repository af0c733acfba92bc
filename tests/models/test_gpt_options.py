"""The GPT's architecture options: each does what it says, and caching, padding and old configs still hold."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from microtransformer.errors import ConfigError
from microtransformer.models import GPT, GPTConfig
from microtransformer.models import causal_attention
from microtransformer.models.gpt import RMSNorm, apply_rotary, bigram_ids, previous_ids, rotary_tables
from microtransformer.models.line_columns import TokenLayout
from microtransformer.training.recipes import RECIPES

from gpt_testkit import eager_and_compiled_grads

SMALL = dict(vocab_size=97, n_layer=3, n_head=2, n_embd=32, block_size=24)
MODERN = RECIPES["nanochat"].model | {k: SMALL[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}
OPTIONS = [
    {},
    {"position": "rotary"},
    {"norm": "rmsnorm"},
    {"qk_norm": True},
    {"mlp": "relu2"},
    {"mlp_ratio": 2},
    {"tie_embeddings": False},
    {"logit_softcap": 5.0},
    {"value_embeds": True},
    {"value_embeds": True, "value_embed_every": 1},
    {"embed_norm": True},
    {"init": "scaled"},
    {"smear": True},
    {"x0_mix": True},
    {"bigram_buckets": 50},
    {"attn_chunk": 4},
    {"line_columns": 8},
    MODERN,
    MODERN | {"attn_chunk": 4},
    MODERN | {"smear": True, "x0_mix": True},
    MODERN | {"bigram_buckets": 50},
    MODERN | {"line_columns": 8},
    {"head_split": 20},
    {"head_split": 20, "tie_embeddings": False},
    MODERN | {"head_split": 20, "logit_softcap": 0.0},
    {"head_bias": True},
    {"head_bias": True, "tie_embeddings": False, "head_split": 20},
    MODERN | {"head_bias": True},
]


def model(**kw) -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(**{**SMALL, **kw}))
    if kw.get("init") == "scaled":  # zero residual projections: give them weights so the blocks matter here
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name.endswith("c_proj.weight") or name.endswith("ve_gate.weight"):
                    p.normal_(0, 0.05)
    if kw.get("smear"):  # the smear starts off (strength 0): turn it on so it matters here
        with torch.no_grad():
            m.smear_lambda.fill_(0.8)
            m.smear_gate.normal_()
    if kw.get("line_columns"):  # byte lengths for the ids: 1-4 bytes, every fifth id a newline (padding id 0 too)
        m.set_token_layout(TokenLayout.from_token_bytes([b"\n" if i % 5 == 0 else b"x" * (1 + i % 4) for i in range(97)]))
    if kw.get("head_split"):  # counts that put ids out of id order, and a class row that is not zero
        m.set_head_order(torch.randint(0, 1000, (97,)))
        with torch.no_grad():
            m.head_class.normal_()
    if kw.get("head_bias"):  # biases from counts (the unigram model), and a different bias for every id
        m.set_token_counts(torch.randint(0, 1000, (97,)))
        with torch.no_grad():
            m.head_bias.add_(torch.randn_like(m.head_bias))
    if kw.get("bigram_buckets"):  # the pair table starts at zero: fill it so it matters here
        with torch.no_grad():
            m.transformer.bigram.weight.normal_()
    return m.eval()


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "nanogpt")
def test_cached_decoding_and_padding_equal_recompute(options) -> None:
    m = model(**options)
    x = torch.randint(0, 97, (2, 12))
    full = m(x).logits
    cache = m.new_cache(2)
    parts = [m(x[:, :5], cache=cache).logits] + [m(x[:, t : t + 1], cache=cache).logits for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=2e-5, rtol=1e-4)
    # a left-padded row gives the logits it gives alone (positions count from its first real token)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x[:1, :9]], 1)
    mask = torch.tensor([[0] * 3 + [1] * 9])
    torch.testing.assert_close(m(padded, attention_mask=mask).logits[:, 3:], m(x[:1, :9]).logits, atol=2e-5, rtol=1e-4)
    # the loss path the trainer uses equals the logits path
    y = torch.randint(0, 97, (2, 12))
    torch.testing.assert_close(m(x, y, loss_only=True).loss, m(x, y).loss, atol=1e-5, rtol=1e-5)


def test_old_configs_load_as_nanogpt_models() -> None:
    old = {"vocab_size": 97, "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16, "dropout": 0.0, "bias": False}
    cfg = GPTConfig.from_dict(old)
    assert (cfg.position, cfg.norm, cfg.mlp, cfg.tie_embeddings, cfg.logit_softcap) == ("learned", "layernorm", "gelu", True, 0.0)
    m = GPT(cfg)
    assert m.lm_head.weight is m.transformer.wte.weight and "wpe" in m.transformer
    assert cfg.mlp_ratio == 4 and m.transformer.h[0].mlp.c_fc.weight.shape == (4 * 32, 32)


def test_mlp_ratio_sets_the_hidden_width_and_the_flop_count() -> None:
    narrow, wide = model(mlp_ratio=2), model()
    assert narrow.transformer.h[0].mlp.c_fc.weight.shape == (64, 32)
    assert narrow.transformer.h[0].mlp.c_proj.weight.shape == (32, 64)
    per_layer = 2 * (128 - 64) * 32  # c_fc and c_proj shrink by (4 - 2) * n_embd * n_embd each
    assert wide.num_params() - narrow.num_params() == 3 * per_layer
    assert wide.flops_per_token() - narrow.flops_per_token() == 6 * 3 * per_layer
    with pytest.raises(ConfigError, match="mlp_ratio"):
        GPTConfig(**SMALL, mlp_ratio=0)


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"position": "alibi"}, "position must be one of learned, rotary"),
        ({"norm": "batchnorm"}, "norm must be one of"),
        ({"mlp": "swiglu"}, "mlp must be one of gelu, relu2"),
        ({"init": "xavier"}, "init must be one of"),
        ({"logit_softcap": -1.0}, "logit_softcap must be a number >= 0"),
        ({"qk_norm": "yes"}, "qk_norm must be true or false"),
        ({"bigram_buckets": 1}, "bigram_buckets must be 0 \\(off\\) or an integer >= 2"),
        ({"bigram_buckets": True}, "bigram_buckets must be 0"),
        ({"position": "rotary", "n_head": 32}, "rotary positions need an even head size"),
        ({"head_split": 97}, "head_split must be 0 \\(one softmax\\) or an integer below vocab_size \\(97\\)"),
        ({"head_split": True}, "head_split must be 0"),
        ({"head_split": 10, "logit_softcap": 15.0}, "head_split and logit_softcap do not go together"),
    ],
)
def test_bad_options_are_config_errors(bad, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        GPTConfig(**{**SMALL, **bad})


def test_rotary_scores_depend_only_on_relative_position() -> None:
    cfg = GPTConfig(**SMALL, position="rotary")
    cos, sin = rotary_tables(cfg)
    q, k = torch.randn(1, 1, 1, cfg.head_dim), torch.randn(1, 1, 1, cfg.head_dim)

    def score(i: int, j: int) -> float:
        qi = apply_rotary(q, cos[i : i + 1], sin[i : i + 1])
        kj = apply_rotary(k, cos[j : j + 1], sin[j : j + 1])
        return float((qi * kj).sum())

    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), rel=1e-3)
    rotated = apply_rotary(q, cos[7:8], sin[7:8])
    assert float(rotated.norm()) == pytest.approx(float(q.norm()), rel=1e-5)  # a rotation keeps lengths
    m = model(position="rotary")
    assert "wpe" not in m.transformer and not any("rope" in k for k in m.state_dict())  # derived, not saved


def test_rmsnorm_relu2_softcap_and_untied_head() -> None:
    x = torch.randn(4, 32) * 3
    torch.testing.assert_close(RMSNorm()(x), x / x.pow(2).mean(-1, keepdim=True).add(torch.finfo(x.dtype).eps).sqrt())
    m = model(norm="rmsnorm", mlp="relu2", tie_embeddings=False, logit_softcap=2.0)
    assert not any("ln_" in name for name, _ in m.named_parameters())  # RMSNorm has no parameters
    assert m.lm_head.weight is not m.transformer.wte.weight
    h = torch.randn(3, 32)
    torch.testing.assert_close(m.transformer.h[0].mlp.act(h), F.relu(h) ** 2)
    logits = m(torch.randint(0, 97, (2, 10))).logits
    assert logits.abs().max() < 2.0
    capped_off = model(norm="rmsnorm", mlp="relu2", tie_embeddings=False)
    with torch.no_grad():
        ref = capped_off(torch.arange(10)[None]).logits
    torch.testing.assert_close(m(torch.arange(10)[None]).logits, 2.0 * torch.tanh(ref / 2.0), atol=1e-5, rtol=1e-5)


def test_qk_norm_makes_attention_scale_free() -> None:
    m = model(qk_norm=True)
    n = model(qk_norm=True)
    with torch.no_grad():  # scaling the query/key weights changes nothing once q and k are normalised
        for block in n.transformer.h:
            block.attn.c_attn.weight[: 2 * 32] *= 7.0
    x = torch.randint(0, 97, (1, 10))
    torch.testing.assert_close(m(x).logits, n(x).logits, atol=1e-5, rtol=1e-4)
    plain, scaled = model(), model()
    with torch.no_grad():
        for block in scaled.transformer.h:
            block.attn.c_attn.weight[: 2 * 32] *= 7.0
    assert not torch.allclose(plain(x).logits, scaled(x).logits, atol=1e-4)


def test_value_embeddings_sit_on_alternate_layers_ending_with_the_last() -> None:
    m = model(value_embeds=True, n_layer=4)
    assert sorted(m.transformer.ve.keys()) == ["1", "3"]
    assert [b.attn.ve_gate is not None for b in m.transformer.h] == [False, True, False, True]
    assert sorted(model(value_embeds=True, n_layer=3).transformer.ve.keys()) == ["0", "2"]


def test_value_embeddings_on_every_layer_or_every_third() -> None:
    every = model(value_embeds=True, n_layer=3, value_embed_every=1)
    assert sorted(every.transformer.ve.keys()) == ["0", "1", "2"]
    assert all(b.attn.ve_gate is not None for b in every.transformer.h)
    assert sorted(model(value_embeds=True, n_layer=5, value_embed_every=3).transformer.ve.keys()) == ["1", "4"]
    with pytest.raises(ConfigError, match="value_embed_every"):
        GPTConfig(**SMALL, value_embed_every=0)


def test_previous_ids_stop_at_sequence_starts_and_padding_and_continue_from_the_cache() -> None:
    ids = torch.tensor([[7, 8, 9, 10], [1, 2, 3, 4]])
    assert previous_ids(ids, None, None, 0).tolist() == [[-1, 7, 8, 9], [-1, 1, 2, 3]]
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)  # row 0 left-padded
    assert previous_ids(ids, None, mask, 0).tolist() == [[-1, -1, -1, 9], [-1, 1, 2, 3]]
    m = model(smear=True)
    cache = m.new_cache(2)
    m(ids, cache=cache)
    nxt = torch.tensor([[11], [5]])
    assert previous_ids(nxt, cache, None, cache.pos).tolist() == [[10], [4]]
    cache.reset()
    assert previous_ids(nxt, cache, None, cache.pos).tolist() == [[-1], [-1]]


def test_smear_and_x0_mix_at_their_neutral_settings_are_the_plain_model() -> None:
    x = torch.randint(0, 97, (2, 12))
    plain = model(**MODERN)
    for extra in ({"smear": True}, {"x0_mix": True}):
        m = model(**MODERN, **extra)
        m.load_state_dict(plain.state_dict(), strict=False)  # the same weights; the option's own stay as set
        with torch.no_grad():
            if "smear" in extra:
                m.smear_lambda.zero_()
            else:
                m.x0_lambdas.zero_()
        torch.testing.assert_close(m(x).logits, plain(x).logits)
        with torch.no_grad():  # away from neutral the option changes the model
            (m.smear_lambda if "smear" in extra else m.x0_lambdas).fill_(0.5)
        assert not torch.allclose(m(x).logits, plain(x).logits, atol=1e-3)


def test_smear_adds_the_gated_previous_embedding() -> None:
    m = model(smear=True)
    ids = torch.tensor([[3, 4, 5]])
    e = m.transformer.wte(ids)
    out = m._smear(e, previous_ids(ids, None, None, 0))
    gate = 0.8 * torch.sigmoid(e[0, 1:, :24] @ m.smear_gate)
    torch.testing.assert_close(out[0, 0], e[0, 0])  # nothing before the first token
    torch.testing.assert_close(out[0, 1:], e[0, 1:] + gate[:, None] * e[0, :-1])


def test_bigram_table_adds_the_row_of_each_previous_current_pair() -> None:
    m = model(bigram_buckets=50)
    ids = torch.tensor([[3, 4, 3, 4], [4, 3, 3, 4]])
    rows = bigram_ids(ids, previous_ids(ids, None, None, 0), 50)
    assert rows[:, 0].tolist() == [49, 49]  # no previous token: the reserved last row
    assert rows[0, 1] == rows[0, 3] == rows[1, 3]  # the pair (3, 4) wherever it occurs
    assert rows[0, 1] != rows[0, 2] and int(rows[:, 1:].max()) < 49  # (4, 3) differs; pairs never reach the last row
    plain = model()
    m.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        m.transformer.bigram.weight.zero_()
        torch.testing.assert_close(m(ids).logits, plain(ids).logits)  # a zero table (its init) is the plain model
        m.transformer.bigram.weight[int(rows[0, 1])] = torch.randn(32)  # only positions with the pair (3, 4) change
        changed = (m(ids).logits - plain(ids).logits).abs().amax(-1) > 1e-6
    assert changed[:, :2].tolist() == [[False, True], [False, False]]  # (and what attends to them later)
    assert torch.count_nonzero(GPT(GPTConfig(**SMALL, bigram_buckets=50, init="scaled")).transformer.bigram.weight) == 0


def test_scaled_init_starts_every_block_as_the_identity() -> None:
    torch.manual_seed(0)
    m = GPT(GPTConfig(**SMALL, init="scaled", tie_embeddings=False))
    for name, p in m.named_parameters():
        if name.endswith("c_proj.weight"):
            assert torch.count_nonzero(p) == 0, name
    assert float(m.transformer.wte.weight.detach().std()) == pytest.approx(1.0, rel=0.05)
    assert float(m.lm_head.weight.detach().std()) == pytest.approx(0.001, rel=0.05)
    bound = math.sqrt(3 / 32)
    assert float(m.transformer.h[0].mlp.c_fc.weight.detach().abs().max()) <= bound


def test_param_roles_cover_every_parameter_once_and_flops_count_matmuls() -> None:
    for options in OPTIONS:
        m = model(**options)
        roles = m.param_roles()
        ids = [id(p) for ps in roles.values() for p in ps]
        assert len(ids) == len(set(ids)) == len({id(p) for p in m.parameters()})
        assert all(p.dim() == 2 for p in roles["matrix"])
    tied, untied = model().param_roles(), model(tie_embeddings=False).param_roles()
    assert [tuple(p.shape) for p in tied["head"]] == [(128, 32)] and len(tied["embedding"]) == 1  # positions
    assert [tuple(p.shape) for p in untied["head"]] == [(128, 32)] and len(untied["embedding"]) == 2
    m = model()  # tied, learned positions: the head's matmul counts, lookups do not
    c, L, V = 32, 3, 128  # V: the padded vocab
    matmul = L * (3 * c * c + c * c + 8 * c * c) + V * c
    assert m.flops_per_token() == 6 * matmul + 12 * L * c * 24


def test_compiled_blocks_run_only_in_training_forwards_and_leave_the_state_dict_alone(monkeypatch) -> None:
    calls: list[int] = []
    options_seen: list[dict | None] = []

    class Recording(torch.nn.Module):  # stands in for torch.compile's wrapper: counts, then runs the block
        def __init__(self, block, options=None):
            super().__init__()
            self.block = block
            options_seen.append(options)

        def forward(self, *args):
            calls.append(1)
            return self.block(*args)

    m = model(**MODERN)
    keys = list(m.state_dict())
    x, y = torch.randint(0, 97, (2, 12)), torch.randint(0, 97, (2, 12))
    eager = m(x, y, loss_only=True).loss
    monkeypatch.setattr(torch, "compile", Recording)
    m.compile_blocks()
    assert list(m.state_dict()) == keys  # the wrappers are not submodules
    torch.testing.assert_close(m(x, y, loss_only=True).loss, eager)
    assert len(calls) == 3  # one per block
    assert options_seen == [{"cpp_wrapper": True}] * 3  # on a CPU: one C++ library per graph
    with torch.no_grad():  # evaluation stays eager
        m(x)
    m.generate(x[:, :4], max_new_tokens=2)  # so does generation (KV cache)
    assert len(calls) == 3
    m.compile_blocks(False)
    m(x, y, loss_only=True)
    assert len(calls) == 3


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_blocks_give_the_eager_loss_and_gradients(monkeypatch) -> None:
    """A real ``torch.compile`` of the blocks (a few seconds on a CPU with a C++ compiler), with the hand-written
    RMSNorm and ReLU² backward and the blockwise attention (3 query blocks here) inside the compiled code, as on
    every CPU."""
    monkeypatch.setattr(causal_attention, "QUERY_BLOCK", 4)
    m = model(**MODERN).train()
    x, y = torch.randint(0, 97, (2, 12)), torch.randint(0, 97, (2, 12))
    eager, compiled, eager_grads, grads = eager_and_compiled_grads(m, x, y)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for name, g in grads.items():
        torch.testing.assert_close(g, eager_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_chunked_layers_see_only_their_chunk_and_the_last_layer_sees_everything() -> None:
    m = model(**MODERN | {"attn_chunk": 4})
    outputs: list[torch.Tensor] = []
    m.transformer.h[1].register_forward_hook(lambda mod, args, out: outputs.append(out))
    x = torch.randint(1, 97, (1, 12))
    changed = x.clone()
    changed[0, 5] = 0  # a token in the second chunk (positions 4-7)
    logits = [m(ids).logits for ids in (x, changed)]
    moved = (outputs[0] - outputs[1]).abs().amax(-1)[0]  # (T,): layer 1 (of 3) output, per position
    assert moved[:5].max() == 0 and moved[5:8].min() > 0 and moved[8:].max() == 0  # chunked: 4-7 only, from 5 on
    assert (logits[0] - logits[1]).abs().amax(-1)[0, 8:].min() > 0  # the last layer reads across chunks
    full = model(**MODERN)
    assert full.flops_per_token() - m.flops_per_token() == 12 * 32 * 2 * (24 - 4)  # two chunked layers of 24 positions
