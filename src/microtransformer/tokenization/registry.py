"""Engine name -> class, imported lazily.

Lazy imports keep ``import microtransformer`` light: loading a ``bpe``
tokenizer never imports torch (the autoencoder engine does) or sentencepiece.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from microtransformer.errors import UnknownEngineError

if TYPE_CHECKING:
    from microtransformer.tokenization.base import MicroTransformerTokenizer

_ENGINES: dict[str, str] = {
    "bpe": "microtransformer.tokenization.bpe:BPETokenizer",
    "hf-bytelevel": "microtransformer.tokenization.hf_bpe:HFByteLevelTokenizer",
    "hf-bpe": "microtransformer.tokenization.hf_bpe:HFByteFallbackTokenizer",
    "sentencepiece": "microtransformer.tokenization.sentencepiece_bpe:SentencePieceTokenizer",
    "reference": "microtransformer.tokenization.reference:ReferenceTokenizer",
    "autoencoder": "microtransformer.autoencoder.tokenizer:AutoEncoderTokenizer",
}


def available_engines() -> list[str]:
    """Names accepted by ``engine=`` / ``--engine``."""
    return list(_ENGINES)


def register_engine(name: str, target: str) -> None:
    """Register ``"package.module:ClassName"`` under ``name`` (for third-party engines)."""
    _ENGINES[name] = target


def get_engine(name: str) -> type[MicroTransformerTokenizer]:
    """The engine class for ``name``; a typed error listing the valid names otherwise."""
    target = _ENGINES.get(name) if isinstance(name, str) else None
    if target is None:
        raise UnknownEngineError(f"unknown tokenizer engine {name!r}; choose one of: {', '.join(_ENGINES)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UnknownEngineError(
            f"tokenizer engine {name!r} is registered but cannot be imported ({exc}); "
            "reinstall microtransformer with its dependencies (pip install -e .)"
        ) from exc
    return getattr(module, attr)
