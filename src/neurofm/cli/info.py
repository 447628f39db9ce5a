"""``neurofm info``: summarise a prepared corpus."""

from __future__ import annotations

import argparse
import json
from typing import Any

from neurofm.data.corpus import Corpus


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` parser."""
    parser = subparsers.add_parser(
        "info",
        help="summarise a corpus",
        description=(
            "Hours, recordings, channels, subjects, labels and the preprocessing config hash of a "
            "corpus; checks every array against its sha256 and lists damaged or incomplete "
            "recordings (exit status 1 when there are any)."
        ),
    )
    parser.add_argument("corpus", metavar="CORPUS", help="the corpus folder (or its --out parent)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip checking every array against its sha256 (reads the whole "
                             "corpus, about 0.1 s per 100 MB when cached)")
    parser.set_defaults(func=run)


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable form of :meth:`Corpus.summary`."""
    channels = summary["channel_counts"]
    lines = [
        f"corpus        {summary['path']}",
        f"config hash   {summary['config_hash']}",
        f"recordings    {summary['recordings']}",
        f"hours         {summary['hours']:.3f}",
        f"subjects      {len(summary['subjects'])}"
        + (f" ({', '.join(summary['subjects'][:12])}{', ...' if len(summary['subjects']) > 12 else ''})"
           if summary["subjects"] else ""),
        f"sessions      {summary['sessions']}",
        f"rate / unit   {', '.join(f'{r:g}' for r in summary['sfreq'])} Hz / {', '.join(summary['units'])}",
        f"channels      {len(channels)} distinct, {', '.join(map(str, summary['n_channels']))} per recording",
        "               " + " ".join(channels),
    ]
    if summary["recording_labels"]:
        labels = ", ".join(f"{k}: {v}" for k, v in summary["recording_labels"].items())
        lines.append(f"labels        {labels}")
    if summary["annotation_counts"]:
        events = ", ".join(f"{k}: {v}" for k, v in summary["annotation_counts"].items())
        lines.append(f"annotations   {events}")
    if summary["per_sample_labels"]:
        lines.append(f"per-sample    {summary['per_sample_labels']} recording(s) with per-sample labels")
    lines.append(f"quality notes {summary['quality_notes']}")
    if summary["issues"]:
        lines.append(f"PROBLEMS      {len(summary['issues'])}")
        lines += [f"  {issue}" for issue in summary["issues"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the summary; 1 when the corpus has damaged or incomplete recordings."""
    corpus = Corpus(args.corpus, allow_incomplete=True)
    if not args.no_verify:
        corpus.issues.extend(corpus.verify())
    summary = corpus.summary()
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 1 if summary["issues"] else 0


__all__ = ["format_summary", "register", "run"]
