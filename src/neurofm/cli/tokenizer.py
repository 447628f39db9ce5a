"""``neurofm tokenizer train``: train the VQ-NSP neural tokenizer that gives LaBraM's masked
EEG modelling its targets."""

from __future__ import annotations

import argparse
import os

from neurofm.cli.pretrain import add_training_arguments, configure_logging, resolve_config
from neurofm.engine.config import TokenizerTrainConfig
from neurofm.engine.jobs import run_job
from neurofm.locks import run_folder_lock


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tokenizer`` parser and its ``train`` subcommand."""
    parser = subparsers.add_parser("tokenizer", help="VQ-NSP neural tokenizer",
                                   description="Work with the VQ-NSP neural tokenizer.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train",
        help="train a tokenizer on a prepared corpus",
        description=(
            "Train a VQ-NSP tokenizer (METHODS.md section 3 recipe by default) on the windows of a "
            "prepared EEG corpus (100 uV units, 200 Hz). RUN receives config.yaml, metrics.csv "
            "(with codebook usage), tensorboard/, checkpoints/ and model/, which `neurofm pretrain "
            "--objective mem --tokenizer RUN/model` takes."
        ),
    )
    add_training_arguments(train, default_models="vqnsp_base")
    train.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``neurofm tokenizer train``."""
    configure_logging()
    config = resolve_config(TokenizerTrainConfig, args, {})
    with run_folder_lock(args.out, "tokenizer train"):
        result = run_job(config, args.corpus, args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        used = result.last_metrics.get("codebook_used_fraction")
        perplexity = result.last_metrics.get("batch_perplexity")
        usage = "" if used is None else f", {100 * used:.1f}% of the codebook in use"
        if perplexity is not None:
            # The batch perplexity exposes a collapse the usage EMA is slow to show.
            usage += f", last batch code perplexity {float(perplexity):.1f}"
        print(f"tokenizer ({config.model}): {result.step} steps{usage}; run folder {args.out}; "
              f"tokenizer at {args.out}/model")
    return 0
