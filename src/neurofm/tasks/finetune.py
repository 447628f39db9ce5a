"""Fine-tuning a backbone on a downstream task, fold by fold, and scoring it like any other system.

One job (:func:`run_finetune`) takes a task, a backbone source (:mod:`neurofm.tasks.backbones`:
scratch, an official LaBraM file, a neurofm checkpoint, a training checkpoint), a mode and
a recipe, and for every seed and fold of the task's subject-wise split:

1. builds the model: the backbone with a new head (one logit for binary tasks, K for multi-class)
   and the recipe's drop path; in ``"linear"`` mode only the head trains (linear probing), in the
   peft modes (``"lora"``, ``"dora"``, ``"adalora"``, ``"ia3"``, ``"oft"``) adapters on every
   block's ``attn.qkv``, ``attn.proj``, ``mlp.fc1`` and ``mlp.fc2`` train together with the head,
   in ``"full"`` mode everything trains, and in ``"ridge"`` mode nothing trains: the head is a
   ridge logistic regression fitted on the frozen features (:mod:`neurofm.tasks.probe`, step 3's
   selection is then that of its penalty);
2. trains it with the engine's :class:`~neurofm.engine.trainer.Trainer` on the fold's training
   recordings, with layer-wise lr decay (METHODS.md §5 layer ids) when ``optim.layer_decay`` is
   set, and with balanced class weights by default (``class_weight``;
   :mod:`neurofm.tasks.imbalance`);
3. keeps the epoch with the best validation score (the task's primary metric: AUROC for binary
   tasks, Cohen's kappa for multi-class ones) on the fold's validation recordings and, for a
   binary task, chooses the decision threshold that maximises balanced accuracy on them
   (``threshold``), stored with the exported weights;
4. predicts the fold's test recordings (its scored part: the validation recordings of a fixed
   split whose test subjects are absent) with those weights and that threshold.

The test predictions of all folds are scored by :func:`neurofm.tasks.evaluate.evaluate_system`,
the same path the classical baselines take, and written as one result per seed; a summary over
seeds (mean ± sample standard deviation) and a report comparing the seeds with the task's
classical baseline on the same folds complete the output::

    OUT/results.json              summary: task, split, resolved config, metrics per seed,
                                  mean ± std over seeds
    OUT/seed<S>/result.json       neurofm evaluation result (folds, predictions, CIs)
    OUT/seed<S>/fold<F>/          config.yaml, metrics.csv, predictions.json, and the selected
                                  weights: model/ (neurofm format, with the head) or, for a
                                  peft mode, adapter/ (adapter_model.safetensors + configs);
                                  ridge: also ridge_probe.json (the fitted probe)
    OUT/baseline.json             the classical baseline on the same folds
    OUT/report/                   report.md, report.html and the plots
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.atomic import atomic_write_json
from neurofm.data.splits import Split
from neurofm.engine import distributed as dist_utils
from neurofm.engine.config import to_dict
from neurofm.errors import ConfigError
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.definitions import Task
from neurofm.tasks.evaluate import EvaluationResult, evaluate_system, without_nan
from neurofm.tasks.finetune_config import FinetuneJobConfig
from neurofm.tasks.fold_training import FineTunePredictor
from neurofm.tasks.metrics import METRIC_NAMES
from neurofm.tasks.overlap import guard_overlap


@dataclass
class FinetuneOutcome:
    """What :func:`run_finetune` produced: one result per seed, the baseline, the summary file and
    the report."""

    results: list[EvaluationResult]
    baseline: EvaluationResult | None
    summary_path: Path
    report_markdown: Path | None


def system_name(config: FinetuneJobConfig) -> str:
    """The default name of a fine-tuned system in reports, e.g. ``"labram_base official full"``
    (``"... full context 5"`` with a sequence context of 5 windows)."""
    source = "scratch" if config.init == "scratch" else (
        "official" if config.init.startswith("official:") or config.init.endswith(".pth")
        else "pretrained")
    context = f" context {config.context.epochs}" if config.context.epochs > 1 else ""
    return f"{config.model} {source} {config.mode}{context}"


def summarize_seeds(results: Sequence[EvaluationResult]) -> dict[str, dict[str, Any]]:
    """Per metric: the pooled test value of each seed, their mean and sample std (ddof 1)."""
    summary = {}
    for name in METRIC_NAMES:
        values = [float(r.pooled[name]) for r in results]
        finite = [v for v in values if math.isfinite(v)]
        summary[name] = {
            "values": values,
            "mean": float(np.mean(finite)) if finite else float("nan"),
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
            "n": len(finite),
        }
    return summary


def run_finetune(
    config: FinetuneJobConfig,
    windows: TaskWindows,
    folds: Sequence[Split],
    out_dir: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    max_folds: int | None = None,
    system: str | None = None,
    baseline: bool = True,
    resume: bool = False,
    n_resamples: int = 1000,
    progress: bool = True,
    corpus: str | None = None,
    compare: Sequence[EvaluationResult] = (),
    allow_overlap: bool = False,
) -> FinetuneOutcome:
    """Fine-tune on every (first ``max_folds``) fold for every seed; score, summarise, report.

    Args:
        config: the resolved job config (its ``run.seed`` is replaced by each of ``seeds``).
        windows: the task's windows (:func:`neurofm.tasks.data.load_task_windows`).
        folds: the task's folds (:func:`neurofm.tasks.data.task_folds`).
        out_dir: output folder (layout in the module docstring).
        system: the system's name in reports (default :func:`system_name`).
        baseline: also run the task's classical baseline on the same folds for the report.
        resume: reuse finished folds and continue interrupted ones.
        n_resamples: bootstrap resamples over subjects for the confidence intervals.
        corpus: where the windows came from, recorded in the results.
        compare: results of other systems on the task (e.g. the from-scratch run) for the report.
        allow_overlap: fine-tune and score even when ``config.init`` was pretrained on a
            validation or test subject of ``folds`` (:mod:`neurofm.tasks.overlap`; otherwise
            :class:`~neurofm.errors.OverlapError` before anything is trained or written); the
            report says so.
    """
    from neurofm.tasks.baselines import evaluate_baseline
    from neurofm.tasks.reports import write_report

    task = config.get_task()
    out_dir = Path(out_dir)
    if not seeds:
        raise ConfigError("no seeds given; pass at least one (--seeds 0 1 2 3 4)")
    ctx = dist_utils.init_distributed(config.run.device)
    name = system or system_name(config)
    used_folds = list(folds)[: max_folds or len(folds)]
    overlap = _guard(config, task, used_folds, corpus, allow_overlap)
    results: list[EvaluationResult] = []
    selections: dict[int, dict[int, dict[str, Any]]] = {}
    init_info: dict[str, Any] = {}
    for seed in seeds:
        seed_config = dataclasses.replace(config,
                                          run=dataclasses.replace(config.run, seed=int(seed)))
        seed_dir = out_dir / f"seed{seed}"
        predictor = FineTunePredictor(seed_config, task, windows, seed_dir, ctx=ctx, resume=resume)
        result = evaluate_system(
            task, f"{name} seed {seed}", predictor, folds,
            {"finetune": to_dict(seed_config), "corpus": corpus, "data": windows.describe()},
            max_folds=max_folds, progress=progress, n_resamples=n_resamples, seed=0,
            history_csv=_history(config),
        )
        # Compact here (the report prints it); results.json keeps every validation metric.
        result.config["selection"] = {
            f"fold{i}": {k: v for k, v in s.items()
                         if k in ("selected", "epoch", "val_score", "threshold", "C")}
            for i, s in sorted(predictor.selection.items())}
        result.config["cost"] = fold_costs(predictor.selection)
        result.config["init"] = predictor.init_info
        result.config["overlap"] = overlap
        init_info = predictor.init_info
        selections[int(seed)] = predictor.selection
        if ctx.is_main:
            result.save(seed_dir / "result.json")
        result.history_csv = str(seed_dir / _history(config)) if _history(config) else None
        results.append(result)

    baseline_result = None
    if baseline and ctx.is_main:
        baseline_result = evaluate_baseline(
            task, windows, folds, corpus=corpus, max_folds=max_folds, progress=progress,
            n_resamples=n_resamples, class_weight=config.class_weight, threshold=config.threshold)
        baseline_result.save(out_dir / "baseline.json")

    summary = {
        "format": "neurofm-finetune-summary",
        "task": task.to_dict(),
        "system": name,
        "init": init_info,
        "mode": config.mode,
        "seeds": [int(s) for s in seeds],
        "folds": [fold.to_dict() for fold in results[0].folds],
        "config": to_dict(config),
        "corpus": corpus,
        "data": windows.describe(),
        "selection": {str(s): {f"fold{i}": v for i, v in sorted(sel.items())}
                      for s, sel in selections.items()},
        "per_seed": {str(s): {"result": f"seed{s}/result.json", "pooled": r.pooled}
                     for s, r in zip(seeds, results)},
        "over_seeds": summarize_seeds(results),
        "baseline": None if baseline_result is None else {
            "system": baseline_result.system, "result": "baseline.json",
            "pooled": baseline_result.pooled},
        "primary_metric": task.primary_metric,
        "overlap": overlap,
        "cost": {str(s): r.config["cost"] for s, r in zip(seeds, results)},
    }
    summary_path = out_dir / "results.json"
    report_path = None
    if ctx.is_main:
        atomic_write_json(summary_path, without_nan(summary))
        systems = [*results, *compare, *([baseline_result] if baseline_result is not None else [])]
        report = write_report(systems, out_dir / "report",
                              title=f"neurofm fine-tuning: {task.name}, {name}")
        report_path = report.markdown
    return FinetuneOutcome(results, baseline_result, summary_path, report_path)


def _history(config: FinetuneJobConfig) -> str | None:
    """The training-metrics CSV of fold 0 (relative to a seed's folder); None for ``ridge``,
    which does not train by gradient."""
    return None if config.mode == "ridge" else "fold0/metrics.csv"


def fold_costs(selection: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """What a seed's folds cost (the ``cost`` each fold's selection records): trainable and total
    parameters (the largest over folds), the largest peak memory and how it was measured, and the
    mean fit seconds and epochs per fold (epochs: None for ``ridge``)."""
    costs = [s["cost"] for s in selection.values() if "cost" in s]
    if not costs:
        return {}
    epochs = [s["epochs"] for s in selection.values() if s.get("epochs") is not None]
    return {
        "trainable_parameters": max(c["trainable_parameters"] for c in costs),
        "total_parameters": max(c["total_parameters"] for c in costs),
        "peak_memory_bytes": max(c["peak_memory_bytes"] for c in costs),
        "peak_memory_measure": costs[0]["peak_memory_measure"],
        "fit_seconds_per_fold": float(np.mean([c["fit_seconds"] for c in costs])),
        "epochs_per_fold": float(np.mean(epochs)) if epochs else None,
        "folds": len(costs),
    }


def _guard(config: FinetuneJobConfig, task: Task, folds: Sequence[Split], corpus: str | None,
           allow_overlap: bool) -> dict[str, Any]:
    """The overlap guard on every fold's init (one call for a single init), as the results record
    it; raises :class:`~neurofm.errors.OverlapError` before anything is trained."""
    if not config.init_per_fold:
        return guard_overlap(config.init, task.dataset, folds, corpus,
                             allow_overlap=allow_overlap).to_dict()
    checks = [guard_overlap(config.for_fold(i).init, task.dataset, [fold], corpus,
                            allow_overlap=allow_overlap).to_dict() for i, fold in enumerate(folds)]
    return {"checkpoint": config.init, "applied": all(c["applied"] for c in checks),
            "allowed": allow_overlap, "overlaps": [o for c in checks for o in c["overlaps"]],
            "report": [f"fold {i}: {line}" for i, c in enumerate(checks) for line in c["report"]],
            "per_fold": checks}
