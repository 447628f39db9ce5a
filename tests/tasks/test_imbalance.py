"""Class imbalance: balanced weights, the validation threshold, and the collapse flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurofm.data.splits import Split
from neurofm.errors import ConfigError
from neurofm.objectives.classification import SupervisedObjective
from neurofm.tasks.baselines import BaselinePredictor, get_baseline
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.definitions import get_task
from neurofm.tasks.evaluate import Predictions, evaluate_predictions
from neurofm.tasks.imbalance import (
    balanced_class_weights,
    binary_pos_weight,
    choose_threshold,
    decide,
)
from neurofm.tasks.metrics import balanced_accuracy, classification_metrics
from neurofm.tasks.reports import format_interval, write_report


def test_balanced_weights_give_every_present_class_the_same_total_weight():
    labels = np.array([0] * 30 + [1] * 10 + [3] * 5)
    weights = balanced_class_weights(labels, 4)
    totals = [weights[k] * (labels == k).sum() for k in range(4)]
    assert totals[0] == pytest.approx(totals[1]) == pytest.approx(totals[3]) == pytest.approx(15)
    assert weights[2] == 0
    assert binary_pos_weight(np.array([0, 0, 0, 1])) == 3.0


def test_threshold_maximises_balanced_accuracy_on_the_validation_windows():
    y_true = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    positive = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.32, 0.3, 0.4])
    threshold = choose_threshold(y_true, positive)
    # 0.3 calls both positives and one negative positive: BAcc (1 + 5/6) / 2, the best reachable.
    assert threshold == pytest.approx(0.3)
    y_prob = np.stack([1 - positive, positive], axis=1)
    assert balanced_accuracy(y_true, y_prob, decide(y_prob, threshold)) == pytest.approx(11 / 12)
    assert balanced_accuracy(y_true, y_prob) == 0.5  # argmax: all negative
    assert choose_threshold(np.zeros(4, dtype=int), positive[:4]) == 0.5


def test_threshold_metrics_use_the_decided_classes_and_ranking_metrics_do_not():
    y_true = np.array([0, 1, 0, 1])
    y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.55, 0.45]])
    argmax = classification_metrics(y_true, y_prob)
    decided = classification_metrics(y_true, y_prob, y_pred=decide(y_prob, 0.35))
    assert argmax["accuracy"] == 0.5 and decided["accuracy"] == 1.0
    assert argmax["auroc"] == decided["auroc"] == 1.0


def test_pos_weight_loss_equals_the_weighted_bce():
    weights = torch.as_tensor(balanced_class_weights(np.array([0, 0, 0, 1]), 2))
    objective = SupervisedObjective(lambda batch: batch["x"], "binary", 2, class_weight=weights)
    logits = torch.tensor([[0.3], [-1.0], [2.0], [0.1]])
    label = torch.tensor([0, 0, 1, 1])
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], label.float(),
                                                  pos_weight=torch.tensor([3.0]))
    assert objective.loss(logits, label) == pytest.approx(float(expected))
    with pytest.raises(ConfigError, match="class weights"):
        SupervisedObjective(torch.nn.Identity(), "binary", 2, class_weight=torch.tensor([1.0, -1.0]))


def _imbalanced_windows() -> TaskWindows:
    """Three subjects, 3:1 rest:arithmetic, arithmetic with more 10 Hz power than rest."""
    rng = np.random.default_rng(0)
    sfreq, n = 200.0, 1000
    time = np.arange(n) / sfreq
    signals, labels, subjects = [], [], []
    for subject in ("A", "B", "C"):
        for label, count in ((0, 30), (1, 10)):
            for _ in range(count):
                amplitude = 1.0 + 0.6 * label + rng.normal(0, 0.4)
                channel = amplitude * np.sin(2 * np.pi * 10 * time) + rng.normal(0, 1, n)
                signals.append(channel[None].astype(np.float32))
                labels.append(label)
                subjects.append(subject)
    subjects_arr = np.asarray(subjects)
    recordings = np.asarray([f"{s}_{y}" for s, y in zip(subjects, labels)])
    return TaskWindows(np.stack(signals), np.asarray(labels), subjects_arr, recordings,
                       np.zeros(len(labels)), sfreq, "100uV", ("CZ",))


def test_baseline_threshold_comes_from_validation_and_decides_the_test_windows():
    windows = _imbalanced_windows()
    fold = Split(by="subject", train=("A_0", "A_1"), val=("B_0", "B_1"), test=("C_0", "C_1"),
                 groups={"train": ("A",), "val": ("B",), "test": ("C",)}, name="fold0")
    predictor = BaselinePredictor(get_baseline("bandpower_logreg"), windows, 2)
    predictions = predictor(0, fold)
    threshold = predictor.thresholds[0]
    assert threshold is not None and 0 < threshold < 1
    assert np.array_equal(predictions.y_pred, (predictions.y_prob[:, 1] >= threshold).astype(int))
    assert predictor.settings()["thresholds"] == {"fold0": threshold}
    argmax = BaselinePredictor(get_baseline("bandpower_logreg"), windows, 2, threshold="argmax")
    assert argmax(0, fold).y_pred.tolist() == argmax(0, fold).y_prob.argmax(axis=1).tolist()


def test_a_collapsed_system_is_flagged_in_the_result_and_the_report(tmp_path):
    task = get_task("eegmat")
    subjects = [f"Subject{n:02d}" for n in range(8)]
    folds = task.split.folds({s: [f"eegmat/{s}_1"] for s in subjects})
    rng = np.random.default_rng(0)
    parts = []
    for index, fold in enumerate(folds):
        for subject in fold.groups["test"]:
            y_true = np.array([0] * 30 + [1] * 10)
            positive = 0.2 + 0.1 * y_true + rng.uniform(0, 0.05, 40)  # ranks well, never > 0.5
            parts.append(Predictions(y_true, np.stack([1 - positive, positive], 1),
                                     np.full(40, index), [subject] * 40,
                                     [f"eegmat/{subject}_1"] * 40, 5.0 * np.arange(40)))
    result = evaluate_predictions(task, "majority", Predictions.concatenate(parts), folds,
                                  n_resamples=20)
    assert result.pooled["auroc"] > 0.9 and result.pooled["balanced_accuracy"] == 0.5
    assert "collapsed: predicts 'rest' for 100.0%" in result.collapse()
    report = write_report([result], tmp_path / "report")
    assert "**Warning, majority:** collapsed" in report.markdown.read_text()


def test_one_subject_bootstrap_says_the_interval_is_undefined():
    from neurofm.tasks.metrics import Interval

    one = Interval(0.861, 0.861, 0.861, 0.95, "bootstrap over subjects", 1)
    assert format_interval(one) == "0.861 (interval n/a: 1 subject)"
