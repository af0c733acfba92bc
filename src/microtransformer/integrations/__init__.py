"""Optional frameworks, imported only when used: TensorFlow / Keras (``pip install 'microtransformer[tf]'``).

``import microtransformer`` (and this package) never imports TensorFlow; the
names below load their module on first use.

- :func:`to_tf_dataset`: ``tf.data`` datasets of ``(inputs, targets)`` from
  token shards (the windows ``get_batch`` draws) or from a list of texts.
- :func:`build_keras_lstm`, :func:`build_keras_gpt`: the tutorial's Embedding +
  LSTM + Dense and a decoder-only transformer, compiled with a loss that
  ignores our pad id; :func:`save_keras` / :func:`load_keras` keep the model
  and the tokenizer together; :func:`keras_generate` and
  :func:`keras_generate_text` decode greedily or by sampling.

>>> from microtransformer.integrations import to_tf_dataset, build_keras_lstm  # doctest: +SKIP
>>> model = build_keras_lstm(tok.vocab_size, pad_id=tok.pad_id)  # doctest: +SKIP
>>> model.fit(to_tf_dataset(texts, tok, batch_size=16), epochs=3)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from microtransformer.errors import ConfigError

_EXPORTS = {
    "to_tf_dataset": "microtransformer.integrations.tf_data",
    "shards_to_tf_dataset": "microtransformer.integrations.tf_data",
    "texts_to_tf_dataset": "microtransformer.integrations.tf_data",
    "build_keras_lstm": "microtransformer.integrations.keras_lm",
    "build_keras_gpt": "microtransformer.integrations.keras_lm",
    "masked_lm_loss": "microtransformer.integrations.keras_lm",
    "save_keras": "microtransformer.integrations.keras_lm",
    "load_keras": "microtransformer.integrations.keras_lm",
    "keras_generate": "microtransformer.integrations.keras_lm",
    "keras_generate_text": "microtransformer.integrations.keras_lm",
}

__all__ = ["require_tensorflow", *_EXPORTS]


def require_tensorflow() -> ModuleType:
    """``import tensorflow``, or a :class:`ConfigError` that says how to install it."""
    try:
        return importlib.import_module("tensorflow")
    except ImportError:
        raise ConfigError(
            "this needs TensorFlow, an optional extra: pip install 'microtransformer[tf]' (or pip install tensorflow-cpu)"
        ) from None


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'microtransformer.integrations' has no attribute {name!r}")
    require_tensorflow()
    return getattr(importlib.import_module(module), name)
