"""Atomic writes, JSON helpers and hashes.

Every file the toolkit writes goes through :func:`atomic_write_bytes`: the data
lands in a temporary file in the same directory and is renamed over the target,
so an interrupted run never leaves a half-written tokenizer or checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via temp file + ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as pretty, key-sorted JSON (diff-friendly)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def atomic_replace_dir(final: PathLike, write: Callable[[Path], None]) -> Path:
    """Build a directory under a temporary name with ``write(tmp)``, then rename it to ``final``.

    A reader sees either the old directory or the complete new one, never a
    half-written one; an existing ``final`` (the same step saved again) is
    swapped out and removed only after the new one is in place.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    tmp = final.parent / f".tmp-{final.name}-{stamp}"
    tmp.mkdir()
    try:
        write(tmp)
        if final.exists():
            old = final.parent / f".old-{final.name}-{stamp}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_json(path: PathLike) -> Any:
    """Read a JSON file; raises ``json.JSONDecodeError``/``OSError`` for callers to wrap."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: PathLike) -> str:
    """Stable hash of every regular file under ``path`` (names and contents)."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(sha256_file(p).encode("ascii"))
    return h.hexdigest()
