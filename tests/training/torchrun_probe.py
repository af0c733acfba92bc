"""``mtx train`` under ``torchrun``, recording what this rank does (test helper, run by ``test_torchrun.py``).

    torchrun ... tests/training/torchrun_probe.py RECORD_DIR [--sigterm_at STEP] train ARGS...

Runs :func:`microtransformer.cli.main.main` on ``train ARGS`` unchanged and
writes ``RECORD_DIR/rank<R>.json``: the window starts this rank drew at each
training step, every path it created, wrote, renamed or removed inside the run
directory, its exit code, and a digest of its final weights
(``rank<R>.safetensors``). With ``--sigterm_at STEP``, rank 0 sends SIGTERM to
the torchrun launcher (its parent) right after that step and waits until the
signal has come back to it, as a ``kill`` of the launcher or a job scheduler's
stop would; every rank then stops at the same step.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    record_dir = Path(sys.argv[1])
    argv = sys.argv[2:]
    sigterm_at = None
    if argv[0] == "--sigterm_at":
        sigterm_at, argv = int(argv[1]), argv[2:]
    rank = int(os.environ["RANK"])
    run_dir = Path(argv[argv.index("--resume" if "--resume" in argv else "--out_dir") + 1]).resolve()
    record: dict = {"rank": rank, "windows": {}, "writes": [], "code": None}

    def inside(path) -> bool:
        try:
            p = Path(os.fsdecode(path)).resolve()
        except (TypeError, ValueError):
            return False
        return p == run_dir or run_dir in p.parents

    def note(what: str, path) -> None:
        if inside(path):
            record["writes"].append(f"{what} {os.fsdecode(path)}")

    # every way the library creates, changes or removes a file goes through one of these
    real_open, real_os_open, real_replace, real_mkdir, real_unlink = builtins.open, os.open, os.replace, os.mkdir, os.unlink

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            note("open", file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            note("os.open", path)
        return real_os_open(path, flags, *args, **kwargs)

    builtins.open = open_
    os.open = os_open
    def replace(a, b, **kwargs):
        if inside(a) or inside(b):
            record["writes"].append(f"replace {os.fsdecode(a)} -> {os.fsdecode(b)}")
        return real_replace(a, b, **kwargs)

    os.replace = replace
    os.mkdir = lambda p, *a, **kw: (note("mkdir", p), real_mkdir(p, *a, **kw))[1]
    os.unlink = lambda p, *a, **kw: (note("unlink", p), real_unlink(p, *a, **kw))[1]

    from microtransformer.data import loader
    from microtransformer.training import trainer as trainer_module

    state = {"step": None, "trainer": None}
    real_starts = loader.window_starts

    def window_starts(*args, **kwargs):
        ix = real_starts(*args, **kwargs)
        if state["step"] is not None:  # training draws only (eval draws happen outside train_step)
            record["windows"].setdefault(str(state["step"]), []).extend(int(i) for i in ix)
        return ix

    loader.window_starts = window_starts
    real_step = trainer_module.Trainer.train_step

    def train_step(self):
        state["step"], state["trainer"] = self.step, self
        try:
            return real_step(self)
        finally:
            state["step"] = None
            if sigterm_at is not None and rank == 0 and self.step == sigterm_at:
                os.kill(os.getppid(), signal.SIGTERM)  # the launcher passes it on to every rank's process group
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    flag = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
                    if getattr(flag, "requested", False):
                        break
                    time.sleep(0.01)

    trainer_module.Trainer.train_step = train_step

    from microtransformer.cli.main import main as mtx

    try:
        record["code"] = mtx(argv)
    finally:
        builtins.open, os.open, os.replace, os.mkdir, os.unlink = real_open, real_os_open, real_replace, real_mkdir, real_unlink
        trainer = state["trainer"]
        if trainer is not None:
            from safetensors.torch import save_file

            weights = {k: v.detach().contiguous().clone() for k, v in trainer.raw_model.state_dict().items()}
            save_file(weights, str(record_dir / f"rank{rank}.safetensors"))
            record["step"] = trainer.step
        (record_dir / f"rank{rank}.json").write_text(json.dumps(record))
    return record["code"]


if __name__ == "__main__":
    sys.exit(main())
