"""Perplexity and bits per byte.

Why bits per byte: loss per *token* cannot compare two tokenizers (a
tokenizer with longer tokens has fewer, harder predictions). Dividing the
total information by the number of UTF-8 bytes of text predicted gives a
number that is comparable across vocabularies::

    bpb = (sum of per-token losses in nats) / ln 2 / (sum of bytes of those tokens)
        = mean_loss / ln 2 * n_tokens / n_bytes

Targets that are special tokens (0 bytes, e.g. the BOS between documents) and
ignored targets (``-100``) are left out of both sums, as nanochat does: they are not text, and different
tokenizers insert different numbers of them.

>>> round(bits_per_byte_from_loss(math.log(2), n_tokens=10, n_bytes=40), 6)
0.25
>>> round(perplexity(math.log(4.0)), 6)
4.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

LN2 = math.log(2.0)
IGNORE_INDEX = -100  # ignored targets, as in the models' loss


def perplexity(mean_loss_nats: float) -> float:
    """``exp(loss)``; ``inf`` instead of an OverflowError for a diverged model."""
    try:
        return math.exp(mean_loss_nats)
    except OverflowError:
        return math.inf


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Total information in bits divided by the bytes of text it encodes."""
    if total_bytes <= 0:
        raise ValueError("bits per byte needs at least one byte of text; got 0 bytes")
    return total_nats / LN2 / total_bytes


def bits_per_byte_from_loss(mean_loss_nats: float, *, n_tokens: int, n_bytes: int) -> float:
    """``loss / ln 2 * tokens / bytes`` for a mean loss over ``n_tokens`` tokens."""
    return bits_per_byte(mean_loss_nats * n_tokens, n_bytes)


def token_nats(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy in nats, ``(B*T,)``, computed in fp32 even under autocast.

    Targets of ``-100`` (ignored labels) give 0 nats; count them out with ``targets != -100``.
    """
    import torch.nn.functional as F

    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="none", ignore_index=IGNORE_INDEX
    )


def nats_and_bytes(
    token_losses: torch.Tensor, targets: torch.Tensor, token_bytes: torch.Tensor, scored: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of per-token losses (nats) and of target byte lengths, skipping special targets.

    ``token_losses`` ``(N,)`` from :func:`token_nats`, ``targets`` with ``N``
    elements, ``token_bytes`` ``(V,)`` integer tensor on the same device.
    ``scored`` ``(V,)`` bool: the ids whose loss counts (text, not special
    tokens); default: those with bytes (a tokenizer's ``token_text_bytes``
    can give text tokens 0 bytes, so pass its ``text_ids()`` with those).
    Returns two 0-d tensors (summed on device; one sync when the caller reads them).
    """
    flat = targets.reshape(-1)  # (N,)
    ids = flat.clamp(min=0)
    nbytes = token_bytes[ids] * (flat != IGNORE_INDEX)  # (N,): ignored targets have no bytes
    keep = nbytes > 0 if scored is None else scored[ids] & (flat != IGNORE_INDEX)
    return (token_losses * keep).sum(), nbytes.sum()
