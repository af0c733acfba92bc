"""microtransformer: tokenizers as a first-class, measurable part of small language models.

The public API, imported lazily so ``import microtransformer`` stays fast and
never imports torch until a model is used.

>>> from microtransformer import MicroTransformerTokenizer
>>> tok = MicroTransformerTokenizer.train_from_iterator(["hello world"] * 20, vocab_size=300)
>>> tok.decode(tok.encode("hello"))
'hello'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MicroTransformerTokenizer": "microtransformer.tokenization.base",
    "BatchEncoding": "microtransformer.tokenization.base",
    "SpecialToken": "microtransformer.tokenization.special",
    "available_engines": "microtransformer.tokenization.registry",
    "render_conversation": "microtransformer.tokenization.chat",
    "visualize_tokenization": "microtransformer.tokenization.chat",
    "Corpus": "microtransformer.data.corpus",
    "prepare_input_for_batch": "microtransformer.data.batches",
    "create_causal_lm_inputs": "microtransformer.data.batches",
    "create_mlm_inputs": "microtransformer.data.batches",
    "compare_tokenizers": "microtransformer.evaluation.compare",
    "CompareConfig": "microtransformer.evaluation.compare",
    "ComparisonResult": "microtransformer.evaluation.compare",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'microtransformer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
