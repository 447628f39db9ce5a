"""The options that ``neurofm evaluate`` and ``neurofm finetune`` share: the split, and where
the task's data comes from."""

from __future__ import annotations

import argparse

from neurofm.cli import count


def add_split_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--split NAME|FILE`` (a task's named split, or a fixed split in a JSON file)."""
    parser.add_argument(
        "--split", default=None, metavar="{cv,fixed,FILE.json}",
        help="the task's named split (eegmat: cv = 8 subject-wise folds over the subjects present, "
             "the default; fixed = the published Subject00-27 / 28-31 / 32-35 split), or a JSON "
             'file {"train": [...], "val": [...], "test": [...], "source": "..."} of subject ids')


def add_task_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--corpus``, ``--mirror``, ``--dataset-dir`` and ``--workers`` (where the task's
    recordings come from and where they are prepared)."""
    parser.add_argument("--corpus", default=None, metavar="DIR",
                        help="folder for the task's prepared corpus (default: "
                             "$NEUROFM_CACHE/corpora or ~/.cache/neurofm/corpora)")
    parser.add_argument("--mirror", default=None, metavar="DIR",
                        help="dataset mirror holding verified files (default: NEUROFM_MIRROR)")
    parser.add_argument("--dataset-dir", default=None, metavar="DIR",
                        help="a folder laid out like the dataset (files not checksummed), "
                             "instead of the registry's verified files")
    parser.add_argument("--workers", type=count, default=1,
                        help="processes for corpus preparation (default 1)")
