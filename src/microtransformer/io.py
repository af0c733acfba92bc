"""Files on disk, safely: atomic writes, names from manifests, directory locks, hashes.

Every file the toolkit writes goes through :func:`atomic_write_bytes`: the data
lands in a temporary file in the same directory and is renamed over the target,
so an interrupted run never leaves a half-written tokenizer or checkpoint. New
files get the permissions the umask allows (``0644`` under umask ``022``), like
any file ``open()`` creates.

File names read from a manifest (``tokenizer_config.json``, a shards
``meta.json``, a run's ``last.json``) go through :func:`member_path`, so a
hand-edited or hostile manifest cannot make us open, hash or size-check a file
outside its own directory.

A directory a long job writes into (a run, a checkpoint folder, shards) is
held with :class:`DirectoryLock`, an OS advisory lock that dies with the
process: a second writer stops at once, naming the first one's PID, and
``kill -9`` leaves no stale lock behind.

>>> member_path("tok", "tokenizer.tiktoken")
PosixPath('tok/tokenizer.tiktoken')
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microtransformer.errors import ConfigError, DirectoryInUseError, UnsafePathError

try:  # POSIX advisory locks; Windows has no fcntl and runs there without directory locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
LOCK_NAME = ".lock"


def current_umask() -> int:
    """The process umask, read without changing it where Linux exposes it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (not thread-safe, but only briefly wrong)
    os.umask(mask)
    return mask


def ensure_dir(path: PathLike, what: str = "output directory") -> Path:
    """Create ``path`` (and parents); a typed error when it, or a parent, is a file."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {path} cannot be created: it (or a parent) is an existing file; choose another path") from None
    return path


def check_output_dir(path: PathLike, what: str = "--output_dir") -> Path:
    """Fail fast, before any work, when ``path`` cannot become a directory we write into.

    An existing file is a :class:`ConfigError`; a directory we may not write
    into is a ``PermissionError`` (nothing is created here).
    """
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what} {path} cannot be a directory: {probe} is an existing file; choose another path")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write {what} (permission denied)", str(probe))
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via temp file + ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp creates 0600; a new file should get what the umask allows
            os.fchmod(fd, 0o666 & ~current_umask())
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
    ensure_dir(final.parent)
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


# ----------------------------------------------------------- manifest names
def member_path(directory: PathLike, name: Any, *, manifest: str = "manifest", error: type[Exception] = UnsafePathError) -> Path:
    """``directory / name`` for a file name read from a manifest, refusing anything that could leave ``directory``.

    Only a plain name is accepted: no path separator, no ``..``, not absolute,
    and not a symlink that resolves outside ``directory``. ``error`` is the
    exception type the caller's users expect (a :class:`TokenizerFormatError`
    for a tokenizer, ...).

    >>> member_path("shards", "train.bin")
    PosixPath('shards/train.bin')
    >>> member_path("shards", "../../etc/passwd")  # doctest: +SKIP
    UnsafePathError: manifest in shards names the file '../../etc/passwd', which is not a plain file name ...
    """
    directory = Path(directory)
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(c in name for c in ("/", "\\", "\0"))
        or os.path.isabs(name)
    ):
        raise error(
            f"{manifest} in {directory} names the file {name!r}, which is not a plain file name inside that "
            "directory (separators, '..' and absolute paths are refused); restore the manifest or re-create the directory"
        )
    path = directory / name
    if path.is_symlink():
        target = path.resolve()
        root = directory.resolve()
        if target != root and root not in target.parents:
            raise error(
                f"{path} (named in {manifest}) is a symlink to {target}, outside {directory}; "
                "copy the file into the directory instead"
            )
    return path


# -------------------------------------------------------------- stale files
_TEMP_PATTERNS = (
    re.compile(r"^\.(?:tmp|old)-.+-(?P<pid>\d+)-\d+$"),  # atomic_replace_dir
    re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.tmp$"),  # atomic_write_bytes
    re.compile(r"^\..+\.tmp$"),  # older atomic_write_bytes names and shard files in progress (no pid)
)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(directory: PathLike) -> list[Path]:
    """Delete what killed writers left in ``directory``: half-built checkpoint folders and temp files.

    Call it while holding the directory's :class:`DirectoryLock`. Entries
    whose name carries the PID of a live process are left alone. Returns what
    was removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        for pattern in _TEMP_PATTERNS:
            m = pattern.match(entry.name)
            if m is None:
                continue
            pid = m.groupdict().get("pid")
            if pid is not None and _alive(int(pid)):
                break
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
            break
    if removed:
        logger.info("removed %d stale temporary file(s)/folder(s) in %s (left by an interrupted run)", len(removed), directory)
    return removed


# -------------------------------------------------------------------- locks
_HELD: dict[str, list[Any]] = {}  # resolved dir -> [fd, depth, lock file path, created the dir]


class DirectoryLock:
    """Exclusive advisory lock (``fcntl.flock``) on a directory, for one writer at a time.

    The lock file ``.lock`` holds the owner's PID for the error message and is
    removed on release; the lock itself belongs to the open file, so the OS
    drops it when the process ends, however it ends (a ``.lock`` left by
    ``kill -9`` is simply locked again). Re-entrant within a process (the CLI
    and the library function it calls both take it). A directory created only
    to hold the lock is removed again on release if nothing else was written.

    >>> with DirectoryLock("runs/a", purpose="mtx train"):  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, directory: PathLike, *, purpose: str = "microtransformer") -> None:
        self.directory = Path(directory)
        self.purpose = purpose
        self._key: str | None = None

    def acquire(self) -> DirectoryLock:
        created = not self.directory.exists()
        ensure_dir(self.directory, "directory")
        key = str(self.directory.resolve())
        self._key = key
        if key in _HELD:
            _HELD[key][1] += 1
            return self
        path = self.directory / LOCK_NAME
        if fcntl is None:  # pragma: no cover - Windows
            _HELD[key] = [None, 1, path, created]
            return self
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                owner = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                pid, _, what = owner.partition(" ")
                raise DirectoryInUseError(
                    f"{self.directory} is in use by process {pid}{f' ({what})' if what else ''}; "
                    f"wait for it to finish or stop it (kill {pid}), or use another directory"
                ) from None
            try:  # a releasing owner may have removed the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.purpose}\n".encode())
        _HELD[key] = [fd, 1, path, created]
        return self

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _HELD[key]
        fd, _, path, created = entry
        Path(path).unlink(missing_ok=True)  # still locked here; a waiter that opened it re-checks the inode
        if created:
            try:
                self.directory.rmdir()  # only succeeds if nothing was written: a failed command leaves no trace
            except OSError:
                pass
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
