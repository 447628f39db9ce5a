"""``neurofm demo``: the whole job on real EEG in one command (see :mod:`neurofm.demo`)."""

from __future__ import annotations

import argparse
import logging

from neurofm.cli import bounded_int
from neurofm.demo import FULL, QUICK, run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` parser."""
    parser = subparsers.add_parser(
        "demo",
        help="the whole job on real EEG: prepare, tokenizer, pretrain (MEM, FIP), fine-tune, report",
        description=(
            "Run every stage of neurofm on the eegmat recordings (PhysioNet EEG during mental "
            "arithmetic; the local mirror NEUROFM_MIRROR first, a verified download otherwise): "
            "prepare a corpus, train a small VQ-NSP tokenizer, pretrain a small LaBraM by masked "
            "EEG modelling and a small Neuro-BERT by Fourier inversion prediction on the EEG of "
            "the subjects not held out, fine-tune both (and both from scratch) on rest vs mental "
            "arithmetic, score the held-out subjects next to the band-power baseline, and write a "
            f"Markdown + HTML report with plots. Default: {FULL.subjects} subjects, "
            f"{FULL.eval_folds} scored folds, under 15 minutes on a 2-core CPU; --quick: "
            f"{QUICK.subjects} subjects, {QUICK.eval_folds} fold, a few steps, under 3 minutes."
        ),
    )
    parser.add_argument("--out", default="neurofm-demo", metavar="DIR",
                        help="output folder (default: neurofm-demo)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke-test size: fewer subjects, one fold, a few steps")
    parser.add_argument("--mirror", default=None, metavar="DIR",
                        help="dataset mirror holding verified files (default: NEUROFM_MIRROR)")
    parser.add_argument("--threads", type=bounded_int(1, 1024), default=1, metavar="N",
                        help="torch threads (default 1: the demo's models are small, and on a busy "
                             "2-core machine one thread ran their training steps 5 to 30 times "
                             "faster than two, whose OpenMP threads wait for each other)")
    parser.add_argument("--quiet", action="store_true",
                        help="stage lines only, no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; the stage lines, the results table and the output paths go to stdout."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(args.out, quick=args.quick, mirror=args.mirror, progress=not args.quiet,
             threads=args.threads)
    return 0
