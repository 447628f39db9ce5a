"""``neurofm evaluate``: run a task's classical baseline on its subject-wise folds and report.

Prepares (or reuses) the task's corpus, cuts the task's windows, builds the folds, fits the
baseline per fold, scores the test predictions (per fold, per subject, with confidence intervals)
and writes ``OUT/<system>.json``, ``OUT/folds.json`` and a Markdown + HTML report with plots.
``--reference yasa`` adds YASA's pretrained sleep stager on the same epochs and folds (sleep
staging with 30-s epochs; ``neurofm[sleep]``), as a second row of the report.

Models are evaluated through the same function, :func:`neurofm.tasks.evaluate.evaluate_system`,
with a fold predictor that fine-tunes on each fold's training subjects; their result files go
into ``neurofm report`` next to the baseline's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neurofm.cli import count, seed
from neurofm.cli.task_options import add_split_argument, add_task_data_arguments
from neurofm.tasks.definitions import get_task, list_tasks
from neurofm.tasks.evaluate import EvaluationResult
from neurofm.tasks.reports import format_interval
from neurofm.workflows import REFERENCES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="run a task's classical baseline (and reference systems) on its folds; write "
             "results and a report",
        description=(
            "Evaluate on a downstream task with subject-wise cross-validation: prepare the task's "
            "dataset into a corpus (reused when already prepared), fit the task's classical "
            "baseline on each fold's training subjects, score its test subjects, and write the "
            "result JSON (with the task, the folds and the settings) and a Markdown + HTML report "
            "with plots. --reference adds a reference system (YASA's pretrained sleep stager) "
            "scored on the same windows and folds. Tasks: " + ", ".join(list_tasks()) + "."
        ),
    )
    parser.add_argument("--task", required=True, choices=list_tasks(), metavar="NAME",
                        help="task name: " + ", ".join(list_tasks()))
    parser.add_argument("--baseline", action="store_true",
                        help="run the task's classical baseline (the default, and always run; "
                             "models are evaluated by fine-tuning)")
    parser.add_argument("--reference", action="append", default=[], choices=list(REFERENCES),
                        help="also score a reference system on the same windows and folds "
                             "(repeatable): yasa = YASA's pretrained EEG sleep stager, not "
                             "trained on the folds (sleep staging with 30-s epochs, e.g. "
                             "dreams_sleep_staging; needs pip install 'neurofm[sleep]')")
    add_split_argument(parser)
    add_task_data_arguments(parser)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: neurofm-eval/<task>)")
    parser.add_argument("--bootstrap", type=count, default=1000, metavar="N",
                        help="bootstrap resamples over subjects for the CIs (default 1000)")
    parser.add_argument("--seed", type=seed, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--max-folds", type=count, default=None, metavar="K",
                        help="run only the first K folds (quick checks)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate the baseline (and the references) on ``args.task``; print the headline metrics
    and where files went."""
    from neurofm.workflows import evaluate_systems

    out_dir = Path(args.out) if args.out else Path("neurofm-eval") / get_task(args.task).name
    results = evaluate_systems(args.task, args.corpus, out_dir, split=args.split,
                               references=args.reference, mirror=args.mirror,
                               dataset_dir=args.dataset_dir, n_resamples=args.bootstrap,
                               seed=args.seed, max_folds=args.max_folds, workers=args.workers,
                               progress=not args.quiet, echo=print)
    for result in results:
        _print_summary(result)
        print(f"result: {out_dir / (result.system + '.json')}")
    print(f"report: {out_dir / 'report.md'} and {out_dir / 'report.html'}")
    return 0


def _print_summary(result: EvaluationResult) -> None:
    scored = result.folds[0].scored_label
    print(f"{result.task_name} / {result.system}: split {result.task['split']['name']}, "
          f"{len(result.folds)} folds, {len(result.subject_metrics)} {scored} "
          f"{result.task['split']['unit']}s, {len(result.predictions.y_true)} {scored} windows")
    for name in result.task["metrics"]:
        print(f"  {name:18s} {format_interval(result.over_subjects[name])}")
