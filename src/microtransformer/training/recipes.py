"""Named training recipes: a model shape, architecture options and optimiser settings that go together.

``nanogpt`` and ``nanochat`` reproduce those projects' small-model recipes
with this toolkit's GPT and trainer (so a comparison measures the recipe,
not the code); ``ours`` is the one ``mtx train`` and ``mtx quickstart``
use by default. ``benchmarks/speedrun.py`` races them on a fixed time
budget; docs/benchmarks.md has the measurements behind every choice.

A recipe is plain data. ``with_overrides`` makes a variant for an A/B:

>>> r = RECIPES["ours"].with_overrides({"mlp": "gelu", "matrix_lr": 0.03})
>>> (r.model["mlp"], r.train["matrix_lr"])
('gelu', 0.03)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from microtransformer.device import training_precision
from microtransformer.errors import ConfigError

logger = logging.getLogger(__name__)

_MODERN_GPT: dict[str, Any] = dict(
    position="rotary", norm="rmsnorm", qk_norm=True, mlp="relu2", tie_embeddings=False,
    logit_softcap=15.0, value_embeds=True, embed_norm=True, init="scaled",
)
_MUON_WSD: dict[str, Any] = dict(
    optimizer="muon", lr_schedule="wsd", warmup_steps=0, warmdown_ratio=0.4, min_lr_ratio=0.0, grad_clip=0.0,
)
#: nanochat streams its data, each token once per epoch; nanoGPT draws random windows (the TrainConfig default)
_EPOCHS: dict[str, Any] = dict(sampling="epoch")


@dataclass(frozen=True)
class Recipe:
    """``model``: :class:`~microtransformer.models.GPTConfig` fields (no vocab_size);
    ``train``: :class:`~microtransformer.training.trainer.TrainConfig` fields;
    ``vocab_size`` and ``space_after_newline`` of the tokenizer the recipe was tuned with (what ``mtx train``
    trains one with when it is given text)."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    vocab_size: int = 4096
    space_after_newline: bool = False
    description: str = ""

    def with_overrides(self, overrides: dict[str, Any], name: str | None = None) -> Recipe:
        """A copy with GPTConfig/TrainConfig fields (or the tokenizer's ``vocab_size``, ``space_after_newline``)
        replaced; unknown keys raise ConfigError."""
        from microtransformer.models import GPTConfig
        from microtransformer.training.trainer import TrainConfig

        model_fields = {f.name for f in dataclasses.fields(GPTConfig)}
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        model, train, vocab, spaces = dict(self.model), dict(self.train), self.vocab_size, self.space_after_newline
        for key, value in overrides.items():
            if key == "vocab_size":
                vocab = int(value)
            elif key == "space_after_newline":
                if not isinstance(value, bool):
                    raise ConfigError(f"space_after_newline must be true or false, got {value!r}")
                spaces = value
            elif key in model_fields:
                model[key] = value
            elif key in train_fields:
                train[key] = value
            else:
                raise ConfigError(f"{key!r} is neither a GPTConfig nor a TrainConfig field")
        return dataclasses.replace(self, name=name or self.name, model=model, train=train, vocab_size=vocab,
                                   space_after_newline=spaces)


#: ``(up to this many seconds, shape)``: the shape of ``ours`` (width, depth, heads, and the context and batch
#: rows of its 8,192-token batches) that reached the lowest held-out bits per byte for budgets of that size in
#: the speedrun (2 CPU threads; docs/benchmarks.md). A long budget reads the speedrun's training books about three
#: times, past which more steps of one model make its held-out score worse, so that shape spends the time on depth
#: (4 layers) rather than on more epochs. It uses a 512-token history; the 2-layer ones did not (sequence 512 lost at
#: 180 s); it also takes a value table on every layer (two 600 s A/Bs), where the 2-layer shapes keep nanochat's
#: every other layer (not measured otherwise). ``torch.compile`` (of the blocks) pays for its warm-up (a cold
#: compile takes ~30-50 s on a CPU) only in the long budgets, and so do made-up names in three windows of four
#: (``new_names``: a model that reads its books three times learns their names by heart, not how to copy a new
#: book's names from its context) and re-set typography in every one (``typography``: nor should it tie a book's
#: quotes and dashes to its words); both measured on the 4-layer shape only. The window cache (``window_cache``:
#: copying from the context at inference, its two knobs set on the validation split after training, in the budget)
#: and a table of each token's byte column in its line (``line_columns``: the books are hard-wrapped, and a model
#: that reads tokens cannot count bytes) pay in every shape (measured on each).
BUDGET_SIZES: tuple[tuple[float, dict[str, int | bool | float]], ...] = (
    (240.0, dict(n_layer=2, n_head=1, n_embd=128, block_size=256, batch_size=32, value_embed_every=2, compile=False,
                 new_names=0.0, typography=0.0, window_cache=True, line_columns=128)),
    (400.0, dict(n_layer=2, n_head=2, n_embd=192, block_size=256, batch_size=32, value_embed_every=2, compile=False,
                 new_names=0.0, typography=0.0, window_cache=True, line_columns=128)),
    (float("inf"), dict(n_layer=4, n_head=2, n_embd=192, block_size=512, batch_size=16, value_embed_every=1, compile=True,
                        new_names=0.75, typography=1.0, window_cache=True, line_columns=128)),
)
#: ``{a BUDGET_SIZES limit: fields replaced}`` for a run in fp32 (a CPU without bf16 units, where the model steps at
#: about half its bf16 speed), where the speedrun measured a better shape there than the table's: narrower models,
#: which take more steps and read the books more often (BUDGET_SIZES was measured with bf16; docs/benchmarks.md);
#: the short and the long one also with a two-level output layer (``head_split``: the 1,024 most frequent tokens and
#: a class for the rest), whose faster steps gained in races of both lengths (a vocabulary of at most that many
#: tokens keeps one softmax: :func:`fit_to_vocab`), the long one with logit biases started at the unigram
#: (``head_bias``), which gave back what the split lost per step
FP32_SIZES: dict[float, dict[str, int | bool | float]] = {
    240.0: dict(n_embd=96, head_split=1024), 400.0: dict(n_embd=128), float("inf"): dict(n_embd=128, head_split=1024, head_bias=True),
}
#: the keys of a BUDGET_SIZES shape that are TrainConfig fields (the rest are GPTConfig fields); named here, not
#: read from the dataclasses as ``Recipe.with_overrides`` does, so importing the recipes (and ``mtx``) stays torch-free
_SHAPE_TRAIN_KEYS = ("batch_size", "compile", "new_names", "typography", "window_cache")


def _split_shape(shape: dict[str, int | bool | float]) -> tuple[dict[str, int | bool | float], dict[str, int | bool | float]]:
    """A BUDGET_SIZES shape as (GPTConfig fields, TrainConfig fields)."""
    return ({k: v for k, v in shape.items() if k not in _SHAPE_TRAIN_KEYS},
            {k: v for k, v in shape.items() if k in _SHAPE_TRAIN_KEYS})


_LONG_MODEL, _LONG_TRAIN = _split_shape(BUDGET_SIZES[-1][1])


RECIPES: dict[str, Recipe] = {
    "nanogpt": Recipe(
        "nanogpt",
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False),
        train=dict(
            batch_size=12, lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0, warmup_steps=100,
            min_lr_ratio=0.1, precision="fp32",
        ),
        description="nanoGPT's README CPU example (config/train_shakespeare_char.py + overrides), fp32",
    ),
    "nanochat": Recipe(
        "nanochat",
        model=dict(n_layer=2, n_head=1, n_embd=128, block_size=256, **_MODERN_GPT),
        train=dict(batch_size=32, precision="fp32", **_MUON_WSD, **_EPOCHS),
        description="nanochat's GPT and Muon + AdamW at depth 2 (width 128, head 128), 8192-token batches dealt "
                    "epoch by epoch, fp32",
    ),
    "ours": Recipe(
        "ours",
        # the shape for long budgets; no soft-cap and no QK-norm: neither helps a 2-layer model in minutes, and
        # both cost time (speedrun A/Bs)
        model=dict(**_LONG_MODEL, **{**_MODERN_GPT, "qk_norm": False, "logit_softcap": 0.0}),
        # the token and value tables decayed (AdamW, 0.02): a model that reads its text ~3 times fits it less and
        # generalises better (speedrun A/Bs at fixed steps and at 600 s)
        train=dict(**_LONG_TRAIN, precision="auto", **_MUON_WSD, **_EPOCHS, embedding_weight_decay=0.02),
        # a line's first word as its usual token: the speedrun's books are hard-wrapped (-1.9 % at 600 s)
        space_after_newline=True,
        description="a tokenizer with a space after each line break, "
                    "nanochat's architecture less soft-cap and QK-norm, its optimiser with the embedding tables "
                    "decayed, bf16 autocast where the CPU has bf16 units, windows dealt epoch by epoch, blocks "
                    "compiled and made-up names and re-set typography in most windows for long runs, a window "
                    "cache set on the validation split and a table of each token's column in its line, sized for "
                    "the budget",
    ),
}


def get_recipe(spec: str, *, budget: float | None = None, precision: str = "bf16") -> Recipe:
    """``"ours"`` or a variant ``"ours+mlp=gelu+matrix_lr=0.03"`` (values parsed as JSON, else strings).

    ``budget``: ``ours`` first takes the shape :func:`size_for_budget` gives that many seconds in ``precision`` (as
    ``mtx train --time_budget S --model_size auto`` sizes it), then the variant's overrides; the peers keep theirs.

    >>> get_recipe("ours+n_embd=256", budget=60).model["n_layer"], get_recipe("ours", budget=600).model["n_layer"]
    (2, 4)
    """
    name, *parts = spec.split("+")
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; use one of {', '.join(RECIPES)}")
    overrides: dict[str, Any] = {}
    for part in parts:
        key, sep, raw = part.partition("=")
        if not sep:
            raise ConfigError(f"recipe override {part!r} must look like field=value")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    recipe = RECIPES[name]
    if budget is not None and name == DEFAULT_RECIPE:
        recipe = recipe.with_overrides(size_for_budget(budget, precision=precision))
    return recipe.with_overrides(overrides, name=spec)


DEFAULT_RECIPE = "ours"


def train_precision(train: dict[str, Any]) -> str:
    """The precision a recipe's ``train`` fields (with any overrides merged in) train in on this machine: its
    ``device`` and ``precision``, TrainConfig's defaults where unset, through
    :func:`~microtransformer.device.training_precision`. What ``size_for_budget``'s ``precision`` should be."""
    from microtransformer.training.trainer import TrainConfig

    return training_precision(train.get("device", TrainConfig.device), train.get("precision", TrainConfig.precision))


def size_for_budget(seconds: float, *, precision: str = "bf16") -> dict[str, int | bool | float]:
    """The width, depth, context, batch rows and ``compile`` for a training budget of ``seconds``
    (``mtx train --model_size auto``); ``precision``: what the run trains in (``"fp32"`` takes
    :data:`FP32_SIZES`' changes; :func:`train_precision` says which a recipe trains in).

    >>> [size_for_budget(s)["n_embd"] for s in (60, 300)], size_for_budget(600)["block_size"]
    ([128, 192], 512)
    >>> size_for_budget(60, precision="fp32")["n_embd"]
    96
    """
    if not seconds > 0:
        raise ConfigError(f"a time budget must be > 0 seconds, got {seconds!r}")
    limit, shape = next((limit, shape) for limit, shape in BUDGET_SIZES if seconds <= limit)
    return {**shape, **(FP32_SIZES.get(limit, {}) if precision == "fp32" else {})}


def fit_to_vocab(model: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """A sized recipe's GPTConfig fields ``model`` for a tokenizer of ``vocab_size`` ids: a ``head_split`` the
    vocabulary does not exceed becomes 0 (one softmax: there is nothing to split). For a split the shape chose, not
    one a user asked for (that one should stay a config error).

    >>> fit_to_vocab({"n_embd": 128, "head_split": 1024}, 512), fit_to_vocab({"head_split": 1024}, 4096)
    ({'n_embd': 128, 'head_split': 0}, {'head_split': 1024})
    """
    if model.get("head_split", 0) < vocab_size:
        return model
    logger.info("head_split %d: the vocabulary has %d tokens; one softmax", model["head_split"], vocab_size)
    return {**model, "head_split": 0}
