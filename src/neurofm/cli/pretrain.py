"""``neurofm pretrain``: self-supervised pretraining (LaBraM masked-EEG modelling, Neuro-BERT FIP,
time-domain MAE) on a prepared corpus, in one process or under ``torchrun``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from neurofm.engine.config import ConfigT, PretrainConfig, load_config
from neurofm.engine.jobs import run_job
from neurofm.locks import run_folder_lock

OVERRIDES_HELP = ("config overrides as dotted key=value pairs, applied last, e.g. optim.lr=1e-4 "
                  "data.batch_size=32 run.precision=bf16 run.max_steps=1000")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` parser."""
    parser = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining: mem (LaBraM), fip (Neuro-BERT), mae-time",
        description=(
            "Pretrain a network on the windows of a prepared corpus. Defaults follow each "
            "objective's published recipe (see docs/training.md); a YAML file and key=value "
            "overrides change them. RUN receives config.yaml, metrics.csv, tensorboard/, "
            "checkpoints/ and, at the end, model/. Launch with `torchrun --nproc_per_node=N -m "
            "neurofm pretrain ...` for data-parallel training."
        ),
    )
    parser.add_argument("--objective", choices=("mem", "fip", "mae-time"), default=None,
                        help="mem: masked EEG modelling (needs --tokenizer); fip: Fourier "
                             "inversion prediction; mae-time: time-domain masked autoencoding")
    parser.add_argument("--tokenizer", default=None, metavar="CKPT",
                        help="VQ-NSP tokenizer (the model/ folder of `neurofm tokenizer train`); "
                             "required by --objective mem, refused by the others")
    add_training_arguments(parser, default_models="labram_base_mem (mem), neurobert_base (fip, mae-time)")
    parser.set_defaults(func=run)


def add_training_arguments(parser: argparse.ArgumentParser, default_models: str) -> None:
    """Arguments every training command shares (corpus, run folder, config, resume, overrides)."""
    parser.add_argument("--corpus", required=True, metavar="DIR", help="prepared corpus folder")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help=f"registered model name (default: {default_models})")
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="config file (any subset of the fields of config.yaml); with "
                             "--resume, RUN/config.yaml is used when this is not given")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in RUN from its newest usable checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)


def resolve_config(cls: type[ConfigT], args: argparse.Namespace, base: dict[str, Any]) -> ConfigT:
    """The config of a training command: recipe, then YAML (or the run's saved config when
    resuming), then the dedicated flags in ``base``, then ``key=value`` overrides."""
    yaml_path = args.config
    saved = Path(args.out) / "config.yaml"
    if yaml_path is None and args.resume and saved.is_file():
        yaml_path = saved
    overrides = list(args.overrides)
    if args.quiet:
        overrides.append("run.progress=false")
    return load_config(cls, yaml_path, overrides=overrides, base={**base, "model": args.model})


def configure_logging() -> None:
    """INFO on rank 0, warnings only on the other ranks of a torchrun job."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    """Run ``neurofm pretrain``."""
    configure_logging()
    config = resolve_config(PretrainConfig, args, {"objective": args.objective,
                                                   "tokenizer": args.tokenizer})
    with run_folder_lock(args.out, "pretrain"):
        result = run_job(config, args.corpus, args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        finite = [loss for loss in result.losses if loss == loss]
        last = f"{finite[-1]:.4f}" if finite else "n/a"
        print(f"pretrain ({config.objective}, {config.model}): {result.step} steps, "
              f"last loss {last}; run folder {args.out}")
    return 0
