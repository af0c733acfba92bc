"""Keras language models over our tokenizers: build, train with a pad-aware loss, save, reload, generate.

Two builders, both taking int token ids ``(B, T)`` and returning logits
``(B, T, vocab_size)``:

- :func:`build_keras_lstm`: the tutorial's Embedding + LSTM + Dense, with our
  LSTM's hyper-parameter names (``n_embd``, ``n_hidden``, ``n_layer``);
- :func:`build_keras_gpt`: a decoder-only transformer with our GPT's names
  (``n_layer``, ``n_head``, ``n_embd``, ``block_size``, ``dropout``, ``bias``).

Padding: the tutorial writes ``Embedding(vocab_size, 64, mask_zero=True)``,
which masks id 0, but id 0 is an ordinary token of our tokenizers (the byte
``\\x00`` or the first piece), and the pad id is a special token at the end
of the vocabulary. So the models compute the mask from ``pad_id`` (a
:class:`NotPad` layer): the LSTM skips padding steps, the transformer masks
padding keys and counts positions from the first real token (left padding
works), and :func:`masked_lm_loss` leaves targets equal to ``pad_id`` out of
the mean.

A ``.keras`` file holds the network, :func:`save_keras` writes it beside our
tokenizer directory so the two travel together::

    model_dir/model.keras
    model_dir/tokenizer/      (tokenizer_config.json + the engine's files)

>>> model = build_keras_gpt(tok.vocab_size, pad_id=tok.pad_id, n_layer=2, n_head=2, n_embd=64, block_size=64)  # doctest: +SKIP
>>> model.fit(to_tf_dataset(texts, tok, max_length=64), epochs=5)  # doctest: +SKIP
>>> save_keras(model, tok, "keras_lm/")  # doctest: +SKIP
>>> model, tok = load_keras("keras_lm/")  # doctest: +SKIP
>>> keras_generate_text(model, tok, "The ", max_new_tokens=40, temperature=0.8, top_k=40, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microtransformer.errors import ConfigError
from microtransformer.integrations import require_tensorflow

require_tensorflow()
import keras  # noqa: E402  (Keras 3, installed with TensorFlow >= 2.16)
from keras import ops  # noqa: E402

from microtransformer.errors import CheckpointError
from microtransformer.tokenization import MicroTransformerTokenizer

if TYPE_CHECKING:  # pragma: no cover
    from microtransformer.tokenization import MicroTransformerTokenizer

MODEL_FILE = "model.keras"
TOKENIZER_DIR = "tokenizer"
_PACKAGE = "microtransformer"


# ------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package=_PACKAGE)
class NotPad(keras.layers.Layer):
    """``ids != pad_id``: the padding mask the tutorial got from ``mask_zero=True``, for our pad id."""

    def __init__(self, pad_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pad_id = int(pad_id)

    def call(self, ids: Any) -> Any:
        return ops.not_equal(ids, self.pad_id)  # (B, T) bool

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PositionIds(keras.layers.Layer):
    """Positions counted from each row's first real token (0 at padding), as in our GPT."""

    def call(self, mask: Any) -> Any:
        return ops.maximum(ops.cumsum(ops.cast(mask, "int32"), axis=-1) - 1, 0)  # (B, T)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DecoderBlock(keras.layers.Layer):
    """Pre-norm block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``, causal attention over real tokens."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_embd, self.n_head, self.dropout, self.bias = int(n_embd), int(n_head), float(dropout), bool(bias)
        self.ln_1 = keras.layers.LayerNormalization(epsilon=1e-5, center=bias)
        self.attn = keras.layers.MultiHeadAttention(
            num_heads=n_head, key_dim=n_embd // n_head, dropout=dropout, use_bias=bias
        )
        self.ln_2 = keras.layers.LayerNormalization(epsilon=1e-5, center=bias)
        self.c_fc = keras.layers.Dense(4 * n_embd, activation="gelu", use_bias=bias)
        self.c_proj = keras.layers.Dense(n_embd, use_bias=bias)
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape: Any) -> None:
        self.ln_1.build(input_shape)
        self.attn.build(input_shape, input_shape)
        self.ln_2.build(input_shape)
        self.c_fc.build(input_shape)
        self.c_proj.build((*input_shape[:-1], 4 * self.n_embd))

    def call(self, x: Any, mask: Any, training: bool | None = None) -> Any:
        T = ops.shape(x)[1]
        q = ops.arange(T)[:, None]
        k = ops.arange(T)[None, :]
        # query t sees real keys at or before t, and always itself (no all-masked row at padding queries)
        allowed = ops.logical_or(
            ops.logical_and(ops.less_equal(k, q)[None], ops.cast(mask, "bool")[:, None, :]), ops.equal(k, q)[None]
        )  # (B, T, T)
        h = self.ln_1(x)
        x = x + self.attn(h, h, attention_mask=allowed, training=training)
        return x + self.drop(self.c_proj(self.c_fc(self.ln_2(x))), training=training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_embd": self.n_embd, "n_head": self.n_head, "dropout": self.dropout, "bias": self.bias}


# --------------------------------------------------------------------- loss
def masked_lm_loss(pad_id: int) -> keras.losses.Loss:
    """Sparse cross-entropy on logits, the mean over targets that are not ``pad_id``.

    Keras' own ``ignore_class`` does exactly this and saves with the model,
    so a reloaded ``.keras`` file compiles with the same loss.
    """
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=int(pad_id), name="masked_lm_loss")


def _check_pad(vocab_size: int, pad_id: int | None) -> int:
    if pad_id is None:
        raise ConfigError("the Keras models mask padding by pad_id; pass pad_id=tok.pad_id (train the tokenizer with a pad token)")
    if not 0 <= int(pad_id) < vocab_size:
        raise ConfigError(f"pad_id {pad_id} is outside the vocabulary [0, {vocab_size})")
    return int(pad_id)


def _compile(model: keras.Model, pad_id: int, learning_rate: float) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=masked_lm_loss(pad_id))
    return model


# ----------------------------------------------------------------- builders
def build_keras_lstm(
    vocab_size: int,
    *,
    pad_id: int | None,
    n_embd: int = 64,
    n_hidden: int = 128,
    n_layer: int = 1,
    dropout: float = 0.0,
    learning_rate: float = 1e-3,
    compile: bool = True,
) -> keras.Model:
    """The tutorial's ``Embedding(vocab, 64) -> LSTM(128, return_sequences=True) -> Dense(vocab)``, padding masked.

    Compiled with Adam and :func:`masked_lm_loss` unless ``compile=False``.
    """
    pad_id = _check_pad(vocab_size, pad_id)
    ids = keras.Input(shape=(None,), dtype="int32", name="input_ids")
    mask = NotPad(pad_id, name="not_pad")(ids)  # (B, T)
    x = keras.layers.Embedding(vocab_size, n_embd, name="embedding")(ids)  # (B, T, E)
    for i in range(n_layer):
        x = keras.layers.LSTM(n_hidden, return_sequences=True, dropout=dropout, name=f"lstm_{i}")(x, mask=mask)
    logits = keras.layers.Dense(vocab_size, name="head")(x)  # (B, T, V)
    model = keras.Model(ids, logits, name="keras_lstm_lm")
    return _compile(model, pad_id, learning_rate) if compile else model


TWIN_ARCHITECTURE: dict[str, Any] = {  # the GPT options the Keras twin implements (nanoGPT's block)
    "position": "learned", "norm": "layernorm", "qk_norm": False, "mlp": "gelu",
    "tie_embeddings": True, "logit_softcap": 0.0, "value_embeds": False, "embed_norm": False,
    "smear": False, "x0_mix": False, "bigram_buckets": 0, "value_embed_every": 2, "attn_chunk": 0, "mlp_ratio": 4,
    "cache_theta": 0.0, "cache_lambda": 0.0, "line_columns": 0, "head_split": 0, "head_bias": False,
}


def _check_twin_architecture(architecture: dict[str, Any]) -> None:
    unknown = sorted(set(architecture) - set(TWIN_ARCHITECTURE))
    if unknown:
        raise ConfigError(f"build_keras_gpt got unknown options: {', '.join(unknown)}")
    other = {k: v for k, v in architecture.items() if v != TWIN_ARCHITECTURE[k]}
    if not architecture.get("value_embeds", False):
        other.pop("value_embed_every", None)  # where the tables go does not matter when there are none
    if other:
        wanted = ", ".join(f"{k}={v!r}" for k, v in other.items())
        raise ConfigError(f"the Keras GPT implements the nanoGPT architecture only; not {wanted}")


def build_keras_gpt(
    vocab_size: int,
    *,
    pad_id: int | None,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
    block_size: int = 128,
    dropout: float = 0.0,
    bias: bool = False,
    learning_rate: float = 1e-3,
    compile: bool = True,
    init: str = "gpt2",
    **architecture: Any,
) -> keras.Model:
    """A decoder-only transformer (learned positions, pre-norm blocks, GELU MLP) named like our ``GPTConfig``.

    ``build_keras_gpt(**gpt_config.to_dict(), pad_id=tok.pad_id)`` builds the
    Keras twin of a torch :class:`~microtransformer.models.GPT` config with
    the nanoGPT architecture (the GPT's defaults); the other architecture
    options (rotary, RMSNorm, ...) are refused with a ConfigError, and
    ``init`` is accepted and ignored (Keras initialises its own layers).
    Inputs longer than ``block_size`` real tokens must be cropped (as for the GPT).
    """
    _check_twin_architecture(architecture)
    pad_id = _check_pad(vocab_size, pad_id)
    if n_embd % n_head:
        raise ConfigError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    ids = keras.Input(shape=(None,), dtype="int32", name="input_ids")
    mask = NotPad(pad_id, name="not_pad")(ids)  # (B, T)
    pos = PositionIds(name="position_ids")(mask)  # (B, T)
    tok_emb = keras.layers.Embedding(vocab_size, n_embd, name="wte")(ids)  # (B, T, C)
    pos_emb = keras.layers.Embedding(block_size, n_embd, name="wpe")(pos)  # (B, T, C)
    x = keras.layers.Dropout(dropout, name="drop")(keras.layers.Add(name="embed")([tok_emb, pos_emb]))
    for i in range(n_layer):
        x = DecoderBlock(n_embd, n_head, dropout, bias, name=f"h_{i}")(x, mask)  # (B, T, C)
    x = keras.layers.LayerNormalization(epsilon=1e-5, center=bias, name="ln_f")(x)
    logits = keras.layers.Dense(vocab_size, use_bias=False, name="lm_head")(x)  # (B, T, V)
    model = keras.Model(ids, logits, name="keras_gpt_lm")
    return _compile(model, pad_id, learning_rate) if compile else model


# ---------------------------------------------------------------- save/load
def save_keras(model: keras.Model, tokenizer: MicroTransformerTokenizer, directory: str | os.PathLike[str]) -> Path:
    """Write ``directory/model.keras`` and ``directory/tokenizer/`` (each replaced atomically)."""
    directory = Path(directory)
    _check_match(model, tokenizer, where="the model")
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(directory / TOKENIZER_DIR)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=directory)  # Keras wants the suffix
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, directory / MODEL_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return directory


def load_keras(directory: str | os.PathLike[str]) -> tuple[keras.Model, MicroTransformerTokenizer]:
    """The model and tokenizer :func:`save_keras` wrote; a typed error when either is missing or they disagree."""

    directory = Path(directory)
    path = directory / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; save with save_keras(model, tok, {str(directory)!r})")
    tokenizer = MicroTransformerTokenizer.from_pretrained(directory / TOKENIZER_DIR)
    try:
        # safe_mode (the default) refuses to deserialise arbitrary Python (lambda layers)
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds on a damaged zip
        raise CheckpointError(f"cannot load {path} ({exc}); re-save it") from exc
    _check_match(model, tokenizer, where=str(path))
    return model, tokenizer


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_match(model: keras.Model, tokenizer: MicroTransformerTokenizer, *, where: str) -> None:
    vocab = int(model.output_shape[-1])
    if vocab != tokenizer.vocab_size:
        raise CheckpointError(
            f"{where} predicts {vocab} token ids but the tokenizer has vocab_size {tokenizer.vocab_size}: "
            "not the tokenizer the model was trained with"
        )
    pad = model_pad_id(model)
    if pad is not None and pad != tokenizer.pad_id:
        raise CheckpointError(f"{where} masks pad id {pad} but the tokenizer's pad id is {tokenizer.pad_id}")


def model_pad_id(model: keras.Model) -> int | None:
    """The pad id a model built here masks (None for other Keras models)."""
    for layer in model.layers:
        if isinstance(layer, NotPad):
            return layer.pad_id
    return None


def model_context_limit(model: keras.Model) -> int | None:
    """How many real tokens a model attends to: ``block_size`` for the transformer, None for the LSTM."""
    for layer in model.layers:
        if layer.name == "wpe" and isinstance(layer, keras.layers.Embedding):
            return int(layer.input_dim)
    return None


# ------------------------------------------------------------------ generate
def _sample(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None, rng: np.random.Generator) -> np.ndarray:
    """One id per row of ``logits`` ``(B, V)``: the rules of :func:`microtransformer.sampling.sample_next_token`."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.astype(np.float64) / temperature
    if top_k:
        k = min(top_k, logits.shape[-1])
        kth = np.sort(logits, axis=-1)[:, -k][:, None]  # (B, 1)
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1)
        sorted_p = np.take_along_axis(probs, order, -1)
        drop_sorted = (np.cumsum(sorted_p, -1) - sorted_p) >= top_p  # the top token always stays
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, -1)
        probs = np.where(drop, 0.0, probs)
        probs /= probs.sum(-1, keepdims=True)
    return np.array([rng.choice(len(p), p=p) for p in probs])


def keras_generate(
    model: keras.Model,
    input_ids: Sequence[int] | Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    seed: int | None = None,
) -> list[list[int]]:
    """New token ids for each prompt (lists of any lengths), up to ``max_new_tokens`` or the row's eos (kept).

    Recomputes every step over each row's (cropped) context, left-padded with
    the model's pad id. ``temperature=0`` is greedy; ``seed`` makes sampling
    repeatable. Same settings and rules as the torch models' ``generate``.
    """
    from microtransformer.models.generation import check_sampling_settings

    check_sampling_settings(max_new_tokens, temperature, top_k, top_p)
    if input_ids and isinstance(input_ids[0], (int, np.integer)):
        input_ids = [input_ids]  # type: ignore[list-item]  # one prompt
    rows = [[int(i) for i in r] for r in input_ids]  # type: ignore[union-attr]
    if not rows or any(not r for r in rows):
        raise ConfigError("generation needs at least one prompt token per row")
    pad = model_pad_id(model)
    if pad is None:
        raise ConfigError("keras_generate drives the models of build_keras_lstm/build_keras_gpt (they know their pad id)")
    limit = model_context_limit(model)
    if eos_token_id is None:
        stops: set[int] = set()
    else:
        stops = {int(eos_token_id)} if isinstance(eos_token_id, int) else {int(i) for i in eos_token_id}
    rng = np.random.default_rng(seed)
    new: list[list[int]] = [[] for _ in rows]
    active = list(range(len(rows)))
    for _ in range(max_new_tokens):
        ctx = [rows[b][-limit:] if limit else rows[b] for b in active]
        T = max(map(len, ctx))
        batch = np.array([[pad] * (T - len(r)) + r for r in ctx], dtype=np.int32)
        logits = np.asarray(model(batch, training=False))[:, -1, :]  # (B_active, V)
        nxt = _sample(logits, temperature, top_k, top_p, rng)
        still = []
        for b, token in zip(active, nxt.tolist()):
            rows[b].append(token)
            new[b].append(token)
            if token not in stops:
                still.append(b)
        active = still
        if not active:
            break
    return new


def keras_generate_text(
    model: keras.Model, tokenizer: MicroTransformerTokenizer, prompt: str = "", **settings: Any
) -> str:
    """The continuation of ``prompt`` (after BOS, as the torch sampler starts) as text; stops at EOS/BOS."""
    from microtransformer.sampling import encode_prompt, stop_ids_for

    stops = sorted(stop_ids_for(tokenizer))
    ids = keras_generate(model, encode_prompt(tokenizer, prompt), eos_token_id=stops, **settings)[0]
    if ids and ids[-1] in stops:
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=True)
