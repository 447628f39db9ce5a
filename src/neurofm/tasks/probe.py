"""The ``ridge`` fine-tuning mode: a closed-form probe on frozen pooled features.

An L2-penalised (ridge) logistic regression (scikit-learn's ``LogisticRegression``, lbfgs) on the
standardised features of the fold's training windows, fitted once per inverse penalty ``C`` of a
small grid; the ``C`` whose validation windows score best on the task's primary metric is kept.
Class weights are balanced like every other system's (``class_weight="balanced"``,
:mod:`neurofm.tasks.imbalance`). The fitted probe is a linear map of the features, so it becomes
the backbone's head exactly (:meth:`RidgeProbe.head`): the scaler folded into the weights, one
logit for a binary task, K for a multi-class one. The fold's predictions and its validation
threshold then come from that network like any other mode's, and its ``model/`` export reloads
with :func:`neurofm.from_pretrained`; :meth:`RidgeProbe.to_dict` is the fitted record
(standardisation, coefficients, the validation score of every ``C``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from neurofm.errors import ConfigError
from neurofm.tasks.metrics import classification_metrics

#: A class absent from the training windows gets zero weights and an intercept this far below the
#: smallest fitted one, so that its probability is about e^-30 of the others'.
ABSENT_CLASS_OFFSET = 30.0
#: The ``C`` kept when no validation score is defined (scikit-learn's default).
DEFAULT_C = 1.0


@dataclass
class RidgeProbe:
    """A fitted probe in the backbone's feature space.

    ``mean``/``scale`` standardise the features ``[D]``; ``coef [K, D]`` and ``intercept [K]``
    give the K class logits of the standardised features (every class of the task; absent ones
    see :data:`ABSENT_CLASS_OFFSET`); ``C`` is the kept inverse penalty, ``val_scores`` the
    validation score of each ``C`` tried (``None`` where undefined) on ``metric``, ``selected``
    ``"validation"`` or ``"default"`` (no defined validation score), ``converged`` whether lbfgs
    converged within ``max_iter`` for the kept ``C``.
    """

    mean: list[float]
    scale: list[float]
    coef: list[list[float]]
    intercept: list[float]
    C: float
    val_scores: dict[str, float | None]
    metric: str
    selected: str
    converged: bool
    classes_seen: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"format": "neurofm-ridge-probe", **asdict(self)}

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits ``[N, K]`` of raw pooled features ``[N, D]``."""
        weight, bias = self._folded()
        return np.asarray(features, dtype=np.float64) @ weight.T + bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, K]`` (the softmax of :meth:`logits`)."""
        return softmax(self.logits(features), axis=1)

    def head(self, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
        """``(weight [n_outputs, D], bias [n_outputs])`` of the head that computes this probe
        from raw features: the K logits, or for one output (a binary task) the logit of class 1
        against class 0, whose sigmoid is the same probability."""
        weight, bias = self._folded()
        if n_outputs == 1 and len(bias) == 2:
            return (weight[1] - weight[0])[None], (bias[1:] - bias[:1])
        if n_outputs != len(bias):
            raise ConfigError(f"a ridge probe over {len(bias)} classes cannot fill a head of "
                              f"{n_outputs} outputs")
        return weight, bias

    def _folded(self) -> tuple[np.ndarray, np.ndarray]:
        scale = np.asarray(self.scale)
        weight = np.asarray(self.coef) / scale
        return weight, np.asarray(self.intercept) - weight @ np.asarray(self.mean)


def fit_ridge_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
                    val_y: np.ndarray, n_classes: int, metric: str, c_grid: Sequence[float],
                    balanced: bool, max_iter: int = 2000, where: str = "this fold"
                    ) -> RidgeProbe:
    """Fit the probe on ``train_x [N, D]`` / ``train_y [N]`` for every ``C`` of ``c_grid`` and keep
    the one with the best ``metric`` on ``val_x`` / ``val_y`` (ties: the smaller ``C``; no
    validation windows or no defined score: :data:`DEFAULT_C`)."""
    train_y = np.asarray(train_y, dtype=np.int64)
    seen = np.unique(train_y)
    if seen.size < 2:
        raise ConfigError(f"the training windows of {where} hold one class ({int(seen[0])}); a "
                          "ridge probe needs at least two")
    scaler = StandardScaler().fit(train_x)
    standard_train = scaler.transform(train_x)
    fitted: dict[float, tuple[LogisticRegression, RidgeProbe]] = {}

    def fit(c: float) -> tuple[LogisticRegression, RidgeProbe]:
        if c not in fitted:
            model = LogisticRegression(C=c, max_iter=max_iter,
                                       class_weight="balanced" if balanced else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # recorded as `converged`
                model.fit(standard_train, train_y)
            coef, intercept = _class_logits(model, n_classes)
            fitted[c] = model, RidgeProbe(
                mean=scaler.mean_.tolist(), scale=scaler.scale_.tolist(), coef=coef.tolist(),
                intercept=intercept.tolist(), C=float(c), val_scores={}, metric=metric,
                selected="validation", converged=bool(np.max(model.n_iter_) < max_iter),
                classes_seen=seen.tolist())
        return fitted[c]

    scores: dict[str, float | None] = {}
    best_c, best_score = None, -math.inf
    for c in sorted(float(c) for c in c_grid):
        score = math.nan
        if len(val_y):
            probe = fit(c)[1]
            score = classification_metrics(np.asarray(val_y, dtype=np.int64),
                                           probe.probabilities(val_x), names=(metric,))[metric]
        scores[repr(c)] = score if math.isfinite(score) else None
        if math.isfinite(score) and score > best_score:
            best_c, best_score = c, score
    chosen = fit(DEFAULT_C if best_c is None else best_c)[1]
    chosen.val_scores = scores
    chosen.selected = "default" if best_c is None else "validation"
    return chosen


def _class_logits(model: LogisticRegression, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(coef [K, D], intercept [K])`` over all ``n_classes`` of a fitted model: scikit-learn's
    binary form (one row, for ``classes_[1]``) as the logits ``[0, z]``; absent classes far
    below (:data:`ABSENT_CLASS_OFFSET`)."""
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    full_coef = np.zeros((n_classes, coef.shape[1]))
    full_intercept = np.full(n_classes, float(intercept.min()) - ABSENT_CLASS_OFFSET)
    full_coef[model.classes_] = coef
    full_intercept[model.classes_] = intercept
    return full_coef, full_intercept

