"""Class imbalance: balanced class weights for training, a validation-chosen binary threshold.

eegmat holds three times more rest than arithmetic; sleep nights are mostly N2. A model (or a
logistic regression) trained on such data without correction learns the majority class, and a
fixed 0.5 threshold on its probabilities then predicts that class for nearly every window, while
its ranking (AUROC) may be fine. Two corrections, applied to every system alike:

- **Class weights** (:func:`balanced_class_weights`): each training window of class ``k`` counts
  ``N / (K * n_k)``, scikit-learn's ``class_weight="balanced"``, so every class carries the same
  total weight in the loss. For a binary task with one logit this is BCE's ``pos_weight =
  n_negative / n_positive`` up to a constant factor (:func:`binary_pos_weight`).
- **A decision threshold** for binary tasks (:func:`choose_threshold`): the positive-class
  probability at which a window is called positive, chosen on the validation windows to maximise
  balanced accuracy (equivalently Youden's J, TPR - FPR), stored with the model and applied
  unchanged to the test windows. Multi-class tasks predict the argmax.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from neurofm.errors import ConfigError

#: Decision rules a task's systems may use: a threshold chosen on validation, or the argmax.
THRESHOLD_RULES = ("validation", "argmax")

#: Class weighting a fine-tuning or baseline run may use.
CLASS_WEIGHTINGS = ("balanced", "none")


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class weight ``N / (K * n_k)`` ``[n_classes]`` over the classes present in ``labels``;
    a class absent from them gets weight 0 (it contributes no loss anyway)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    if not present.any():
        raise ConfigError("no training labels to weight classes by")
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def binary_pos_weight(labels: np.ndarray) -> float:
    """BCE's ``pos_weight``: negatives per positive in ``labels`` (0/1), which gives both classes
    the same total weight; 1 when one class is missing."""
    labels = np.asarray(labels, dtype=np.int64)
    positives = int((labels == 1).sum())
    negatives = int((labels == 0).sum())
    return negatives / positives if positives and negatives else 1.0


def choose_threshold(y_true: np.ndarray, positive_probability: np.ndarray) -> float:
    """The positive-class probability threshold that maximises balanced accuracy on these windows.

    Windows with probability ``>= threshold`` are called positive. Among the ROC curve's
    thresholds, the one with the largest TPR - FPR wins; ties go to the threshold closest to 0.5.
    When the windows hold a single class the threshold stays 0.5 (nothing to balance).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probability = np.asarray(positive_probability, dtype=np.float64)
    if len(np.unique(y_true)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y_true, probability)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    youden = tpr - fpr
    best = np.flatnonzero(np.isclose(youden, youden.max()))
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - 0.5))]])


def decide(y_prob: np.ndarray, threshold: float | None) -> np.ndarray:
    """Predicted class ids ``[N]`` of ``y_prob [N, K]``: ``p1 >= threshold`` for a binary task
    with a threshold, the argmax otherwise."""
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if threshold is None:
        return y_prob.argmax(axis=1)
    if y_prob.shape[1] != 2:
        raise ConfigError(f"a decision threshold needs binary probabilities, got {y_prob.shape[1]} "
                          "classes")
    return (y_prob[:, 1] >= threshold).astype(np.int64)
