"""Keep freed memory in the process: glibc malloc settings for training on a CPU.

Why: a training step allocates the same large activation and gradient
buffers (megabytes each) every step and frees them again. By default glibc
serves such blocks with ``mmap`` and returns them to the kernel on ``free``
(and trims the heap top past a small threshold), so every step touches fresh
pages and pays a page fault and a page of zeroing per 4 KB, which slows the
matmuls that write new outputs (docs/benchmarks.md has the measurements).
Raising the ``mmap`` threshold to glibc's ceiling and (almost) never trimming
keeps those blocks in the heap, reused step after step.
The cost is that the process keeps the memory of its peak until it exits,
which a training process holds anyway. Blocks above 32 MB still come from
``mmap``; the largest, the output layer's logit gradient, is reused by
:mod:`~microtransformer.models.chunked_loss` itself.

Only where the C library is glibc (Linux); elsewhere nothing changes.
PyTorch's CPU tuning guide reaches the same end by preloading jemalloc or
tcmalloc.

>>> keep_freed_memory()  # doctest: +SKIP
True
"""

from __future__ import annotations

import ctypes
import logging
import platform

logger = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit systems: larger values are refused
TRIM_THRESHOLD = (1 << 31) - 1  # give the heap top back only past 2 GB free (mallopt takes a C int)
TOP_PAD = 64 << 20  # grow the heap in 64 MB steps: fewer brk calls


def keep_freed_memory() -> bool:
    """Tell glibc malloc to reuse large freed blocks instead of returning them to the kernel; True if it took.

    Process-wide and idempotent; for commands that train (``mtx train``, the benchmarks), not called on import.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    ok = all(libc.mallopt(p, v) == 1 for p, v in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
                                                   (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    if not ok:
        logger.debug("glibc refused a malloc setting; freed memory goes back to the kernel as before")
    return ok
