"""``neurofm finetune``: fine-tune a backbone on a downstream task, fold by fold, seed by seed.

Thin over :mod:`neurofm.tasks.finetune`: prepares (or reuses) the task's corpus, cuts its
windows and folds exactly as ``neurofm evaluate`` does, fine-tunes on each fold's training
subjects, selects on its validation subjects, scores its test subjects, and writes the results,
the summary over seeds and a report next to the task's classical baseline.
"""

from __future__ import annotations

import argparse
import textwrap
import typing
from pathlib import Path

from neurofm.cli import count, seed
from neurofm.cli.task_options import add_split_argument, add_task_data_arguments
from neurofm.locks import run_folder_lock
from neurofm.models.registry import list_backbones
from neurofm.tasks.definitions import get_task, list_tasks
from neurofm.tasks.finetune_config import Mode
from neurofm.tasks.reports import format_interval


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` parser."""
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a pretrained (or scratch) backbone on a task; results and a report",
        description=textwrap.fill(
            "Fine-tune a LaBraM or Neuro-BERT backbone on a downstream task with subject-wise "
            "cross-validation: per seed and fold, train on the training subjects, keep the epoch "
            "with the best validation score (AUROC for binary tasks, Cohen's kappa otherwise), "
            "and score the test subjects. Writes OUT/results.json (split, resolved config, "
            "metrics per seed, mean and std over seeds), one result per seed, the task's "
            "classical baseline on the same folds, and a Markdown + HTML report. Recipe defaults "
            "follow the model (LaBraM: layer-wise lr decay 0.65 for Base, drop path 0.1, label "
            "smoothing 0.1 for multi-class tasks); change any option with key=value.", width=88,
            break_on_hyphens=False
        ),
        epilog=(
            "examples:\n"
            "  neurofm finetune --task eegmat --init official:labram-base.pth --model labram_base "
            "--out runs/eegmat-official\n"
            "  neurofm finetune --task eegmat --init scratch --model labram_base --out "
            "runs/eegmat-scratch --seeds 0 1 2 3 4\n"
            "  neurofm finetune --task eegmat --init ckpt/ --model labram_base --mode lora "
            "--out runs/eegmat-lora lora.r=16 optim.lr=1e-3"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, choices=list_tasks(), metavar="NAME",
                        help="task name: " + ", ".join(list_tasks()))
    parser.add_argument("--init", required=True, metavar="{PATH,official:PATH,scratch}",
                        help="initial weights: a neurofm checkpoint folder, a training checkpoint "
                             "(.pt with its .json), an official LaBraM .pth (official:PATH), or "
                             "'scratch' (random, for comparison)")
    parser.add_argument("--model", required=True, metavar="NAME",
                        help="registered model (its recipe and architecture; a checkpoint must "
                             "match it): " + ", ".join(list_backbones()))
    parser.add_argument("--mode", choices=typing.get_args(Mode), default="full",
                        help="full fine-tuning (default); linear probing (frozen backbone, only "
                             "the head trains); peft adapters + head: lora, dora, adalora, ia3, "
                             "oft (settings: lora.*, adalora.*, ia3.*, oft.*); or ridge, a ridge "
                             "logistic regression on the frozen features, its penalty chosen on "
                             "validation (ridge.c_grid)")
    add_split_argument(parser)
    add_task_data_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="YAML file with config options (below flags and key=value)")
    parser.add_argument("--epochs", type=count, default=None, metavar="N",
                        help="training epochs per fold (the warm-up keeps the recipe's fraction)")
    parser.add_argument("--seeds", type=seed, nargs="+", default=[0], metavar="S",
                        help="seeds; each trains every fold once (default: 0; the papers use 5)")
    parser.add_argument("--max-folds", type=count, default=None, metavar="K",
                        help="run only the first K folds (quick checks)")
    parser.add_argument("--system", default=None, metavar="NAME",
                        help="the system's name in results and reports (default: MODEL INIT MODE)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="RESULT",
                        help="result JSON files of other systems on the same task (e.g. the "
                             "scratch run's seed0/result.json) to add to this run's report")
    parser.add_argument("--no-baseline", action="store_true",
                        help="do not run the task's classical baseline for the report")
    parser.add_argument("--allow-overlap", action="store_true",
                        help="fine-tune and score even if the --init checkpoint was pretrained on "
                             "validation or test subjects of the split (refused otherwise; the "
                             "report then says so)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a run in OUT: reuse finished folds, resume interrupted ones")
    parser.add_argument("--bootstrap", type=count, default=1000, metavar="N",
                        help="bootstrap resamples over subjects for the CIs (default 1000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. optim.lr=1e-4 data.batch_size=32 lora.r=16")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the fine-tuning job; print the summary and where files went."""
    from neurofm.engine.distributed import init_distributed
    from neurofm.tasks.evaluate import EvaluationResult
    from neurofm.workflows import finetune

    compare = [EvaluationResult.load(path) for path in args.compare]
    with run_folder_lock(Path(args.out), "finetune"):
        outcome = finetune(
            args.task, args.out, args.corpus, init=args.init, model=args.model, mode=args.mode,
            split=args.split, epochs=args.epochs, config=args.config, overrides=args.overrides,
            seeds=args.seeds, max_folds=args.max_folds, system=args.system,
            baseline=not args.no_baseline, resume=args.resume, n_resamples=args.bootstrap,
            compare=compare, allow_overlap=args.allow_overlap, mirror=args.mirror,
            dataset_dir=args.dataset_dir, workers=args.workers, progress=not args.quiet,
            echo=print)
    ctx = init_distributed()  # the context the job joined (rank 0 prints)
    if not ctx.is_main:
        return 0
    first = outcome.results[0]
    task = get_task(first.task_name).using_split(args.split)
    scored = first.folds[0].scored_label
    print(f"{first.task_name} / {first.system.rsplit(' seed ', 1)[0]}: split {task.split_name}, "
          f"{len(first.folds)} folds, seeds {list(args.seeds)}, {len(first.predictions.y_true)} "
          f"{scored} windows per seed")
    for result in outcome.results + ([outcome.baseline] if outcome.baseline else []):
        print(f"  {result.system}")
        for name in task.metrics:
            print(f"    {name:18s} {format_interval(result.over_subjects[name])}")
        collapse = result.collapse()
        if collapse:
            print(f"    warning: {collapse}")
    print(f"summary: {outcome.summary_path}")
    if outcome.report_markdown is not None:
        print(f"report: {outcome.report_markdown}")
    return 0
