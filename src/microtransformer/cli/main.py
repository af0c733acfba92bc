"""The ``mtx`` command line: one sub-command group per module.

Each command module exposes ``register(subparsers)`` which adds its parser and
sets ``func=run`` where ``run(args) -> int``. This is the only layer that
prints and picks exit codes, and no error reaches the user as a traceback:

- 2: a bad flag or value (argparse) or a user error (:class:`MicroTransformerError`);
- 1: an operating-system error (permission denied, disk full);
- 130 / 143: Ctrl-C / SIGTERM;
- 141: the reader of our output went away (``mtx sample --stream | head``).

Each prints one line on stderr (``error: ...`` for 2 and 1).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from microtransformer import __version__
from microtransformer.errors import MicroTransformerError

# Command-group modules under microtransformer.cli; each has register(subparsers).
COMMAND_MODULES = ("tokenizer", "data", "train", "sample", "quickstart", "autoencoder")


def _aliases(names: tuple[str, ...]) -> list[str]:
    """``--foo-bar`` for ``--foo_bar`` and the other way round."""
    extra = []
    for n in names:
        if n.startswith("--"):
            alt = "--" + (n[2:].replace("_", "-") if "_" in n else n[2:].replace("-", "_"))
            if alt != n and alt not in names:
                extra.append(alt)
    return extra


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that accepts ``--foo_bar`` and ``--foo-bar`` for every flag (in argument groups too)."""

    def add_argument(self, *names, **kwargs):  # type: ignore[override]
        return super().add_argument(*names, *_aliases(names), **kwargs)

    def add_argument_group(self, *args, **kwargs):  # type: ignore[override]
        group = super().add_argument_group(*args, **kwargs)
        plain = group.add_argument
        group.add_argument = lambda *names, **kw: plain(*names, *_aliases(names), **kw)  # type: ignore[method-assign]
        return group

    def error(self, message: str):  # type: ignore[override]
        """One line, exit 2 (argparse prints the whole usage block first)."""
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop: unwinds like Ctrl-C (temporary files are removed), exit 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def _os_error_line(exc: OSError) -> str:
    """``error: PATH: Permission denied`` rather than ``[Errno 13] ...``; one line."""
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"error: {exc.filename}: {what}"
    return f"error: {what}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtx", description="microtransformer: tokenizers and micro language models.")
    parser.add_argument("--version", action="version", version=f"microtransformer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"microtransformer.cli.{name}")
        except ModuleNotFoundError as exc:  # a command group not written yet
            if exc.name == f"microtransformer.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a bad flag (2, its one line already printed)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # rustbpe logs every 1 % of merges at INFO
        logging.getLogger("rustbpe").setLevel(logging.WARNING)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, AttributeError):  # not the main thread / no SIGTERM
        previous = None
    try:
        return int(args.func(args) or 0)
    except MicroTransformerError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        print("stopped: the output pipe was closed", file=sys.stderr)
        return 141
    except OSError as exc:
        print(_one_line(_os_error_line(exc)), file=sys.stderr)
        return 1
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(message: object) -> str:
    return " ".join(str(message).split("\n"))


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
