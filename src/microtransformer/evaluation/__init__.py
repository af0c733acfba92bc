"""Evaluation: perplexity and bits per byte (comparable across tokenizers), and self-contained HTML report helpers."""

from microtransformer.evaluation.metrics import (
    LN2,
    bits_per_byte,
    bits_per_byte_from_loss,
    nats_and_bytes,
    perplexity,
    token_nats,
)

__all__ = ["LN2", "bits_per_byte", "bits_per_byte_from_loss", "nats_and_bytes", "perplexity", "token_nats"]
