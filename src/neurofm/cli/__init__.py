"""The ``neurofm`` command: thin subcommands over the library.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func=run`` (``run(args) -> int``). Problems the user can act on raise
:class:`neurofm.errors.NeurofmError`; they, ``OSError`` (a path that is a file, a read-only
mount) and undecodable files are printed as one line without a traceback (exit status 2).
Anything else is a bug in neurofm: it is reported as one, with its traceback (exit status 1).
``--debug`` (or ``NEUROFM_DEBUG=1``) prints the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from safetensors import SafetensorError

from neurofm import __version__
from neurofm.errors import NeurofmError

# Command modules, in the order `neurofm --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("datasets", "prepare", "info", "tokenizer", "pretrain", "evaluate",
                                   "report", "finetune", "embed", "hub", "demo")


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0 (refuses ``nan``, ``inf`` and ``-1`` with a message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in ``[low, high]`` (refuses ``-5``, ``1e30``, ``x``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: use {low} to {high}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value" messages
    return parse


#: Counts of things (workers, folds, epochs, batch size, bootstrap resamples), and seeds.
count = bounded_int(1, 10**6)
seed = bounded_int(0, 2**32 - 1)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to generate docs/cli.md)."""
    parser = argparse.ArgumentParser(
        prog="neurofm",
        description="Foundation models of EEG and EMG: prepare corpora, train, fine-tune, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"neurofm {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of any error (also: NEUROFM_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"neurofm.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere before a "--", not only before the command.
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end] or os.environ.get("NEUROFM_DEBUG", "").strip() not in ("", "0")
    argv = [a for i, a in enumerate(argv) if i >= end or a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1

    def fail(message: str) -> int:
        if debug:
            traceback.print_exc()
        print(f"neurofm {args.command}: error: {message}", file=sys.stderr)
        return 2

    try:
        return int(args.func(args) or 0)
    except NeurofmError as error:
        return fail(str(error))
    except OSError as error:  # a path that exists as a file, a read-only mount, a full disk...
        where = f": {error.filename}" if error.filename else ""
        return fail(f"{error.strerror or error}{where}; check the path, its permissions and free "
                    "space")
    except UnicodeDecodeError as error:
        return fail(f"a file is not valid UTF-8 text ({error}); check that each file given is the "
                    "kind the option expects")
    except json.JSONDecodeError as error:
        return fail(f"a JSON file is damaged ({error}); restore or re-create it")
    except SafetensorError as error:
        return fail(f"a safetensors weights file is damaged ({error}); download or export it again")
    except KeyboardInterrupt:
        print(f"neurofm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        traceback.print_exc()
        print(f"neurofm {args.command}: internal error: {type(error).__name__}: {error}\nthis is "
              "a bug in neurofm, not a problem with your input: please report it with the "
              "command and the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
