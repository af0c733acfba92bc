"""Keras models over our tokenizers: pad-aware loss and masks, train, save + reload, generate.

Also checks that the Keras transformer is our GPT: with the torch model's
weights copied in, it gives the same logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.models import GPT, GPTConfig
from microtransformer.tokenization import MicroTransformerTokenizer


@pytest.fixture(scope="module")
def keras_lm(tf):
    from microtransformer.integrations import keras_lm

    return keras_lm


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in ("assignment", "if", "for", "while"))
    return [p for p in text.split("\n\n") if p.strip()]


@pytest.fixture(scope="module")
def tok(corpus) -> MicroTransformerTokenizer:
    return MicroTransformerTokenizer.train_from_iterator(corpus, vocab_size=400)


def test_masked_loss_ignores_the_pad_id_not_id_0(keras_lm, tok):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, tok.vocab_size)).astype(np.float32)
    targets = rng.integers(0, 50, size=(2, 6)).astype(np.int32)
    targets[0, 0] = 0  # an ordinary token: counted
    targets[1, 3:] = tok.pad_id  # padding: left out
    got = float(keras_lm.masked_lm_loss(tok.pad_id)(targets, logits))
    ref = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits).reshape(-1, tok.vocab_size),
        torch.from_numpy(np.where(targets == tok.pad_id, -100, targets).astype(np.int64)).reshape(-1),
    )
    assert got == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.parametrize("builder", ["lstm", "gpt"])
def test_left_padded_rows_predict_what_they_predict_alone(keras_lm, tok, builder):
    build = keras_lm.build_keras_lstm if builder == "lstm" else keras_lm.build_keras_gpt
    kw = dict(n_layer=2, n_head=2, n_embd=32, block_size=32) if builder == "gpt" else dict(n_embd=16, n_hidden=24)
    model = build(tok.vocab_size, pad_id=tok.pad_id, **kw)
    a, b = tok.encode("x = 1 if y else 2"), tok.encode("for")
    batch = np.array([a, [tok.pad_id] * (len(a) - len(b)) + b], dtype=np.int32)
    out = np.asarray(model(batch, training=False))  # (2, T, V)
    assert out.shape == (2, len(a), tok.vocab_size) and np.isfinite(out).all()
    alone = np.asarray(model(np.array([b], dtype=np.int32), training=False))[0]
    np.testing.assert_allclose(out[1, len(a) - len(b) :], alone, rtol=1e-4, atol=1e-5)


def test_keras_gpt_is_our_gpt(keras_lm):
    """The torch GPT's weights copied into build_keras_gpt give the same logits: same architecture, same names."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=100, n_layer=2, n_head=2, n_embd=32, block_size=16)
    torch_model = GPT(cfg).eval()
    model = keras_lm.build_keras_gpt(**cfg.to_dict(), pad_id=99, compile=False)
    sd = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    C, H = cfg.n_embd, cfg.n_head
    model.get_layer("wte").set_weights([sd["transformer.wte.weight"][: cfg.vocab_size]])
    model.get_layer("wpe").set_weights([sd["transformer.wpe.weight"]])
    model.get_layer("lm_head").set_weights([sd["transformer.wte.weight"][: cfg.vocab_size].T])
    model.get_layer("ln_f").set_weights([sd["transformer.ln_f.weight"]])
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        block = model.get_layer(f"h_{i}")
        qkv = sd[p + "attn.c_attn.weight"].T.reshape(C, 3, H, C // H)  # (C, 3, nh, hs)
        block.ln_1.set_weights([sd[p + "ln_1.weight"]])
        block.ln_2.set_weights([sd[p + "ln_2.weight"]])
        block.attn.set_weights([qkv[:, 0], qkv[:, 1], qkv[:, 2], sd[p + "attn.c_proj.weight"].T.reshape(H, C // H, C)])
        block.c_fc.set_weights([sd[p + "mlp.c_fc.weight"].T])
        block.c_proj.set_weights([sd[p + "mlp.c_proj.weight"].T])
    ids = np.random.default_rng(0).integers(0, 99, size=(2, 12))
    with torch.no_grad():
        want = torch_model(torch.from_numpy(ids)).logits.numpy()
    got = np.asarray(model(ids.astype(np.int32), training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_keras_gpt_refuses_architectures_it_does_not_implement(keras_lm):
    cfg = GPTConfig(vocab_size=100, n_layer=1, n_head=2, n_embd=32, block_size=16, position="rotary", mlp="relu2")
    with pytest.raises(ConfigError, match="nanoGPT architecture only; not position='rotary', mlp='relu2'"):
        keras_lm.build_keras_gpt(**cfg.to_dict(), pad_id=99, compile=False)
    with pytest.raises(ConfigError, match="not value_embeds=True, value_embed_every=1"):
        keras_lm.build_keras_gpt(**{**cfg.to_dict(), "position": "learned", "mlp": "gelu", "value_embeds": True,
                                    "value_embed_every": 1}, pad_id=99, compile=False)
    plain = {**cfg.to_dict(), "position": "learned", "mlp": "gelu", "value_embed_every": 1}  # no tables: no matter
    assert keras_lm.build_keras_gpt(**plain, pad_id=99, compile=False).count_params() > 0


@pytest.mark.parametrize("builder", ["lstm", "gpt"])
def test_train_save_reload_predict_and_generate(keras_lm, tok, corpus, tmp_path, builder):
    from microtransformer.integrations import to_tf_dataset

    import keras

    keras.utils.set_random_seed(0)
    if builder == "lstm":
        model = keras_lm.build_keras_lstm(tok.vocab_size, pad_id=tok.pad_id, learning_rate=1e-2)
    else:
        model = keras_lm.build_keras_gpt(tok.vocab_size, pad_id=tok.pad_id, n_layer=2, n_head=2, n_embd=64, block_size=64)
    ds = to_tf_dataset(corpus, tok, max_length=32, batch_size=16, seed=0)
    history = model.fit(ds.repeat(), epochs=3, steps_per_epoch=20, verbose=0).history["loss"]
    assert history[-1] < history[0] - 0.3, history  # the loss falls

    prompt = np.array([tok.encode("The for statement")], dtype=np.int32)
    before = np.asarray(model(prompt, training=False))
    keras_lm.save_keras(model, tok, tmp_path / "lm")
    assert (tmp_path / "lm" / "model.keras").is_file() and (tmp_path / "lm" / "tokenizer" / "tokenizer_config.json").is_file()
    loaded, loaded_tok = keras_lm.load_keras(tmp_path / "lm")
    after = np.asarray(loaded(prompt, training=False))
    assert int(after[0, -1].argmax()) == int(before[0, -1].argmax())  # the same next token
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    assert loaded_tok.fingerprint == tok.fingerprint
    assert loaded.loss.ignore_class == tok.pad_id  # compiled with the masked loss again

    greedy = keras_lm.keras_generate_text(model, tok, "The ", max_new_tokens=12, temperature=0)
    assert keras_lm.keras_generate_text(loaded, loaded_tok, "The ", max_new_tokens=12, temperature=0) == greedy
    ids = keras_lm.keras_generate(model, tok.encode("if"), max_new_tokens=8, temperature=0)[0]
    assert ids[0] == int(np.asarray(model(np.array([tok.encode("if")], dtype=np.int32)))[0, -1].argmax())
    a = keras_lm.keras_generate_text(loaded, loaded_tok, "The ", max_new_tokens=12, temperature=0.8, top_k=20, seed=1)
    b = keras_lm.keras_generate_text(loaded, loaded_tok, "The ", max_new_tokens=12, temperature=0.8, top_k=20, seed=1)
    assert a == b and isinstance(a, str)
    batch = keras_lm.keras_generate(loaded, [tok.encode("x ="), tok.encode("while")], max_new_tokens=6, temperature=0)
    assert batch[1] == keras_lm.keras_generate(loaded, tok.encode("while"), max_new_tokens=6, temperature=0)[0]
    loaded.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # and it trains on


def test_top_k_and_top_p_restrict_keras_sampling(keras_lm):
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    assert {int(keras_lm._sample(logits, 1.0, 2, None, rng)[0]) for _ in range(200)} == {0, 1}
    assert {int(keras_lm._sample(logits, 1.0, None, 0.75, rng)[0]) for _ in range(200)} == {0, 1}
    assert int(keras_lm._sample(logits, 0.0, None, None, rng)[0]) == 0


def test_save_load_errors(keras_lm, tok, tmp_path):
    model = keras_lm.build_keras_lstm(tok.vocab_size, pad_id=tok.pad_id, n_embd=8, n_hidden=8)
    other = MicroTransformerTokenizer.train_from_iterator(["hello world"] * 5, vocab_size=300)
    with pytest.raises(CheckpointError, match="vocab_size"):
        keras_lm.save_keras(model, other, tmp_path / "bad")
    with pytest.raises(CheckpointError, match="does not exist"):
        keras_lm.load_keras(tmp_path / "missing")
    with pytest.raises(ConfigError, match="pad_id"):
        keras_lm.build_keras_lstm(tok.vocab_size, pad_id=None)
