"""The ``neurofm`` command: thin subcommands over the library.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func=run`` (``run(args) -> int``). Problems the user can act on raise
:class:`neurofm.errors.NeurofmError`; they, and ``OSError`` (a path that is a file, a read-only
mount), are printed as one line without a traceback (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence

from neurofm import __version__
from neurofm.errors import NeurofmError

# Command modules, in the order `neurofm --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("datasets", "prepare", "info", "tokenizer", "pretrain", "evaluate",
                                   "report", "finetune", "embed", "demo")


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0 (refuses ``nan``, ``inf`` and ``-1`` with a message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to generate docs/cli.md)."""
    parser = argparse.ArgumentParser(
        prog="neurofm",
        description="Foundation models of EEG and EMG: prepare corpora, train, fine-tune, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"neurofm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"neurofm.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except NeurofmError as error:
        print(f"neurofm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a path that exists as a file, a read-only mount, a full disk...
        where = f": {error.filename}" if error.filename else ""
        print(f"neurofm {args.command}: error: {error.strerror or error}{where}; check the path, "
              "its permissions and free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neurofm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
