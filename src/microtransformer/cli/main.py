"""The ``mtx`` command line: one sub-command group per module.

Each command module exposes ``register(subparsers)`` which adds its parser and
sets ``func=run`` where ``run(args) -> int``. This is the only layer that
prints and picks exit codes: a :class:`MicroTransformerError` becomes a one-line
message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from microtransformer import __version__
from microtransformer.errors import MicroTransformerError

# Command-group modules under microtransformer.cli; each has register(subparsers).
COMMAND_MODULES = ("tokenizer", "data", "train", "sample", "quickstart", "autoencoder")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that accepts ``--foo_bar`` and ``--foo-bar`` for every flag."""

    def add_argument(self, *names, **kwargs):  # type: ignore[override]
        extra = []
        for n in names:
            if n.startswith("--"):
                alt = "--" + (n[2:].replace("_", "-") if "_" in n else n[2:].replace("-", "_"))
                if alt != n and alt not in names:
                    extra.append(alt)
        return super().add_argument(*names, *extra, **kwargs)


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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # rustbpe logs every 1 % of merges at INFO
        logging.getLogger("rustbpe").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except MicroTransformerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
