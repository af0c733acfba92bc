"""Language models sized from ``vocab_size`` alone (they know nothing of tokenizers).

``build_model("gpt" | "lstm", config)`` is how the trainer and the checkpoint
loader turn a JSON config back into a module; both models share one
interface (``forward(input_ids, targets, attention_mask=, labels=, cache=,
last_only=)`` returning a :class:`CausalLMOutput`, ``generate``,
``new_cache``, ``optimizer_groups``, ``context_limit``, ``num_params``).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from microtransformer.errors import ConfigError
from microtransformer.models.gpt import GPT, GPTConfig, KVCache
from microtransformer.models.lstm import LSTMConfig, LSTMLanguageModel, LSTMState
from microtransformer.models.outputs import IGNORE_INDEX, CausalLMOutput

MODEL_KINDS: dict[str, tuple[type, type[nn.Module]]] = {
    "gpt": (GPTConfig, GPT),
    "lstm": (LSTMConfig, LSTMLanguageModel),
}

ModelConfig = GPTConfig | LSTMConfig
LanguageModel = GPT | LSTMLanguageModel


def config_from_dict(kind: str, data: dict[str, Any]) -> ModelConfig:
    """Rebuild a model config from its JSON form; typed error on unknown kinds/fields."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind][0].from_dict(dict(data))


def build_model(kind: str, config: ModelConfig | dict[str, Any]) -> LanguageModel:
    """``build_model("gpt", GPTConfig(vocab_size=512))`` -> an initialised ``GPT``."""
    if isinstance(config, dict):
        config = config_from_dict(kind, config)
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")
    config_cls, model_cls = MODEL_KINDS[kind]
    if not isinstance(config, config_cls):
        raise ConfigError(f"model kind {kind!r} needs a {config_cls.__name__}, got {type(config).__name__}")
    return model_cls(config)  # type: ignore[return-value]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers.

    Checkpoints are written from the unwrapped module so keys never carry
    ``module.`` or ``_orig_mod.`` prefixes and load into a plain model.
    """
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


__all__ = [
    "IGNORE_INDEX",
    "CausalLMOutput",
    "GPT",
    "GPTConfig",
    "KVCache",
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTMState",
    "MODEL_KINDS",
    "LanguageModel",
    "ModelConfig",
    "build_model",
    "config_from_dict",
    "unwrap_model",
]
