"""``neurofm prepare``: recordings (files, folders, globs, dataset names) -> a preprocessed corpus;
``--all-eeg``: every local EEG recording of the registry, minus an evaluation task's subjects."""

from __future__ import annotations

import argparse

from neurofm.atomic import atomic_write_json
from neurofm.cli import bounded_int, count
from neurofm.data.prepare import PreparationReport, parse_shard, prepare_corpus
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.pretraining_corpus import (
    CHANNEL_POLICIES,
    PretrainingCorpusReport,
    evaluation_exclusions,
    prepare_pretraining_corpus,
)
from neurofm.errors import ConfigError


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
        nargs="*",
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
    parser.add_argument("--workers", type=count, default=1, help="parallel processes (default 1)")
    parser.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="i/N",
        help="prepare only shard i of N (0 <= i < N), for independent cluster jobs",
    )
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad recording instead of skipping it"
    )
    parser.add_argument("--report", default=None, metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    corpus = parser.add_argument_group(
        "all-EEG pretraining corpus",
        "--all-eeg replaces SOURCE: every EEG recording of every registry dataset found locally "
        "(mirror or cache), LaBraM recipe with the low-pass clamped below slow rates; the "
        "report (per dataset: recordings, subjects, hours; what was left out and why) is also "
        "written to <corpus>/pretraining_corpus.json",
    )
    corpus.add_argument("--all-eeg", action="store_true",
                        help="prepare every local EEG recording of the registry")
    corpus.add_argument("--channels", choices=CHANNEL_POLICIES, default="vocabulary",
                        help="vocabulary: channels of the LaBraM vocabulary (LaBraM); all-eeg: "
                             "every EEG channel, mapped or not (Neuro-BERT). Default vocabulary")
    corpus.add_argument("--exclude-task", default=None, metavar="TASK",
                        help="leave out the validation and test subjects of TASK (needs --split)")
    corpus.add_argument("--split", default=None, metavar="NAME",
                        help="the named split of --exclude-task (e.g. fixed, cv)")
    corpus.add_argument("--fold", type=bounded_int(0, 10**6), default=None, metavar="K",
                        help="with --exclude-task: leave out only fold K's validation and test "
                             "subjects (one pretraining corpus per fold; fine-tune with "
                             "--init 'RUN{fold}/model')")
    corpus.add_argument("--mirror", default=None, metavar="DIR",
                        help="local dataset mirror (default: NEUROFM_MIRROR)")
    parser.set_defaults(func=run)


def recipe_config(recipe: str, notch: str | None) -> PreprocessConfig:
    """The preprocessing config a recipe name and ``--notch`` value stand for."""
    factory = PreprocessConfig.labram if recipe == "labram" else PreprocessConfig.emg
    if notch is None:
        return factory()
    return factory(notch_freq=None if notch == "none" else float(notch))


def _run_all_eeg(args: argparse.Namespace) -> int:
    if args.sources:
        raise ConfigError("--all-eeg takes no SOURCE: it prepares every local EEG recording")
    if args.recipe != "labram":
        raise ConfigError("--all-eeg prepares EEG with the labram recipe; drop --recipe emg")
    if (args.exclude_task is None) != (args.split is None):
        raise ConfigError("--exclude-task and --split go together: e.g. --exclude-task eegmat --split fixed")
    if args.fold is not None and args.exclude_task is None:
        raise ConfigError("--fold K needs --exclude-task TASK --split NAME")
    exclude = (evaluation_exclusions(args.exclude_task, args.split, args.fold, args.mirror)
               if args.exclude_task else {})
    notch = recipe_config("labram", args.notch).notch_freq
    report = prepare_pretraining_corpus(
        args.out,
        exclude_subjects=exclude,
        exclusion=(f"validation and test subjects of task {args.exclude_task}, split {args.split}"
                   + (f", fold {args.fold}" if args.fold is not None else "")
                   if args.exclude_task else "none"),
        channels=args.channels,
        notch_freq=notch,
        mirror=args.mirror,
        workers=args.workers,
        shard=args.shard,
        strict=args.strict,
        progress=not args.quiet,
    )
    return _print_report(report, args.report)


def _print_report(report: PreparationReport | PretrainingCorpusReport, path: str | None) -> int:
    """Print the report's summary, also write it as JSON to ``path`` when given; exit status 0."""
    print(report.summary())
    if path:
        atomic_write_json(path, report.to_dict())
    return 0


def _shard(text: str) -> tuple[int, int]:
    """argparse type of ``--shard``: :func:`parse_shard`, its error shown as a usage error."""
    try:
        return parse_shard(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    """Prepare the corpus and print the report; 0 even when some recordings were skipped."""
    if args.all_eeg:
        return _run_all_eeg(args)
    given = [flag for flag, value in (("--exclude-task", args.exclude_task), ("--split", args.split),
                                      ("--fold", args.fold), ("--mirror", args.mirror))
             if value is not None]
    if args.channels != "vocabulary":
        given.append("--channels")
    if given:
        raise ConfigError(f"{', '.join(given)}: only with --all-eeg")
    if not args.sources:
        raise ConfigError("name at least one SOURCE (file, folder, glob, dataset), or pass --all-eeg")
    report = prepare_corpus(
        args.sources,
        args.out,
        recipe_config(args.recipe, args.notch),
        workers=args.workers,
        shard=args.shard,
        strict=args.strict,
        progress=not args.quiet,
        lock_wait=0.0,  # a second `neurofm prepare` into the same corpus is refused, not queued
    )
    return _print_report(report, args.report)


__all__ = ["recipe_config", "register", "run"]
