"""Files on disk: atomic writes respect the umask, manifest names stay in their folder, one writer per folder."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from microtransformer.errors import DirectoryInUseError, UnsafePathError
from microtransformer.io import (
    LOCK_NAME,
    DirectoryLock,
    atomic_replace_dir,
    atomic_write_bytes,
    member_path,
    remove_stale_temporaries,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    old = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_the_umask(tmp_path, umask, mask: int, mode: int) -> None:
    umask(mask)
    path = atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under the same umask
    assert stat.S_IMODE(plain.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_saved_tokenizer_files_are_0644_under_umask_022(tmp_path, umask) -> None:
    from microtransformer.tokenization import MicroTransformerTokenizer

    umask(0o022)
    tok = MicroTransformerTokenizer.train_from_iterator(["hello world, hello again"] * 20, vocab_size=270)
    out = tok.save(tmp_path / "tok")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/file", "..", ".", "", "a\\b", "a\0b", 5, None])
def test_member_path_refuses_anything_but_a_plain_name(tmp_path, name) -> None:
    with pytest.raises(UnsafePathError, match="plain file name"):
        member_path(tmp_path, name, manifest="meta.json")


def test_member_path_refuses_symlinks_leaving_the_folder(tmp_path) -> None:
    inside, outside = tmp_path / "dir", tmp_path / "secret.txt"
    inside.mkdir()
    outside.write_text("secret")
    (inside / "ok.txt").write_text("fine")
    (inside / "link_out").symlink_to(outside)
    (inside / "link_in").symlink_to(inside / "ok.txt")
    with pytest.raises(UnsafePathError, match="outside"):
        member_path(inside, "link_out")
    assert member_path(inside, "link_in") == inside / "link_in"
    assert member_path(inside, "ok.txt") == inside / "ok.txt"


def _holder(directory: Path, purpose: str = "test holder") -> subprocess.Popen:
    """Another process that takes the lock and keeps it until killed."""
    code = (
        "import sys, time; from microtransformer.io import DirectoryLock; "
        f"DirectoryLock(sys.argv[1], purpose={purpose!r}).acquire(); print('locked', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused_with_the_pid_and_kill_9_leaves_no_stale_lock(tmp_path) -> None:
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        with pytest.raises(DirectoryInUseError, match=rf"in use by process {proc.pid} \(test holder\)"):
            DirectoryLock(run).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (run / LOCK_NAME).exists()  # the file survives kill -9, the lock does not
    with DirectoryLock(run, purpose="second") as lock:
        assert lock.directory == run
        with DirectoryLock(run):  # re-entrant in one process
            pass
        assert (run / LOCK_NAME).read_text().startswith(f"{os.getpid()} second")
    assert not (run / LOCK_NAME).exists()


def test_a_folder_made_only_for_the_lock_is_removed_again(tmp_path) -> None:
    with DirectoryLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    with DirectoryLock(tmp_path / "kept"):
        (tmp_path / "kept" / "out.txt").write_text("work")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["out.txt"]


def test_stale_temporaries_are_removed_but_not_a_live_writers(tmp_path) -> None:
    def boom(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an interrupted save cleans up after itself ...
        atomic_replace_dir(tmp_path / "step_000002", boom)
    assert list(tmp_path.iterdir()) == []
    # ... but kill -9 does not: these are what such a process leaves
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = [
        tmp_path / f".tmp-step_000004-{dead_pid}-{time.monotonic_ns()}",
        tmp_path / f".old-step_000002-{dead_pid}-{time.monotonic_ns()}",
        tmp_path / f".meta.json.{dead_pid}.ab12cd_x.tmp",
        tmp_path / ".train.bin.tmp",
    ]
    for p in stale[:2]:
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"x" * 10)
    for p in stale[2:]:
        p.write_bytes(b"x")
    live = tmp_path / f".tmp-step_000006-{os.getppid()}-{time.monotonic_ns()}"  # our parent is alive
    live.mkdir()
    keep = [tmp_path / "step_000002", tmp_path / "last.json"]
    keep[0].mkdir()
    keep[1].write_text("{}")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted([live, *keep])
