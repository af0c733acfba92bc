"""Device and precision selection, as functions (nothing happens at import).

Why functions and not module-level globals: importing the tokenizer must not
import torch, and a CLI flag (``--device``, ``--precision``) has to be able to
override the choice. Every choice comes back with a human-readable *reason*
so the trainer can say why it picked fp32 or bf16.

Precision policy:

- CUDA: bf16 autocast when the GPU supports bf16 (Ampere and newer), else
  fp16 autocast with a ``GradScaler``. ``fp16`` is used only when asked.
- CPU: fp32, unless the CPU has native bf16 units (``avx512_bf16`` or
  ``amx_bf16`` in ``/proc/cpuinfo``) or bf16 is asked for. Without those
  units bf16 autocast is emulated and was measured ~30x slower than fp32 (74
  vs ~2,200 tokens/s); with ``avx512_bf16`` it measured ~1.8x *faster* on our
  benchmark GPT (docs/benchmarks.md), so ``auto`` follows the hardware.

>>> choice = choose_precision("cpu", "fp32")
>>> choice.dtype, choice.autocast
('float32', False)
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microtransformer.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and why.

    ``dtype`` is the autocast dtype name (``"float32"`` means no autocast);
    ``use_grad_scaler`` is true only for fp16 on CUDA, where small gradients
    underflow without loss scaling.
    """

    device_type: str
    precision: str  # "fp32" | "bf16" | "fp16"
    reason: str

    @property
    def dtype(self) -> str:
        return _DTYPE_NAMES[self.precision]

    @property
    def autocast(self) -> bool:
        return self.precision != "fp32"

    @property
    def use_grad_scaler(self) -> bool:
        return self.precision == "fp16" and self.device_type == "cuda"

    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    def autocast_context(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` for bf16/fp16, a no-op context for fp32."""
        if not self.autocast:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=self.device_type, dtype=self.torch_dtype())


def training_precision(device: str = "auto", precision: str = "auto") -> str:
    """What a run asking for ``device`` and ``precision`` trains in (:func:`choose_device`, then
    :func:`choose_precision`): ``"auto"`` is ``"fp32"`` on a CPU without bf16 units. Model sizes for a time budget
    depend on it (a run in fp32 steps about half as fast).

    >>> training_precision("cpu", "fp32")
    'fp32'
    """
    return choose_precision(choose_device(device)[0], precision).precision


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The bf16-related CPU flags found in ``/proc/cpuinfo`` (empty if unknown).

    ``avx512_bf16`` (Cooper Lake / Zen 4+) and ``amx_bf16`` (Sapphire Rapids+)
    mean oneDNN has native bf16 matmul kernels; without them bf16 is emulated.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return sorted(flags & {"avx512_bf16", "amx_bf16"})


def choose_device(requested: str = "auto") -> tuple[str, str]:
    """Return ``(device, reason)``: ``"cuda"`` when available, else ``"cpu"``.

    >>> choose_device("cpu")
    ('cpu', 'asked for cpu')
    """
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda", f"CUDA is available ({torch.cuda.get_device_name(0)})"
        return "cpu", "no CUDA GPU found"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested} was asked for but CUDA is not available; use --device cpu or auto")
        return requested, f"asked for {requested}"
    if requested == "cpu":
        return "cpu", "asked for cpu"
    raise ConfigError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")


def choose_precision(device: str, requested: str = "auto", *, cpu_bf16_auto: bool = True) -> PrecisionChoice:
    """Pick fp32/bf16/fp16 for ``device``; the reason says why.

    ``cpu_bf16_auto``: with ``requested="auto"`` on a CPU that has bf16 units,
    use bf16 autocast. On by default: on an ``avx512_bf16`` CPU bf16 autocast
    trained our GPT 1.8x faster than fp32 (docs/benchmarks.md), while on CPUs
    without bf16 units it is emulated and far slower, so those stay on fp32.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    device_type = "cuda" if device.startswith("cuda") else device
    if device_type == "cuda":
        import torch

        if requested == "auto":
            if torch.cuda.is_bf16_supported():
                return PrecisionChoice("cuda", "bf16", "CUDA GPU with bf16 support: bf16 autocast (no loss scaling needed)")
            return PrecisionChoice("cuda", "fp16", "CUDA GPU without bf16: fp16 autocast with GradScaler")
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use --precision fp16 or fp32")
        return PrecisionChoice("cuda", requested, f"asked for {requested} on CUDA")
    if device_type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; use cpu or cuda")
    if requested == "fp16":
        raise ConfigError("fp16 autocast is not supported for CPU training here; use --precision fp32 or bf16")
    flags = cpu_bf16_flags()
    if requested == "bf16":
        why = f"CPU has {', '.join(flags)}" if flags else "CPU has no bf16 units, so expect it to be much slower than fp32"
        return PrecisionChoice("cpu", "bf16", f"asked for bf16 autocast on CPU ({why})")
    if requested == "fp32":
        return PrecisionChoice("cpu", "fp32", "asked for fp32")
    if flags and cpu_bf16_auto:
        return PrecisionChoice(
            "cpu",
            "bf16",
            f"CPU has native bf16 units ({', '.join(flags)}): bf16 autocast (measured ~1.8x faster than fp32 on "
            "such a CPU); pass --precision fp32 for full precision",
        )
    if flags:
        return PrecisionChoice(
            "cpu",
            "fp32",
            f"CPU default is fp32 (exact resume, no cast overhead); this CPU has {', '.join(flags)}, "
            "pass --precision bf16 to try bf16 autocast",
        )
    return PrecisionChoice(
        "cpu",
        "fp32",
        "CPU without bf16 units (no avx512_bf16/amx_bf16): bf16 autocast would be emulated and ~30x slower, so fp32",
    )


def num_threads_from_env() -> int | None:
    """``MTX_NUM_THREADS`` as a positive int, None when unset; a typed error for anything else."""
    value = os.environ.get("MTX_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"MTX_NUM_THREADS must be a positive integer, got {value!r}; unset it or use e.g. MTX_NUM_THREADS=1")
    return n


def set_num_threads(num_threads: int | None = None) -> int | None:
    """Set torch's CPU threads to ``num_threads``, else to ``MTX_NUM_THREADS`` if set; returns what was set.

    Why: on a shared 2-core machine where a neighbour keeps one core busy,
    every OpenMP region waits for the descheduled second thread; there one
    thread trained the benchmark GPT ~1.8x faster than two (docs/benchmarks.md).
    """
    if num_threads is not None and (not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1):
        raise ConfigError(f"num_threads must be a positive integer, got {num_threads!r}")
    n = num_threads if num_threads is not None else num_threads_from_env()
    if n is not None:
        import torch

        torch.set_num_threads(n)
    return n


def set_num_threads_from_env() -> None:
    """Honour ``MTX_NUM_THREADS`` if set (see :func:`set_num_threads`)."""
    set_num_threads(None)
