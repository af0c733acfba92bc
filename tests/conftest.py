"""Shared fixtures: the real corpora in ../shared/data (skipped when absent)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

# Tests check behaviour, not compile speed: torch.compile runs eagerly here (the default recipe compiles its
# blocks, and a cold compile costs tens of seconds per model). Set before torch reads it; subprocesses inherit it.
# tests/models/test_gpt_options.py::test_compiled_blocks_give_the_eager_loss_and_gradients turns compiling back on.
os.environ["TORCH_COMPILE_DISABLE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# No example database in the working tree: tests never write into the repo.
settings.register_profile("microtransformer", database=None)
settings.load_profile("microtransformer")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


# `make test` installs every optional extra and sets this: there a missing extra fails instead of skipping.
REQUIRE_OPTIONAL = os.environ.get("MTX_REQUIRE_OPTIONAL") == "1"


def optional_import(name: str) -> ModuleType:
    """Import an optional dependency; skip the test without it, unless MTX_REQUIRE_OPTIONAL=1 (CI)."""
    if REQUIRE_OPTIONAL:
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="session")
def tf() -> ModuleType:
    """TensorFlow on one thread (tests are single-threaded; the machine is shared)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = optional_import("tensorflow")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised by an earlier test: keep its settings
        pass
    return tf


@pytest.fixture(scope="session")
def pa() -> ModuleType:
    """pyarrow with its Parquet module (the [parquet] extra)."""
    optional_import("pyarrow.parquet")
    return optional_import("pyarrow")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared corpora directory; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "tinyshakespeare.txt").is_file():
        pytest.skip(f"shared corpora not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shakespeare_200k(shared_data_dir: Path) -> str:
    """First 200 KB of tinyshakespeare (ASCII, so 200,000 characters)."""
    return (shared_data_dir / "tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests use tiny tensors that gain nothing from threads, and on a shared 2-core machine an
    OpenMP barrier waiting for a descheduled thread costs ~8 ms per op (one test took 31 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def deny(monkeypatch):
    """Make paths unreadable/unwritable. A normal user gets chmod 000; root ignores file modes, so for
    root the corpus reader's open(), the folder walk's scandir() and os.access refuse those paths as
    the OS would for anyone else."""
    import builtins
    import errno

    import microtransformer.data.formats as formats_module

    denied: list[Path] = []
    if os.geteuid() != 0:
        def apply(path: Path) -> None:
            os.chmod(path, 0)
            denied.append(path)

        yield apply
        for p in denied:
            os.chmod(p, 0o755)
        return

    def refuse(path) -> None:
        if any(Path(path) == p or p in Path(path).parents for p in denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    real_open, real_scandir = builtins.open, os.scandir

    def fake_open(path, *args, **kwargs):
        refuse(path)
        return real_open(path, *args, **kwargs)

    def fake_scandir(path="."):
        refuse(path)
        return real_scandir(path)

    real_access = os.access

    def fake_access(path, mode, *args, **kwargs):
        if any(Path(path) == p or p in Path(path).parents for p in denied):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(formats_module, "open", fake_open, raising=False)
    monkeypatch.setattr(os, "scandir", fake_scandir)
    monkeypatch.setattr(os, "access", fake_access)
    yield denied.append
