"""``neurofm report``: one comparison report from several result files of the same task."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurofm.tasks.evaluate import EvaluationResult
from neurofm.tasks.reports import write_report


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` parser."""
    parser = subparsers.add_parser(
        "report",
        help="compare systems (pretrained, scratch, baseline...) from result JSON files",
        description=(
            "Build a Markdown + HTML report comparing the systems in RESULT files written by "
            "`neurofm evaluate` or fine-tuning, all on the same task: the task, the split, a "
            "metrics table with confidence intervals, and PNG plots (confusion matrices, "
            "per-subject scores, learning curves, hypnograms for sleep staging)."
        ),
    )
    parser.add_argument("results", nargs="+", metavar="RESULT", help="result JSON files")
    parser.add_argument("--out", required=True, metavar="DIR", help="report folder")
    parser.add_argument("--title", default=None, help="report title")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load every result and write the report."""
    results = [EvaluationResult.load(path) for path in args.results]
    files = write_report(results, Path(args.out), title=args.title)
    print(f"report: {files.markdown} and {files.html} ({len(files.figures)} plots)")
    return 0
