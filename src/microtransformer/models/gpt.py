"""A decoder-only GPT (nanoGPT's architecture) with a KV cache for generation.

Why this shape: it is the model everyone learns from (Radford et al., 2019,
"Language Models are Unsupervised Multitask Learners"; Karpathy's nanoGPT),
so the field names are the familiar ones: ``n_layer``, ``n_head``,
``n_embd``, ``block_size``, ``vocab_size``, ``dropout``, ``bias``.

Two details differ from the textbook:

- The embedding/unembedding matrix is padded to a multiple of 64 rows
  (``padded_vocab_size``): matmuls on round sizes are faster. The output
  layer runs on the padded size and the padding columns are then dropped,
  so ``logits`` has exactly ``vocab_size`` columns and padding ids are
  never predicted or sampled.
- ``forward`` takes an optional :class:`KVCache`. With a cache, only the new
  tokens are run and keys/values of earlier positions are reused, which makes
  generation O(T) per token instead of O(T^2). ``tests/models`` checks that
  cached greedy decoding equals full recompute token for token.
- ``forward`` takes an ``attention_mask`` for padded batches (left or right
  padding): padding keys are masked out and positions count from each row's
  first real token, so a padded row gives the logits it gives alone.

Calls in the nanoGPT, tutorial and Hugging Face styles all work (see
:mod:`.outputs`): ``logits, loss = model(idx, targets)``, ``model(idx)[0]``,
``model(**batch).loss`` with ``batch = {"input_ids", "attention_mask", "labels"}``.

>>> cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=100)
>>> model = GPT(cfg)
>>> logits, loss = model(torch.zeros(1, 4, dtype=torch.long))
>>> tuple(logits.shape)  # (B, T, vocab_size)
(1, 4, 100)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from microtransformer.config import JSONConfig
from microtransformer.errors import ConfigError
from microtransformer.models.generation import GenerationMixin
from microtransformer.models.causal_attention import causal_attention
from microtransformer.models.chunked_loss import chunked_cross_entropy
from microtransformer.models.elementwise import relu_squared, rms_norm
from microtransformer.models.line_columns import TokenLayout, column_rows
from microtransformer.models.outputs import CausalLMOutput, causal_lm_loss, key_padding_mask, loss_targets, position_ids
from microtransformer.models.split_head import count_vector, frequency_order, split_cross_entropy, split_log_probs
from microtransformer.models.window_cache import cache_log_probs

VOCAB_PAD_MULTIPLE = 64
ROPE_BASE = 10000.0
VE_GATE_CHANNELS = 32  # the value-embedding gate reads this many leading channels of the block input
SMEAR_GATE_CHANNELS = 24  # the smear gate reads this many leading channels of the token embedding
X0_LAMBDA_INIT = 0.1  # x0_mix: the embedding's initial share of every block's input
BIGRAM_HASH = (36313, 27191)  # multipliers that spread (previous, current) pairs over the bigram buckets
_CHOICES = {"position": ("learned", "rotary"), "norm": ("layernorm", "rmsnorm"), "mlp": ("gelu", "relu2"), "init": ("gpt2", "scaled")}


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_number(name: str, value: Any, below: float, what: str) -> None:
    """``value`` is a number in ``[0, below)``, else ConfigError "``name`` must be ``what``"."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) < below:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class GPTConfig(JSONConfig):
    """Hyper-parameters of :class:`GPT`; stored as JSON in every checkpoint.

    ``vocab_size`` is the tokenizer's true size (special tokens included);
    the model pads it internally, see :attr:`padded_vocab_size`.
    """

    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    dropout: float = 0.0
    bias: bool = False
    # Architecture options (the defaults are nanoGPT's; checkpoints without them load as nanoGPT models).
    position: str = "learned"  # "learned" table, or "rotary" (RoPE on queries and keys)
    norm: str = "layernorm"  # "layernorm", or "rmsnorm" (no parameters)
    qk_norm: bool = False  # RMS-normalise queries and keys per head (after RoPE)
    mlp: str = "gelu"  # "gelu", or "relu2" (ReLU squared)
    mlp_ratio: int = 4  # the MLP's hidden width in multiples of n_embd (GPT-2's 4; less buys depth at equal cost)
    tie_embeddings: bool = True  # share the token embedding with the output layer
    logit_softcap: float = 0.0  # > 0: logits = cap * tanh(logits / cap)
    value_embeds: bool = False  # per-layer token tables added to attention values, on alternate layers
    value_embed_every: int = 2  # with value_embeds: a table on every this-many layers, counted back from the last
    embed_norm: bool = False  # normalise the token embedding before the first block
    init: str = "gpt2"  # "gpt2" (normal 0.02, scaled c_proj), or "scaled" (nanochat's: zero c_proj, uniform by width)
    smear: bool = False  # add a gated share of the previous token's embedding to each token's (nanochat, modded-nanogpt)
    x0_mix: bool = False  # each block's input = a * x + b * x0 (x0: the embedding), a and b learned per layer
    bigram_buckets: int = 0  # > 0: a table of hashed (previous, current) token pairs added to the embedding
    attn_chunk: int = 0  # > 0: every layer but the last attends only within aligned chunks of this many positions
    line_columns: int = 0  # > 0: rows of a table by each token's byte column in its line, added to the embedding
    head_split: int = 0  # > 0: a two-level output layer, this many most frequent tokens and a class for the rest
    head_bias: bool = False  # a logit bias per token (and the split's class), set to the log training counts at start
    # a continuous cache over the context window, in eval mode only (models/window_cache.py; lambda 0 = off)
    cache_theta: float = 0.0  # how sharply the cache prefers positions like the current one
    cache_lambda: float = 0.0  # the cache's share of the next-token distribution

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "value_embed_every", "mlp_ratio"):
            _check_positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias must be true or false, got {self.bias!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("qk_norm", "tie_embeddings", "value_embeds", "embed_norm", "smear", "x0_mix", "head_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        chunk = self.attn_chunk
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 0:
            raise ConfigError(f"attn_chunk must be 0 (full context in every layer) or a positive integer, got {chunk!r}")
        for name in ("bigram_buckets", "line_columns"):
            rows = getattr(self, name)
            if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0 or rows == 1:
                raise ConfigError(f"{name} must be 0 (off) or an integer >= 2, got {rows!r}")
        _check_number("logit_softcap", self.logit_softcap, math.inf, "a number >= 0 (0 = off)")
        split = self.head_split
        if not isinstance(split, int) or isinstance(split, bool) or not 0 <= split < self.vocab_size:
            raise ConfigError(f"head_split must be 0 (one softmax) or an integer below vocab_size "
                              f"({self.vocab_size}), got {split!r}")
        if split and self.logit_softcap > 0:
            raise ConfigError("head_split and logit_softcap do not go together: the two-level layer's logits are not capped")
        _check_number("cache_theta", self.cache_theta, math.inf, "a number >= 0")
        _check_number("cache_lambda", self.cache_lambda, 1.0, "in [0, 1) (0 = off)")
        if self.position == "rotary" and self.head_dim % 2:
            raise ConfigError(f"rotary positions need an even head size, got n_embd / n_head = {self.head_dim}")

    @property
    def padded_vocab_size(self) -> int:
        """``vocab_size`` rounded up to a multiple of 64 (faster matmuls)."""
        return -(-self.vocab_size // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def has_value_embed(self, layer: int) -> bool:
        """Value embeddings sit on every ``value_embed_every``-th layer counted back from the last (the default 2:
        alternate layers, as nanochat places them; 1: every layer).

        >>> [GPTConfig(vocab_size=8, n_layer=3, value_embeds=True, value_embed_every=k).has_value_embed(1) for k in (1, 2)]
        [True, False]
        """
        return self.value_embeds and (self.n_layer - 1 - layer) % self.value_embed_every == 0

    def attends_in_chunks(self, layer: int) -> bool:
        """With ``attn_chunk``, every layer but the last attends within chunks (the last sees the whole context).

        Chunked attention (as Llama 4's local layers): position ``p`` attends to
        ``q <= p`` with ``q // attn_chunk == p // attn_chunk``. A chunk of half
        the context halves those layers' attention work; the last layer still
        reads the whole window.

        >>> [GPTConfig(vocab_size=8, n_layer=3, attn_chunk=64).attends_in_chunks(i) for i in range(3)]
        [True, True, False]
        """
        return self.attn_chunk > 0 and layer < self.n_layer - 1


class KVCache:
    """Pre-allocated keys and values for every layer, filled left to right.

    Shapes: ``k[layer]`` and ``v[layer]`` are ``(B, n_head, block_size, head_dim)``;
    ``pos`` is how many positions are filled. Allocating once avoids a
    ``torch.cat`` per generated token.
    """

    def __init__(self, config: GPTConfig, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> None:
        shape = (batch_size, config.n_head, config.block_size, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.max_len = config.block_size
        self.pos = 0
        self.last_ids: torch.Tensor | None = None  # (B, 1): the last token seen, for options that look one back
        self.line_column: torch.Tensor | None = None  # (B,): with line_columns, the column after the last token
        # with a window cache: every position's final hidden state and id, which later positions copy from
        self.hidden = self.ids = None
        if config.cache_lambda > 0:
            self.hidden = torch.zeros(batch_size, config.block_size, config.n_embd, device=device, dtype=torch.float32)
            self.ids = torch.zeros(batch_size, config.block_size, device=device, dtype=torch.long)

    @property
    def remaining(self) -> int:
        return self.max_len - self.pos

    def reset(self) -> None:
        self.pos = 0
        self.last_ids = None
        self.line_column = None


def rotary_tables(config: GPTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` of shape ``(block_size, head_dim / 2)`` for rotary position embeddings (Su et al., 2021)."""
    half = config.head_dim // 2
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(half, dtype=torch.float32) / half))  # (hs/2,)
    angles = torch.outer(torch.arange(config.block_size, dtype=torch.float32), inv_freq)  # (block, hs/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs ``(i, i + hs/2)`` of ``x`` ``(..., hs)`` by angles that broadcast to ``(..., hs/2)``
    (the attention passes ``x`` ``(B, T, heads, hs)`` and angles ``(B|1, T, 1, hs/2)``)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class RMSNorm(nn.Module):
    """RMSNorm without parameters (Zhang & Sennrich, 2019; as nanochat uses it).

    Under autocast it returns the autocast dtype: its output only feeds matmuls
    (the blocks' and the head's), which would cast it anyway.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if x.dtype == torch.float32 and torch.is_autocast_enabled(device):
            return rms_norm(x, torch.get_autocast_dtype(device))
        return rms_norm(x)


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm()
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention via ``F.scaled_dot_product_attention`` (in compiled CPU code, query blocks of
    plain matmuls: :mod:`microtransformer.models.causal_attention`).

    Options of :class:`GPTConfig` act here: rotary positions (``rope`` given
    to :meth:`forward`), QK-norm, and a value embedding ``ve`` mixed into the
    values through a per-head gate.
    """

    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.ve_gate: nn.Linear | None = None
        if config.has_value_embed(layer):
            self.ve_gate = nn.Linear(min(VE_GATE_CHANNELS, config.n_embd), config.n_head, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        ve: torch.Tensor | None = None,
        chunk: int = 0,
    ) -> torch.Tensor:
        """``mask`` ``(B, 1, T, T_keys)`` bool (True = attend), or None for plain causal attention.

        ``chunk`` > 0 (no cache, no mask, ``T`` a multiple of it): causal attention within each run of ``chunk``
        positions, computed as that many shorter sequences."""
        B, T, C = x.shape  # (B, T, C)
        nh, hs = self.n_head, C // self.n_head
        qkv = self.c_attn(x)  # (B, T, 3C)
        qk = qkv[..., : 2 * C].view(B, T, 2 * nh, hs)  # (B, T, 2nh, hs): queries' heads, then keys'
        if rope is not None:  # queries and keys in one pass, heads innermost (faster than per transposed tensor)
            qk = apply_rotary(qk, *rope)  # (B, T, 2nh, hs)
        q, k = qk.transpose(1, 2).split(nh, dim=1)  # 2 x (B, nh, T, hs)
        v = qkv[..., 2 * C :].view(B, T, nh, hs)  # (B, T, nh, hs)
        if ve is not None and self.ve_gate is not None:
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.ve_gate.in_features]))  # (B, T, nh), 1 at init
            v = v + gate.unsqueeze(-1) * ve.view(B, T, nh, hs)  # (B, T, nh, hs)
        v = v.transpose(1, 2)  # (B, nh, T, hs)
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)  # (B, nh, T, hs)
        dropout_p = self.dropout if self.training else 0.0
        if cache is None and chunk:
            n = T // chunk
            q, k, v = (t.reshape(B, nh * n, chunk, hs) for t in (q, k, v))  # each chunk its own sequence
            y = causal_attention(q, k, v, dropout_p)
            y = y.reshape(B, nh, T, hs)  # a view on the CPU; CUDA's kernels return another memory layout
        elif cache is None and mask is None:
            y = causal_attention(q, k, v, dropout_p)  # (B, nh, T, hs)
        elif cache is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (B, nh, T, hs)
        else:
            start = cache.pos
            end = start + T
            cache.k[layer][:, :, start:end] = k
            cache.v[layer][:, :, start:end] = v
            keys = cache.k[layer][:, :, :end]  # (B, nh, end, hs)
            values = cache.v[layer][:, :, :end]  # (B, nh, end, hs)
            if mask is not None:
                causal = False
            elif start == 0:
                causal = T > 1
            elif T == 1:
                causal = False  # one new query sees every cached key
            else:
                # query i sits at absolute position start+i and sees keys 0..start+i
                q_pos = torch.arange(start, end, device=x.device).unsqueeze(1)  # (T, 1)
                k_pos = torch.arange(end, device=x.device).unsqueeze(0)  # (1, end)
                mask, causal = k_pos <= q_pos, False  # (T, end) bool
            y = F.scaled_dot_product_attention(
                q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask, dropout_p=dropout_p, is_causal=causal
            )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: C -> mlp_ratio * C (4 by default) -> GELU (or ReLU^2) -> C."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.act: nn.Module = nn.GELU() if config.mlp == "gelu" else ReLUSquared()
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C)


class ReLUSquared(nn.Module):
    """``relu(x) ** 2`` (So et al., 2021, "Primer"), the activation of nanochat and modded-nanogpt."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_squared(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        ve: torch.Tensor | None = None,
        chunk: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, mask, rope, ve, chunk)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class GPT(GenerationMixin, nn.Module):
    """Decoder-only transformer language model (nanoGPT's by default; :class:`GPTConfig` options modernise it)."""

    kind = "gpt"

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        V = config.padded_vocab_size
        modules: dict[str, nn.Module] = dict(
            wte=nn.Embedding(V, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, layer) for layer in range(config.n_layer)]),
            ln_f=make_norm(config),
        )
        if config.position == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        if config.value_embeds:
            modules["ve"] = nn.ModuleDict(
                {str(i): nn.Embedding(V, config.n_embd) for i in range(config.n_layer) if config.has_value_embed(i)}
            )
        if config.bigram_buckets:
            modules["bigram"] = nn.Embedding(config.bigram_buckets, config.n_embd)
        if config.line_columns:
            modules["col"] = nn.Embedding(config.line_columns, config.n_embd)
            # each id's bytes and bytes after its last newline: saved with the weights, set from the tokenizer
            self.register_buffer("token_length", torch.zeros(V, dtype=torch.long))
            self.register_buffer("token_line_tail", torch.full((V,), -1, dtype=torch.long))
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, V, bias=False)
        if config.head_split:  # models/split_head.py: the class row, and the ids by training frequency (saved)
            self.head_class = nn.Parameter(torch.zeros(1, config.n_embd))
            self.register_buffer("head_order", torch.arange(config.vocab_size))
            self.register_buffer("head_rare_share", torch.zeros(()))  # for flops_per_token
        if config.head_bias:  # a logit bias by id (then the split's class); set_token_counts starts it as the unigram
            self.head_bias = nn.Parameter(torch.zeros(config.vocab_size + (1 if config.head_split else 0)))
        if config.smear:  # starts off (lambda 0); the gate reads the leading channels of the token's own embedding
            self.smear_gate = nn.Parameter(torch.zeros(min(SMEAR_GATE_CHANNELS, config.n_embd)))
            self.smear_lambda = nn.Parameter(torch.zeros(1))
        if config.x0_mix:  # starts as the plain residual stream plus a little of the embedding (nanochat's init)
            self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
            self.x0_lambdas = nn.Parameter(torch.full((config.n_layer,), X0_LAMBDA_INIT))
        if config.position == "rotary":
            cos, sin = rotary_tables(config)
            self.register_buffer("rope_cos", cos, persistent=False)  # derived, not saved
            self.register_buffer("rope_sin", sin, persistent=False)
        if config.tie_embeddings:
            # Weight tying (Press & Wolf, 2017): fewer parameters, better small models.
            self.lm_head.weight = self.transformer.wte.weight
        if config.init == "scaled":
            self._init_scaled()
        else:
            self.apply(self._init_weights)
            # GPT-2: scale residual projections by 1/sqrt(2 * n_layer) so the residual stream stays O(1).
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.bigram_buckets:  # starts as a no-op: each row grows from the pairs that hash to it
            nn.init.zeros_(self.transformer.bigram.weight)
        self._compiled_blocks: list[Callable[..., torch.Tensor]] | None = None  # see compile_blocks

    def compile_blocks(self, enabled: bool = True) -> None:
        """Run each block through ``torch.compile`` in training forwards (with gradients, no KV cache).

        Why blocks and not the whole model: the blocks are where the
        elementwise work (norms, rotary, ReLU², residual adds) fuses and, on
        a CPU, where attention becomes matmuls in query blocks, while
        the output layer's chunked loss is already written for the CPU's
        caches; compiling the blocks alone gave faster steps on a CPU than
        compiling the whole model (docs/benchmarks.md).
        Evaluation and generation stay eager, so their other shapes cost no
        recompiles, and the parameters and ``state_dict`` are the model's
        own (the compiled wrappers are not submodules).
        ``compile_blocks(False)`` goes back to eager.

        On a CPU (where the parameters are when it is called) inductor writes
        its C++ wrapper (``cpp_wrapper``): each graph's kernels build as one
        library instead of one per kernel, each build loading the same large
        precompiled header, and the step calls its kernels from C++ rather
        than Python, so both the cold compile and the steps are shorter
        (docs/benchmarks.md).

        >>> model = GPT(GPTConfig(vocab_size=16, n_layer=1, n_head=1, n_embd=8, block_size=4))
        >>> model.compile_blocks(); model.compile_blocks(False); model._compiled_blocks is None
        True
        """
        if not enabled:
            self._compiled_blocks = None
            return
        options = {"cpp_wrapper": True} if self.lm_head.weight.device.type == "cpu" else None
        self._compiled_blocks = [torch.compile(block, options=options) for block in self.transformer.h]

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @torch.no_grad()
    def _init_scaled(self) -> None:
        """nanochat's init: unit-variance embeddings, a near-zero head, zero residual projections.

        Every block then starts as the identity and the first steps only
        learn a bigram model through the head, which Muon's orthogonalised
        updates grow from there.
        """
        bound = math.sqrt(3.0 / self.config.n_embd)  # uniform with std 1/sqrt(n_embd)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("ve_gate.weight") or name.endswith(".bias"):
                nn.init.zeros_(p)
            elif name.startswith("transformer.h."):
                if p.dim() >= 2:
                    nn.init.uniform_(p, -bound, bound)
                else:
                    nn.init.ones_(p)  # LayerNorm gains
            elif name.startswith("transformer.ve."):
                nn.init.uniform_(p, -bound, bound)
            elif name == "lm_head.weight" and not self.config.tie_embeddings:
                nn.init.normal_(p, mean=0.0, std=0.001)
            elif name in ("transformer.wte.weight", "transformer.wpe.weight"):
                nn.init.normal_(p, mean=0.0, std=1.0 if not self.config.tie_embeddings else 0.02)
            elif name == "transformer.col.weight":  # half the token table's scale: a hint beside the token
                nn.init.normal_(p, mean=0.0, std=0.5 if not self.config.tie_embeddings else 0.01)
            elif name == "transformer.ln_f.weight":
                nn.init.ones_(p)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def block_size(self) -> int:
        """Context length (nanoGPT's ``model.block_size``)."""
        return self.config.block_size

    @property
    def context_limit(self) -> int | None:
        """Longest context the model can attend to (the position table, or the rotary tables and KV cache)."""
        return self.config.block_size

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings excluded by default (as in nanoGPT).

        The token embedding is counted once when it is tied with ``lm_head``,
        and counted at all because its matmul is paid in the output layer.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: ``6 x`` matmul weights plus attention (PaLM's estimate, as nanochat counts).

        Lookup tables (token, position and value embeddings) cost no matmul and
        are left out; the output layer is in. Attention adds ``12 x n_layer x
        n_embd x seq_len`` (scores and weighted sum, forward and backward),
        with ``attn_chunk`` in place of ``seq_len`` for the layers that attend
        in chunks.
        """
        c = self.config
        lookups = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        matmul = sum(p.numel() for p in self.parameters() if p.dim() >= 2 and id(p) not in lookups)
        if c.tie_embeddings:
            matmul += self.lm_head.weight.numel()  # tied: the head's matmul is paid all the same
        if c.head_split:  # the rarer tokens' rows only at their share of the targets; padding rows never
            rows = c.head_split + (c.vocab_size - c.head_split) * float(self.head_rare_share)
            matmul -= self.lm_head.weight.numel() - round(rows * c.n_embd)
        seq = seq_len or c.block_size
        context = sum(min(seq, c.attn_chunk) if c.attends_in_chunks(i) else seq for i in range(c.n_layer))
        return 6 * matmul + 12 * c.n_embd * context

    def param_roles(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by what an optimizer should do with them (Muon + AdamW split).

        ``matrix``: the 2-D weights inside the blocks (Muon's); ``embedding``:
        token, position and value tables; ``head``: the output layer, tied or
        not (a tied matrix is the head too: at the tables' LR, 50x the head's,
        the output layer diverges); ``scalar``: gains and biases; ``residual``,
        ``x0`` and ``smear``: the mixing weights of those options (each its own LR).
        """
        roles: dict[str, list[nn.Parameter]] = {
            "matrix": [], "embedding": [], "head": [], "scalar": [], "residual": [], "x0": [], "smear": [],
        }
        seen: set[int] = set()
        for name, p in self.named_parameters():
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if p is self.lm_head.weight or name in ("head_class", "head_bias"):  # under the embedding's name when tied
                roles["head"].append(p)
            elif name in _MIX_ROLES:
                roles[_MIX_ROLES[name]].append(p)
            elif name.startswith("transformer.h.") and p.dim() >= 2:
                roles["matrix"].append(p)
            elif p.dim() >= 2:
                roles["embedding"].append(p)
            else:
                roles["scalar"].append(p)
        return roles

    def new_cache(self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` sequences."""
        p = self.transformer.wte.weight
        return KVCache(self.config, batch_size, device or p.device, dtype or p.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
        loss_only: bool = False,
        window_cache: bool = True,
    ) -> CausalLMOutput:
        """Logits ``(B, T, vocab_size)`` and the loss, as a :class:`~.outputs.CausalLMOutput`.

        ``targets`` ``(B, T)`` are already shifted (``targets[:, t]`` follows
        ``input_ids[:, t]``, as ``get_batch`` gives them); ``labels`` are
        Hugging Face's (aligned with ``input_ids``, shifted here). Either way
        ``-100`` is left out of the mean loss. ``attention_mask`` ``(B, T)``
        (1 = token, 0 = padding; with a cache it covers the cached positions
        too) masks padding keys and counts positions from each row's first
        real token. With ``cache``, ``input_ids`` holds only the new tokens
        and the cache is advanced. ``last_only`` returns only the last
        position's logits ``(B, 1, vocab_size)`` when no loss is asked for
        (generation does not pay for the other T-1 output rows). ``loss_only``
        returns the loss without logits (``None``), computed a block of rows
        at a time (:mod:`.chunked_loss`): what the trainer uses, much faster
        on a CPU for the same value. In eval mode a config with
        ``cache_lambda > 0`` mixes in the window cache (:mod:`.window_cache`;
        the logits are then its log-probabilities); ``window_cache=False``
        leaves it out.
        """
        B, T = input_ids.shape  # (B, T)
        start = cache.pos if cache is not None else 0
        mask = key_padding_mask(attention_mask, B, start + T)  # (B, start+T) bool, or None: nothing masked
        if mask is None:
            if start + T > self.config.block_size:
                raise ValueError(
                    f"sequence of {start + T} positions exceeds block_size {self.config.block_size}; crop the context"
                )
            pos = torch.arange(start, start + T, dtype=torch.long, device=input_ids.device)  # (T,)
            attn = None
        else:
            if cache is not None and start + T > cache.max_len:
                raise ValueError(f"the KV cache holds {cache.max_len} positions; {start + T} do not fit")
            pos = position_ids(mask)[:, start:]  # (B, T)
            if start + T > self.config.block_size and int(pos.max()) >= self.config.block_size:
                raise ValueError(
                    f"a sequence of more than block_size {self.config.block_size} tokens; crop the context"
                )
            attn = _padded_causal_mask(mask, start, T)  # (B, 1, T, start+T)
        x = self.transformer.wte(input_ids)  # (B, T, C)
        if self.config.line_columns:
            x = x + self.transformer.col(self._line_columns(input_ids, cache, mask, start))  # (B, T, C)
        prev = None  # (B, T): the token before each position, for the options that read it
        if self.config.smear or self.config.bigram_buckets:
            prev = previous_ids(input_ids, cache, mask, start)
        if prev is not None and self.config.smear:
            x = self._smear(x, prev)  # (B, T, C)
        rope = None
        if self.config.position == "learned":
            x = x + self.transformer.wpe(pos)  # (B, T, C)
        else:
            cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # (T, hs/2) or (B, T, hs/2)
            rope = (cos.unsqueeze(-2), sin.unsqueeze(-2))  # (B|1, T, 1, hs/2): broadcast over heads
        if self.config.embed_norm:
            x = rms_norm(x)
        if prev is not None and self.config.bigram_buckets:
            x = x + self.transformer.bigram(bigram_ids(input_ids, prev, self.config.bigram_buckets))  # (B, T, C)
        x = x0 = self.transformer.drop(x)
        chunk, chunk_mask = 0, None  # for the layers that attend in chunks: the fast path's size, or a mask
        c = self.config.attn_chunk
        if c and start + T > c:  # (shorter: every position is in the first chunk, plain causal attention)
            if cache is None and attn is None and T % c == 0:
                chunk = c
            else:
                chunk_mask = _chunk_mask(c, start, T, mask, attn, input_ids.device)  # (B|1, 1, T, start+T)
        for layer, block in enumerate(self.transformer.h):
            if self.config.x0_mix:
                x = self.resid_lambdas[layer] * x + self.x0_lambdas[layer] * x0  # (B, T, C)
            ve = self.transformer.ve[str(layer)](input_ids) if self.config.has_value_embed(layer) else None  # (B, T, C)
            run = block
            if self._compiled_blocks is not None and cache is None and torch.is_grad_enabled():
                run = self._compiled_blocks[layer]
            if self.config.attends_in_chunks(layer):
                x = run(x, cache, layer, attn if chunk_mask is None else chunk_mask, rope, ve, chunk)  # (B, T, C)
            else:
                x = run(x, cache, layer, attn, rope, ve)  # (B, T, C)
        x = self.transformer.ln_f(x)  # (B, T, C)
        copy = window_cache and self.config.cache_lambda > 0 and not self.training
        hidden, ids = x, input_ids  # (B, S, C), (B, S): every position so far, for the window cache
        if cache is not None:
            if copy and cache.hidden is not None and cache.ids is not None:
                cache.hidden[:, start : start + T] = x.float()
                cache.ids[:, start : start + T] = input_ids
                hidden, ids = cache.hidden[:, : start + T], cache.ids[:, : start + T]
            cache.pos += T
            cache.last_ids = input_ids[:, -1:]
        if loss_only and cache is None and not copy:
            scored = loss_targets(T, targets=targets, labels=labels, shape=(B, T))
            if scored is not None:
                positions, y = scored
                h = x[:, positions, :].reshape(-1, x.size(-1))  # (B * (T or T-1), C)
                if self.config.head_split:
                    loss = split_cross_entropy(h, self.lm_head.weight, self.head_class, self.head_order, y.reshape(-1),
                                               k=self.config.head_split, bias=self._head_bias())
                else:
                    loss = chunked_cross_entropy(h, self.lm_head.weight, y.reshape(-1), vocab_size=self.config.vocab_size,
                                                 cap=self.config.logit_softcap, bias=self._head_bias())
                return CausalLMOutput(None, loss)
        if last_only and targets is None and labels is None:
            x = x[:, -1:, :]  # (B, 1, C)
        if self.config.head_split:  # (B, T, V): log-probabilities of the two levels
            logits = split_log_probs(x, self.lm_head.weight, self.head_class, self.head_order, k=self.config.head_split,
                                     bias=self._head_bias())
        else:
            logits = self.lm_head(x)  # (B, T, Vp): the padded matmul
            if self.config.padded_vocab_size != self.config.vocab_size:
                logits = logits[..., : self.config.vocab_size].contiguous()  # (B, T, V): padding ids do not exist
            if self.config.head_bias:  # in fp32: a bf16 logit has a step of 1/16 at the size of a log count
                logits = logits.float() + self.head_bias.float()
        cap = self.config.logit_softcap
        if cap > 0:
            logits = cap * torch.tanh(logits.float() / cap)  # (B, T, V): bounded, in fp32
        if copy:
            logits = cache_log_probs(logits, hidden, ids, theta=self.config.cache_theta, lam=self.config.cache_lambda,
                                     key_mask=mask)  # (B, T, V): log-probabilities of the mixture
        return CausalLMOutput(logits, causal_lm_loss(logits, targets=targets, labels=labels))

    def _head_bias(self) -> torch.Tensor | None:
        return self.head_bias if self.config.head_bias else None

    def set_token_counts(self, counts: Any) -> None:
        """Give the model its tokens' training counts (``(vocab_size,)``, e.g. ``np.bincount`` of the training ids):
        a ``head_split`` model orders its output layer by them (:meth:`set_head_order`), a ``head_bias`` one starts
        its logit biases at their logs, so that before training it predicts the unigram distribution (add-one
        counts; the split's class: the rest's total). Nothing to do for a model with neither.
        :class:`~microtransformer.training.trainer.Trainer` calls it at the start of a fresh run.

        >>> model = GPT(GPTConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=8, head_bias=True))
        >>> model.set_token_counts([1, 3, 0]); model.head_bias.exp().round().tolist()
        [2.0, 4.0, 1.0]
        """
        if self.config.head_split:
            self.set_head_order(counts)
        if not self.config.head_bias:
            return
        c = count_vector(counts, self.config.vocab_size) + 1.0
        if self.config.head_split:
            c = torch.cat([c, c[self.head_order[self.config.head_split :]].sum().reshape(1)])
        with torch.no_grad():
            self.head_bias.copy_(c.log().to(self.head_bias.dtype))

    def set_head_order(self, counts: Any) -> None:
        """Give a ``head_split`` model its tokens' training counts (``(vocab_size,)``, e.g. ``np.bincount`` of the
        training ids): its two-level output layer's first level takes the most frequent (saved with the weights;
        :class:`~microtransformer.training.trainer.Trainer` sets it at the start of a run).

        >>> model = GPT(GPTConfig(vocab_size=4, n_layer=1, n_head=1, n_embd=8, head_split=2))
        >>> model.set_head_order([1, 5, 0, 7]); model.head_order.tolist(), round(float(model.head_rare_share), 4)
        ([3, 1, 0, 2], 0.0769)
        """
        if not self.config.head_split:
            raise ConfigError("set_head_order is for a model with head_split > 0")
        order, rare = frequency_order(counts, self.config.vocab_size, self.config.head_split)
        with torch.no_grad():
            self.head_order.copy_(order)
            self.head_rare_share.fill_(rare)

    def set_token_layout(self, layout: TokenLayout) -> None:
        """Give a ``line_columns`` model its tokenizer's byte lengths (:meth:`TokenLayout.from_tokenizer`).

        >>> model = GPT(GPTConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=8, line_columns=4))
        >>> model.set_token_layout(TokenLayout.from_token_bytes([b"a", b"\\n", b"bc"]))
        >>> model.token_length[:3].tolist(), model.token_line_tail[:3].tolist()
        ([1, 1, 2], [-1, 0, -1])
        """
        if not self.config.line_columns:
            raise ConfigError("set_token_layout is for a model with line_columns > 0")
        n = len(layout.length)
        if n != self.config.vocab_size:
            raise ConfigError(f"a token layout of {n} ids for a model of vocab_size {self.config.vocab_size}")
        with torch.no_grad():
            self.token_length.zero_()[:n] = layout.length.to(self.token_length.device)
            self.token_line_tail.fill_(-1)[:n] = layout.tail.to(self.token_line_tail.device)

    @property
    def has_token_layout(self) -> bool:
        """Whether a ``line_columns`` model knows its tokens' bytes (set, or loaded with its weights)."""
        return bool(self.config.line_columns) and bool(self.token_length.any())

    def _line_columns(self, ids: torch.Tensor, cache: KVCache | None, mask: torch.Tensor | None, start: int) -> torch.Tensor:
        """``(B, T)`` rows of the column table (:mod:`.line_columns`); a KV cache carries the column across calls."""
        carried = cache.line_column if cache is not None and start > 0 else None
        rows, end = column_rows(ids, self.token_length, self.token_line_tail, self.config.line_columns,
                                start=carried, mask=None if mask is None else mask[:, start:])
        if cache is not None:
            cache.line_column = end
        return rows

    def _smear(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """``x + lambda * sigmoid(x[:k] . w) * x_prev``: a cheap path for the previous token (a bigram feature)
        that a 2-layer model would otherwise spend attention on. ``prev`` ``(B, T)`` from :func:`previous_ids`."""
        has = (prev >= 0).unsqueeze(-1)  # (B, T, 1)
        first = self.transformer.wte(prev[:, :1].clamp(min=0))  # (B, 1, C): from the cache, or masked below
        before = torch.cat([first, x[:, :-1]], 1) * has  # (B, T, C)
        k = self.smear_gate.numel()
        gate = self.smear_lambda * torch.sigmoid(x[..., :k] @ self.smear_gate.to(x.dtype))  # (B, T)
        return x + gate.unsqueeze(-1).to(x.dtype) * before

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: decay matrices (>= 2-D), never biases, norms or scalars.

        Decaying LayerNorm gains and biases only shrinks them towards zero
        without regularising anything useful (Loshchilov & Hutter, 2019).
        """
        return _decay_groups(self, weight_decay)


_MIX_ROLES = {"resid_lambdas": "residual", "x0_lambdas": "x0", "smear_gate": "smear", "smear_lambda": "smear"}


def previous_ids(input_ids: torch.Tensor, cache: KVCache | None, mask: torch.Tensor | None, start: int) -> torch.Tensor:
    """``(B, T)``: the id of the token before each position, ``-1`` where there is none.

    None at a sequence's first position and after padding; with a cache, the
    token before the first new one is the cache's last.

    >>> previous_ids(torch.tensor([[5, 6, 7]]), None, None, 0).tolist()
    [[-1, 5, 6]]
    """
    B = input_ids.size(0)
    first = torch.full((B, 1), -1, dtype=input_ids.dtype, device=input_ids.device)
    if cache is not None and start > 0 and cache.last_ids is not None:
        first = cache.last_ids.to(input_ids.dtype)
    prev = torch.cat([first, input_ids[:, :-1]], 1)  # (B, T)
    if mask is not None:  # (B, start+T): position p has a previous token only if p-1 is a real one
        before = torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], 1)[:, start:]  # (B, T)
        prev = prev.masked_fill(~before, -1)
    return prev


def bigram_ids(input_ids: torch.Tensor, prev: torch.Tensor, buckets: int) -> torch.Tensor:
    """``(B, T)`` rows of the bigram table: a hash of (previous, current) into ``buckets - 1`` rows; the last
    row is for tokens with no previous one (``prev == -1``, from :func:`previous_ids`).

    Hashing (as fastText's n-gram buckets and modded-nanogpt's bigram embedding do) gives a tiny model
    a table of pair statistics for the cost of a lookup: no matmul, a sparse gradient.

    >>> bigram_ids(torch.tensor([[5, 6, 7]]), torch.tensor([[-1, 5, 6]]), 100).tolist()
    [[99, 52, 62]]
    """
    a, b = BIGRAM_HASH
    hashed = torch.bitwise_xor(input_ids * a, prev * b) % (buckets - 1)  # (B, T)
    return torch.where(prev >= 0, hashed, buckets - 1)


def _chunk_mask(
    chunk: int, start: int, T: int, mask: torch.Tensor | None, attn: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """``(B|1, 1, T, start+T)`` bool for a layer that attends in chunks: causal (or ``attn``, the padded causal
    mask) and in the query's chunk, chunks counted by position (from each row's first real token with padding).

    >>> _chunk_mask(2, 0, 4, None, None, torch.device("cpu"))[0, 0].int().tolist()
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    """
    if attn is None or mask is None:  # no padding: positions are the indices
        q_pos = torch.arange(start, start + T, device=device).unsqueeze(1)  # (T, 1)
        k_pos = torch.arange(start + T, device=device).unsqueeze(0)  # (1, start+T)
        return ((k_pos <= q_pos) & (k_pos // chunk == q_pos // chunk))[None, None]  # (1, 1, T, start+T)
    pos = position_ids(mask)  # (B, start+T)
    same = pos[:, None, :] // chunk == pos[:, start:, None] // chunk  # (B, T, start+T)
    return attn & same.unsqueeze(1)  # (B, 1, T, start+T)


def _padded_causal_mask(mask: torch.Tensor, start: int, T: int) -> torch.Tensor:
    """``(B, 1, T, start+T)`` bool: query ``start+i`` sees real keys at or before it, and always itself.

    Seeing itself keeps every row of the attention matrix non-empty, so a
    padding query (all its earlier keys are padding) gets a finite output
    instead of NaN; real queries see themselves anyway.
    """
    q_pos = torch.arange(start, start + T, device=mask.device).unsqueeze(1)  # (T, 1)
    k_pos = torch.arange(start + T, device=mask.device).unsqueeze(0)  # (1, start+T)
    allowed = (k_pos <= q_pos) & mask[:, None, :]  # (B, T, start+T)
    allowed = allowed | (k_pos == q_pos)
    return allowed.unsqueeze(1)  # (B, 1, T, start+T)


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    params = [p for p in model.parameters() if p.requires_grad]  # unique: tied weights appear once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
