"""Why small transformers from scratch trail band power on eegmat: the two probes of docs/results.md.

1. A balanced logistic regression on the pooled features of the *randomly initialised*
   ``labram_small`` and ``neurobert_small`` (and of LaBraM on per-window z-scored input), fitted on
   fold 0's training windows of the ``cv`` split and scored on its validation windows, against the
   same regression on log band power.
2. The band-power baseline on all 8 ``cv`` folds with absolute log power, relative log power
   (each window's mean subtracted) and per-channel relative power.

Run from the repository root with the mirror set (``NEUROFM_MIRROR=../shared/datasets``):
``python benchmarks/diagnose_eegmat.py [--corpus DIR]``. Prints one line per probe. Seeded.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from neurofm.data.batching import collate_windows
from neurofm.tasks.backbones import build_task_network
from neurofm.tasks.baselines import BaselinePredictor, band_power_features, get_baseline
from neurofm.tasks.data import (
    TaskWindows,
    default_corpus_root,
    load_task_windows,
    prepare_task_corpus,
    task_folds,
)
from neurofm.tasks.definitions import get_task
from neurofm.tasks.evaluate import evaluate_system
from neurofm.tasks.finetune_config import load_finetune_config
from neurofm.tasks.fold_training import TaskWindowDataset


def _logreg_auroc(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
                  val_y: np.ndarray) -> tuple[float, float]:
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=3000, class_weight="balanced")
    model.fit(scaler.transform(train_x), train_y)

    def auroc(x: np.ndarray, y: np.ndarray) -> float:
        return float(roc_auc_score(y, model.predict_proba(scaler.transform(x))[:, 1]))

    return auroc(train_x, train_y), auroc(val_x, val_y)


def _random_features(model: str, windows: TaskWindows, rows: np.ndarray) -> np.ndarray:
    torch.manual_seed(0)
    task = get_task("eegmat")
    config = load_finetune_config(flags={"task_name": task.name, "init": "scratch",
                                         "model": model})
    network, _ = build_task_network(config, task, windows.sfreq, windows.signal.shape[-1],
                                    windows.unit, windows.channels)
    network.eval()
    dataset = TaskWindowDataset(windows)
    parts = []
    with torch.no_grad():
        for start in range(0, len(rows), 128):
            batch = collate_windows([dataset[int(i)] for i in rows[start:start + 128]])
            parts.append(network.features(batch).numpy())
    return np.concatenate(parts)


def _relative(per_channel: bool) -> Callable[[np.ndarray, float], np.ndarray]:
    def features(signal: np.ndarray, sfreq: float) -> np.ndarray:
        power = band_power_features(signal, sfreq).reshape(len(signal), signal.shape[1], -1)
        axes = (2,) if per_channel else (1, 2)
        return (power - power.mean(axis=axes, keepdims=True)).reshape(len(signal), -1)
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None, help="task corpus root (default: the cache)")
    args = parser.parse_args()
    task = get_task("eegmat").using_split("cv")
    corpus, _ = prepare_task_corpus(task, args.corpus or default_corpus_root(), progress=False)
    windows = load_task_windows(task, corpus)
    folds = task_folds(task, corpus)
    fold = folds[0]
    train = np.flatnonzero(np.isin(windows.recording, fold.train))
    val = np.flatnonzero(np.isin(windows.recording, fold.val))
    labels = windows.label
    print(f"fold 0: {train.size} training, {val.size} validation windows; "
          f"validation subjects {', '.join(fold.groups['val'])}")
    for model in ("labram_small", "neurobert_small"):
        train_auc, val_auc = _logreg_auroc(_random_features(model, windows, train), labels[train],
                                           _random_features(model, windows, val), labels[val])
        print(f"random-init {model} features + LR: train AUROC {train_auc:.3f}, "
              f"validation {val_auc:.3f}")
    signal = windows.signal
    centred = signal - signal.mean(axis=-1, keepdims=True)
    zscored = dataclasses.replace(
        windows, signal=(centred / (signal.std(axis=-1, keepdims=True) + 1e-6)).astype(np.float32))
    train_auc, val_auc = _logreg_auroc(_random_features("labram_small", zscored, train),
                                       labels[train],
                                       _random_features("labram_small", zscored, val), labels[val])
    print(f"random-init labram_small, z-scored input + LR: train AUROC {train_auc:.3f}, "
          f"validation {val_auc:.3f}")
    power = band_power_features(signal, windows.sfreq)
    train_auc, val_auc = _logreg_auroc(power[train], labels[train], power[val], labels[val])
    print(f"log band power + LR: train AUROC {train_auc:.3f}, validation {val_auc:.3f}")

    baseline = get_baseline(task.baseline)
    for name, features in (("absolute log band power", baseline.features),
                           ("relative log band power (window mean removed)", _relative(False)),
                           ("per-channel relative log band power", _relative(True))):
        method = dataclasses.replace(baseline, features=features)
        result = evaluate_system(task, name, BaselinePredictor(method, windows, task.n_classes),
                                 folds, progress=False, n_resamples=100)
        print(f"cv baseline, {name}: AUROC {result.pooled['auroc']:.3f}, balanced accuracy "
              f"{result.pooled['balanced_accuracy']:.3f}")


if __name__ == "__main__":
    main()
