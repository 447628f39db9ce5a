"""The ``--split`` option that ``neurofm evaluate`` and ``neurofm finetune`` share."""

from __future__ import annotations

import argparse


def add_split_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--split NAME|FILE`` (a task's named split, or a fixed split in a JSON file)."""
    parser.add_argument(
        "--split", default=None, metavar="{cv,fixed,FILE.json}",
        help="the task's named split (eegmat: cv = 8 subject-wise folds over the subjects present, "
             "the default; fixed = the published Subject00-27 / 28-31 / 32-35 split), or a JSON "
             'file {"train": [...], "val": [...], "test": [...], "source": "..."} of subject ids')
