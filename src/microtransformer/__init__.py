"""microtransformer: tokenizers as a first-class, measurable part of small language models."""

__version__ = "0.1.0"
