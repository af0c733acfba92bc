"""What the learned tokenizer's commands measure, as dataclasses with one ``to_json``/``from_json`` each.

* :class:`ReconstructionResult`: ``mtx autoencoder eval`` (network alone,
  and after the tokenizer's fallback);
* :class:`CodebookAnalysis`: ``mtx autoencoder analyze``;
* :class:`PretrainHistory`: the train and validation records of a
  pre-training run (its ``metrics.jsonl``).

The HTML report and the CLI read these fields; nothing passes results around
as dicts of string keys. ``from_json`` also reads the files the earlier
release wrote (flat ``summary`` keys, ``val_exact_rate``). No torch here.

>>> TrainLog.from_record({"step": 5, "loss": 2.0, "char_accuracy": 0.5, "lr": 1e-3}).encoder_lr
0.001
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from microtransformer.errors import ConfigError

__all__ = [
    "AfterFallback",
    "CodebookAnalysis",
    "CodebookSummary",
    "EvalLog",
    "FallbackStats",
    "PretrainHistory",
    "ReconstructionResult",
    "SentenceResult",
    "TokenizerCoverage",
    "TokenizerInfo",
    "TopCode",
    "TopKRow",
    "TrainLog",
    "ValidationResult",
]

RECONSTRUCTION_KIND = "autoencoder_reconstruction"
CODEBOOK_KIND = "autoencoder_codebook"


def _pick(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


# ------------------------------------------------------------------ reconstruction
@dataclass
class SentenceResult:
    """One standard sentence, network alone (and, for a tokenizer, after the fallback)."""

    text: str
    decoded: str
    perfect: bool
    chunks: int
    exact_chunks: int
    char_accuracy: float
    levenshtein: int
    tokens_after_fallback: int | None = None
    perfect_after_fallback: bool | None = None


@dataclass
class ValidationResult:
    """Network alone on the validation split, weighted by occurrence (what a tokenizer sees)."""

    char_accuracy: float
    exact_chunk_rate: float
    loss: float
    distinct_codes: int
    unique_chunks: int
    occurrences: int


@dataclass
class FallbackStats:
    """Cost of the fallback on some text: bytes per token, and the share of multi-byte chunks not one token."""

    bytes_per_token: float
    fallback_rate: float
    bytes: int
    tokens: int


@dataclass
class AfterFallback:
    """A tokenizer's figures: lossless by construction, so what varies is the cost."""

    sentences_perfect: int
    sentences_total: int
    bytes_per_token_sentences: float
    val: FallbackStats | None = None
    texts: dict[str, FallbackStats] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AfterFallback:
        val = data.get("val")
        return cls(
            sentences_perfect=data["sentences_perfect"], sentences_total=data["sentences_total"],
            bytes_per_token_sentences=data["bytes_per_token_sentences"],
            val=FallbackStats(**val) if val else None,
            texts={k: FallbackStats(**v) for k, v in (data.get("texts") or {}).items()},
        )

    @classmethod
    def from_legacy(cls, flat: dict[str, Any]) -> AfterFallback:
        """The earlier flat form: ``val_bytes_per_token``, ``<name>_fallback_rate``, ..."""
        groups: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            for stat in ("bytes_per_token", "fallback_rate", "bytes", "tokens"):
                if key.endswith("_" + stat) and key != "bytes_per_token_sentences":
                    groups.setdefault(key[: -len(stat) - 1], {})[stat] = value
        stats = {name: FallbackStats(**g) for name, g in groups.items() if len(g) == 4}
        return cls(
            sentences_perfect=flat["sentences_perfect"], sentences_total=flat["sentences_total"],
            bytes_per_token_sentences=flat["bytes_per_token_sentences"],
            val=stats.pop("val", None), texts=stats,
        )


@dataclass
class TokenizerInfo:
    vocab_size: int
    n_codes: int
    fingerprint: str


@dataclass
class ReconstructionResult:
    """``mtx autoencoder eval``: standard sentences and the validation split, network alone; after fallback for a tokenizer."""

    phase: str
    created: str
    model_config: dict[str, Any]
    parameters: int
    sentences: list[SentenceResult]
    sentences_total: int
    sentences_perfect: int
    char_accuracy: float
    exact_chunk_rate: float
    mean_levenshtein: float
    total_levenshtein: int
    val: ValidationResult | None = None
    after_fallback: AfterFallback | None = None
    tokenizer: TokenizerInfo | None = None
    model_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": RECONSTRUCTION_KIND, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> ReconstructionResult:
        """A results file of ``mtx autoencoder eval --output`` (this release's or the earlier one's)."""
        if not isinstance(data, dict):
            raise ConfigError("not a results file of `mtx autoencoder eval --output` (not a JSON object)")
        if "summary" in data:
            data = _legacy_reconstruction(data)
        elif data.get("kind") != RECONSTRUCTION_KIND:
            raise ConfigError("not a results file of `mtx autoencoder eval --output` (no summary)")
        try:
            return cls(
                **{k: v for k, v in _pick(cls, data).items() if k not in ("sentences", "val", "after_fallback", "tokenizer")},
                sentences=[SentenceResult(**s) for s in data["sentences"]],
                val=ValidationResult(**data["val"]) if data.get("val") else None,
                after_fallback=AfterFallback.from_json(data["after_fallback"]) if data.get("after_fallback") else None,
                tokenizer=TokenizerInfo(**data["tokenizer"]) if data.get("tokenizer") else None,
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a results file of `mtx autoencoder eval --output` ({exc})") from None


def _legacy_reconstruction(data: dict[str, Any]) -> dict[str, Any]:
    """The earlier release's results JSON (figures flat under ``summary``) in this release's shape."""
    s = data["summary"]
    if not isinstance(s, dict) or not {"sentences_perfect", "sentences_total", "char_accuracy"} <= set(s):
        raise ConfigError("not a results file of `mtx autoencoder eval --output` (no summary)")
    val = None
    if "val_char_accuracy" in s:
        val = {
            "char_accuracy": s["val_char_accuracy"], "exact_chunk_rate": s["val_exact_chunk_rate"], "loss": s["val_loss"],
            "distinct_codes": s["val_distinct_codes"], "unique_chunks": s["val_unique_chunks"],
            "occurrences": s["val_occurrences"],
        }
    after = AfterFallback.from_legacy(s["after_fallback"]) if s.get("after_fallback") else None
    return {
        **{k: data.get(k) for k in ("phase", "created", "model_config", "parameters", "sentences", "tokenizer")},
        **{k: s[k] for k in ("sentences_total", "sentences_perfect", "char_accuracy", "exact_chunk_rate",
                             "mean_levenshtein", "total_levenshtein")},
        "model_path": data.get("model_path", ""), "val": val, "after_fallback": asdict(after) if after else None,
    }


# ------------------------------------------------------------------ codebook
@dataclass
class CodebookSummary:
    """How one corpus's chunks use the FSQ grid (``analyze_codebook``'s definitions)."""

    codebook_size: int
    unique_chunks: int
    occurrences: int
    distinct_codes: int
    grid_utilization: float
    codes_with_collisions: int
    chunks_in_collisions: int
    occurrence_share_in_collided_codes: float
    mean_unique_chunks_per_code: float
    max_unique_chunks_per_code: int
    exact_reconstruction_occurrence_rate: float
    exact_reconstruction_unique_rate: float
    heldout_occurrences: int


@dataclass
class TopKRow:
    """Coverage and utilization of the vocabulary made of the ``k`` most used codes."""

    k: int
    vocab_codes: int
    coverage_train: float
    coverage_heldout: float
    fallback_rate_heldout: float
    vocab_codes_used_heldout: int
    vocab_utilization: float


@dataclass
class TokenizerCoverage:
    """The same figures for an exported tokenizer's codes (and the ids it emits on held-out text)."""

    vocab_codes: int
    coverage_heldout: float
    fallback_rate_heldout: float
    vocab_codes_used_heldout: int
    vocab_utilization: float
    ids_used_heldout: int | None = None
    id_utilization: float | None = None


@dataclass
class TopCode:
    code: int
    occurrences: int
    unique_chunks: int
    chunks: list[str]


@dataclass
class CodebookAnalysis:
    """``mtx autoencoder analyze``: code frequencies, collisions, top-k coverage and both utilizations."""

    summary: CodebookSummary
    topk: list[TopKRow]
    tokenizer: TokenizerCoverage | None
    code_frequencies: list[int]  # descending, for rank-frequency plots
    top_codes: list[TopCode]
    source: dict[str, Any] = field(default_factory=dict)

    DEFINITIONS: ClassVar[dict[str, str]] = {
        "grid_utilization": "distinct codes used by the corpus chunks / prod(levels)",
        "vocab_utilization": "share of the pruned vocabulary's codes emitted at least once on held-out text "
        "(code kept and the decoder reconstructs that exact chunk)",
        "coverage": "share of chunk occurrences that are one token: a single byte, or a kept code that decodes "
        "to exactly that chunk",
        "fallback_rate": "1 - coverage",
    }

    def to_json(self) -> dict[str, Any]:
        return {"kind": CODEBOOK_KIND, **asdict(self), "definitions": dict(self.DEFINITIONS)}

    @classmethod
    def from_json(cls, data: Any) -> CodebookAnalysis:
        """An ``mtx autoencoder analyze --output`` file (this release's or the earlier one's)."""
        try:
            return cls(
                summary=CodebookSummary(**data["summary"]),
                topk=[TopKRow(**r) for r in data["topk"]],
                tokenizer=TokenizerCoverage(**data["tokenizer"]) if data.get("tokenizer") else None,
                code_frequencies=list(data["code_frequencies"]),
                top_codes=[TopCode(**c) for c in data.get("top_codes") or []],
                source=dict(data.get("source") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"not an analysis file of `mtx autoencoder analyze --output` ({exc})") from None


# ------------------------------------------------------------------ pre-training history
@dataclass
class TrainLog:
    """Means over the steps since the previous log line; train batches are sampled by ``count ** sample_alpha``."""

    step: int
    loss: float
    char_accuracy: float
    lr: float
    encoder_lr: float
    distinct_codes: float = 0.0  # per batch
    distinct_chunks: float = 0.0  # per batch
    collision_pairs: float = 0.0  # per batch, with code separation on
    elapsed_s: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainLog:
        return cls(**{"encoder_lr": record.get("lr", 0.0), **_pick(cls, record)})


@dataclass
class EvalLog:
    """Network alone on the validation split at one step (occurrence-weighted); written with ``val_`` keys."""

    step: int
    char_accuracy: float
    exact_chunk_rate: float
    loss: float | None = None
    distinct_codes: float | None = None
    chunks: float | None = None

    def to_record(self) -> dict[str, Any]:
        return {"step": self.step, **{f"val_{k}": v for k, v in asdict(self).items() if k != "step"}}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> EvalLog:
        values = {k[len("val_") :]: v for k, v in record.items() if k.startswith("val_")}
        if "exact_rate" in values:  # the earlier release's name of the metric
            values["exact_chunk_rate"] = values.pop("exact_rate")
        return cls(step=int(record["step"]), **_pick(cls, values))


@dataclass
class PretrainHistory:
    """The train log lines and validation evaluations of a pre-training run, oldest first."""

    train: list[TrainLog] = field(default_factory=list)
    evals: list[EvalLog] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> PretrainHistory:
        """From ``metrics.jsonl`` records: train lines have ``loss``, evaluations ``val_char_accuracy``."""
        history = cls()
        for r in records:
            if "loss" in r:
                history.train.append(TrainLog.from_record(r))
            elif "val_char_accuracy" in r:
                history.evals.append(EvalLog.from_record(r))
        return history

    def to_json(self) -> dict[str, Any]:
        return {"train": [t.to_record() for t in self.train], "evals": [e.to_record() for e in self.evals]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PretrainHistory:
        """This release's ``to_json``, or the earlier ``training_state.json`` (``history`` + ``evals``)."""
        train = data.get("train", data.get("history")) or []
        return cls([TrainLog.from_record(r) for r in train], [EvalLog.from_record(r) for r in data.get("evals") or []])
