"""``neurofm prepare``: recordings (files, folders, globs, dataset names) -> a preprocessed corpus."""

from __future__ import annotations

import argparse

from neurofm.atomic import atomic_write_json
from neurofm.data.prepare import parse_shard, prepare_corpus
from neurofm.data.preprocess import PreprocessConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` parser."""
    parser = subparsers.add_parser(
        "prepare",
        help="preprocess recordings into a corpus",
        description=(
            "Read, check and preprocess recordings into the corpus OUT/<config hash>/. Re-running "
            "skips recordings already prepared from the same bytes, so an interrupted run resumes "
            "and a damaged corpus is repaired. Bad recordings are skipped and listed in the report."
        ),
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a recording file, a folder (searched recursively), a quoted glob, or a dataset name",
    )
    parser.add_argument("--out", required=True, help="corpus parent folder")
    parser.add_argument(
        "--recipe",
        choices=("labram", "emg"),
        default="labram",
        help="preprocessing recipe (default: labram: EEG, 0.1-75 Hz, notch, 200 Hz, 100 uV units)",
    )
    parser.add_argument(
        "--notch",
        choices=("50", "60", "none"),
        default=None,
        help="mains frequency to notch (default: 50 for labram, none for emg)",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="i/N",
        help="prepare only shard i of N (0 <= i < N), for independent cluster jobs",
    )
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad recording instead of skipping it"
    )
    parser.add_argument("--report", default=None, metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def recipe_config(recipe: str, notch: str | None) -> PreprocessConfig:
    """The preprocessing config a recipe name and ``--notch`` value stand for."""
    factory = PreprocessConfig.labram if recipe == "labram" else PreprocessConfig.emg
    if notch is None:
        return factory()
    return factory(notch_freq=None if notch == "none" else float(notch))


def run(args: argparse.Namespace) -> int:
    """Prepare the corpus and print the report; 0 even when some recordings were skipped."""
    report = prepare_corpus(
        args.sources,
        args.out,
        recipe_config(args.recipe, args.notch),
        workers=args.workers,
        shard=args.shard,
        strict=args.strict,
        progress=not args.quiet,
    )
    print(report.summary())
    if args.report:
        atomic_write_json(args.report, report.to_dict())
    return 0


__all__ = ["recipe_config", "register", "run"]
