"""Train one tokenizer in a fresh Python process and report its training time and peak RSS.

Why a process of its own: peak RSS is a property of a process, so measuring
several trainings inside one process would give each the high-water mark of
everything before it. :func:`train_in_subprocess` starts
``python -m microtransformer.evaluation.train_measured SPEC OUT``; the child
imports the engine, records its resident set (the *baseline*: interpreter,
package and engine library), streams the corpus into ``train_from_iterator``,
and reads its own peak (Linux ``VmHWM`` in ``/proc/self/status``: the high-water
mark of this process's memory only; ``ru_maxrss`` of a child can carry over
the parent's pages across fork + exec). Training time is wall time of
``train_from_iterator``, corpus reading included.

>>> m = train_in_subprocess(Corpus.builtin(), "bpe", 4096, "tok/", threads=2)  # doctest: +SKIP
>>> m.seconds, m.peak_rss_mb  # doctest: +SKIP
(0.41, 61.2)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from microtransformer.data.corpus import Corpus
from microtransformer.errors import MicroTransformerError, TokenizerError
from microtransformer.io import PathLike, atomic_write_json, read_json
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.registry import get_engine

try:
    import resource  # Unix: the fallback peak when /proc/self/status is missing
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = ["TrainMeasurement", "rss_mb", "train_in_subprocess"]


@dataclass(frozen=True)
class TrainMeasurement:
    """Training wall time, the process's RSS before training and its peak (MB = 2^20 bytes)."""

    seconds: float
    baseline_rss_mb: float | None
    peak_rss_mb: float | None
    rss_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rss_mb() -> tuple[float | None, float | None, str]:
    """(current RSS, peak RSS, where they came from) of this process, in MB."""
    try:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024  # kB -> MB
        return fields.get("VmRSS"), fields.get("VmHWM"), "VmHWM (/proc/self/status)"
    except OSError:  # not Linux: ru_maxrss is kB on Linux, bytes on macOS
        if resource is None:
            return None, None, "unavailable"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return None, peak / (2**20 if sys.platform == "darwin" else 2**10), "ru_maxrss"


def _corpus_spec(corpus: Corpus) -> dict[str, Any]:
    return {
        "files": [str(p) for p in corpus.files],
        "builtin_name": corpus.builtin_name,
        "errors": corpus.errors,
        "skip_binary": corpus.skip_binary,
        "source": corpus.source,
    }


def _corpus_from_spec(spec: dict[str, Any]) -> Corpus:
    return Corpus(
        files=tuple(Path(p) for p in spec["files"]),
        builtin_name=spec["builtin_name"],
        errors=spec["errors"],
        skip_binary=spec["skip_binary"],
        source=spec["source"],
    )


def train_in_subprocess(
    corpus: Corpus,
    engine: str,
    vocab_size: int,
    output_dir: PathLike,
    *,
    threads: int,
    options: dict[str, Any] | None = None,
) -> TrainMeasurement:
    """Train ``engine`` on ``corpus`` in a child process, save it to ``output_dir``; return the measurement.

    ``threads`` caps the native thread pools (``RAYON_NUM_THREADS`` for
    rustbpe and Hugging Face, SentencePiece's ``num_threads``). A failure in
    the child is raised here as :class:`TokenizerError` with the child's
    message (its stderr, with engine logging, is shown only then).
    """
    spec = {
        "corpus": _corpus_spec(corpus),
        "engine": engine,
        "vocab_size": vocab_size,
        "output_dir": str(output_dir),
        "options": {**({"num_threads": threads} if engine == "sentencepiece" else {}), **(options or {})},
    }
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="mtx-train-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        atomic_write_json(spec_path, spec)
        proc = subprocess.run(
            [sys.executable, "-m", __name__, str(spec_path), str(out_path)],
            env=env, capture_output=True, text=True, errors="replace", check=False,
        )
        result = read_json(out_path) if out_path.is_file() else {}
    if proc.returncode != 0 or "seconds" not in result:
        why = result.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise TokenizerError(f"training the {engine} tokenizer (vocab {vocab_size}) failed: {why}")
    return TrainMeasurement(**result)


def main(argv: list[str]) -> int:
    """Child entry: ``SPEC.json OUT.json``; writes the measurement (or ``{"error": ...}``) to OUT."""
    spec_path, out_path = argv
    spec = read_json(spec_path)
    try:
        get_engine(spec["engine"])  # import the engine's library before the baseline
        corpus = _corpus_from_spec(spec["corpus"])
        baseline, _, _ = rss_mb()
        start = time.perf_counter()
        tok = MicroTransformerTokenizer.train_from_iterator(
            corpus.iter_documents(), engine=spec["engine"], vocab_size=spec["vocab_size"], **spec["options"]
        )
        seconds = time.perf_counter() - start
        _, peak, source = rss_mb()
        tok.save(spec["output_dir"])
    except MicroTransformerError as exc:
        atomic_write_json(out_path, {"error": str(exc)})
        return 2
    atomic_write_json(out_path, {"seconds": seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak, "rss_source": source})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
