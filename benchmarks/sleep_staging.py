"""Sleep staging reference rows: the spectral baseline and YASA's pretrained stager, one report.

``neurofm evaluate --task dreams_sleep_staging`` scores the task's baseline; this script adds YASA's
pretrained EEG-only stager (``neurofm[sleep]``) on the same epochs and folds and writes both
results and one report, printing kappa and macro-F1 per fold and pooled::

    python benchmarks/sleep_staging.py --out neurofm-eval/sleep [--task dreams_sleep_staging]

Fine-tuned models' results (``neurofm finetune ... --out DIR``) join the report with
``neurofm report OUT/sleep_spectral.json OUT/yasa_pretrained.json DIR/<system>.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neurofm.tasks.baselines import evaluate_baseline
from neurofm.tasks.data import (
    default_corpus_root,
    load_task_windows,
    prepare_task_corpus,
    task_folds,
)
from neurofm.tasks.definitions import get_task
from neurofm.tasks.reports import write_report
from neurofm.tasks.sleep import evaluate_yasa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="dreams_sleep_staging")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    task = get_task(args.task)
    corpus, preparation = prepare_task_corpus(task, args.corpus or default_corpus_root(),
                                              progress=False)
    print(preparation.summary())
    windows = load_task_windows(task, corpus)
    folds = task_folds(task, corpus)
    results = [evaluate_baseline(task, windows, folds, corpus=str(corpus.path), progress=False,
                                 n_resamples=args.bootstrap)]
    if task.window.seconds == 30.0:
        results.append(evaluate_yasa(task, windows, folds, corpus, progress=False,
                                     n_resamples=args.bootstrap))
    for result in results:
        result.save(args.out / f"{result.system}.json")
        per_fold = ", ".join(f"{fold.name} {m['cohen_kappa']:.3f}/{m['f1_macro']:.3f}"
                             for fold, m in zip(result.folds, result.fold_metrics))
        print(f"{result.system}: pooled kappa {result.pooled['cohen_kappa']:.3f}, macro-F1 "
              f"{result.pooled['f1_macro']:.3f}, accuracy {result.pooled['accuracy']:.3f}; "
              f"per fold kappa/macro-F1: {per_fold}")
    report = write_report(results, args.out)
    print(f"report: {report.markdown}")


if __name__ == "__main__":
    main()
