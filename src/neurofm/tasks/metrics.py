"""Classification metrics with one stated definition each, and their confidence intervals.

Every metric takes the true class ids ``y_true`` (int ``[N]``, values ``0..K-1``) and class
probabilities ``y_prob`` (float ``[N, K]``, rows summing to 1); the predicted class is
``argmax(y_prob, axis=1)`` (the first class wins a tie) unless a system's decision rule gives
explicit predictions ``y_pred`` (a binary threshold chosen on validation,
:mod:`neurofm.tasks.imbalance`), which the threshold metrics then use. A binary task has ``K = 2`` and class 1 is
the positive class. The computations are scikit-learn's; the definitions are:

- ``accuracy``: the fraction of windows whose predicted class is the true class.
- ``balanced_accuracy``: the mean over the classes present in ``y_true`` of each class's recall
  (true positives over that class's windows).
- ``cohen_kappa``: (p_o - p_e) / (1 - p_e), unweighted, where p_o is the accuracy and p_e the
  agreement expected by chance from the true and predicted class frequencies.
- ``f1_macro``: the unweighted mean of the per-class F1 (2PR / (P + R)) over the classes that occur
  in ``y_true`` or in the predictions.
- ``f1_weighted``: the per-class F1 averaged with weights equal to each class's count in ``y_true``.
- ``auroc``: the area under the ROC curve of the positive-class probability (binary); for ``K > 2``,
  the unweighted mean over the classes present in ``y_true`` of the one-vs-rest AUROC of that
  class's probability. NaN when ``y_true`` holds a single class.
- ``auc_pr``: average precision, sum over thresholds of (R_n - R_{n-1}) P_n (no interpolation), of
  the positive-class probability (binary); for ``K > 2``, the unweighted one-vs-rest mean over the
  classes present in ``y_true``.

Confidence intervals: :func:`t_interval` over per-fold values, and :func:`bootstrap_over_subjects`
(percentile bootstrap that resamples whole subjects with replacement, seeded).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn import metrics as skm

#: Metric names in the order reports list them.
METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "cohen_kappa",
    "f1_macro",
    "f1_weighted",
    "auroc",
    "auc_pr",
)


def _check_inputs(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.ndim != 2 or y_prob.shape[1] < 2:
        raise ValueError(f"y_prob must be [N, K] with K >= 2 classes, got shape {y_prob.shape}")
    if y_true.ndim != 1 or len(y_true) != len(y_prob):
        raise ValueError(f"y_true must be [N] with N = {len(y_prob)}, got shape {y_true.shape}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero windows")
    if y_true.min() < 0 or y_true.max() >= y_prob.shape[1]:
        raise ValueError(f"class ids must lie in 0..{y_prob.shape[1] - 1}")
    return y_true.astype(np.int64), y_prob


def predicted_classes(y_prob: np.ndarray) -> np.ndarray:
    """The predicted class id ``[N]`` of each row of ``y_prob [N, K]`` (argmax, first on ties)."""
    return np.asarray(y_prob).argmax(axis=1)


def _decided(y_prob: np.ndarray, y_pred: np.ndarray | None) -> np.ndarray:
    if y_pred is None:
        return predicted_classes(y_prob)
    y_pred = np.asarray(y_pred)
    if y_pred.shape != (len(y_prob),):
        raise ValueError(f"y_pred must be [N] with N = {len(y_prob)}, got shape {y_pred.shape}")
    return y_pred


def accuracy(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Fraction of windows whose predicted class equals the true class."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return float(skm.accuracy_score(y_true, _decided(y_prob, y_pred)))


def balanced_accuracy(y_true: np.ndarray, y_prob: np.ndarray,
                      y_pred: np.ndarray | None = None) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    with warnings.catch_warnings():
        # Predicting a class absent from y_true is expected on one subject's windows; the
        # definition above averages over the true classes only, which is what sklearn does.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(skm.balanced_accuracy_score(y_true, _decided(y_prob, y_pred)))


def cohen_kappa(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Unweighted Cohen's kappa (p_o - p_e) / (1 - p_e) between true and predicted classes.

    Defined as 0 when both label sequences hold one and the same class (p_e = 1), where
    scikit-learn would divide by zero.
    """
    y_true, y_prob = _check_inputs(y_true, y_prob)
    y_pred = _decided(y_prob, y_pred)
    if np.unique(np.concatenate([y_true, y_pred])).size == 1:
        return 0.0
    return float(skm.cohen_kappa_score(y_true, y_pred))


def f1_macro(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Unweighted mean per-class F1 over the classes in ``y_true`` or the predictions."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return float(skm.f1_score(y_true, _decided(y_prob, y_pred), average="macro", zero_division=0))


def f1_weighted(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Per-class F1 averaged with weights equal to the class counts in ``y_true``."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return float(
        skm.f1_score(y_true, _decided(y_prob, y_pred), average="weighted", zero_division=0)
    )


def _one_vs_rest_mean(
    y_true: np.ndarray, y_prob: np.ndarray, score: Callable[[np.ndarray, np.ndarray], float]
) -> float:
    present = np.unique(y_true)
    if present.size < 2:
        return float("nan")
    if y_prob.shape[1] == 2:
        return float(score(y_true == 1, y_prob[:, 1]))
    return float(np.mean([score(y_true == k, y_prob[:, k]) for k in present]))


def auroc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Area under the ROC curve; one-vs-rest macro mean over present classes when ``K > 2``."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return _one_vs_rest_mean(y_true, y_prob, skm.roc_auc_score)


def auc_pr(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Average precision; one-vs-rest macro mean over present classes when ``K > 2``."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return _one_vs_rest_mean(y_true, y_prob, skm.average_precision_score)


#: Metrics computed from the predicted classes (the others rank the probabilities).
THRESHOLD_METRICS: frozenset[str] = frozenset(
    {"accuracy", "balanced_accuracy", "cohen_kappa", "f1_macro", "f1_weighted"})

METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "cohen_kappa": cohen_kappa,
    "f1_macro": f1_macro,
    "f1_weighted": f1_weighted,
    "auroc": auroc,
    "auc_pr": auc_pr,
}


def classification_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, names: Sequence[str] = METRIC_NAMES,
    y_pred: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric in ``names`` for one set of predictions (``y_true [N]``, ``y_prob [N, K]``,
    and the decided classes ``y_pred [N]``, default the argmax)."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
    return {name: METRICS[name](y_true, y_prob, y_pred) if name in THRESHOLD_METRICS
            else METRICS[name](y_true, y_prob) for name in names}


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes:
        estimate: the point estimate (mean over folds, or the metric on all windows).
        low, high: interval bounds (NaN when it cannot be formed, e.g. a single fold).
        confidence: the nominal coverage, e.g. 0.95.
        method: ``"t-interval over folds"`` or ``"bootstrap over subjects"``.
        n: the number of folds or subjects the interval rests on.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int

    def to_dict(self) -> dict[str, float | str | int]:
        """A JSON-ready dict (NaN stays a float; the JSON writer turns it into ``NaN``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, float | str | int]) -> Interval:
        """Inverse of :meth:`to_dict`."""
        return cls(
            estimate=float(data["estimate"]),
            low=float(data["low"]),
            high=float(data["high"]),
            confidence=float(data["confidence"]),
            method=str(data["method"]),
            n=int(data["n"]),
        )


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean of per-fold values: mean ± t_{(1+c)/2, n-1} · s / √n.

    ``s`` is the sample standard deviation (ddof 1); NaN values (a metric undefined on a fold)
    are left out. With fewer than two values the bounds are NaN.
    """
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    n = int(finite.size)
    method = "t-interval over folds"
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), confidence, method, 0)
    mean = float(finite.mean())
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), confidence, method, n)
    half_width = float(stats.t.ppf((1 + confidence) / 2, df=n - 1) * finite.std(ddof=1) / np.sqrt(n))
    return Interval(mean, mean - half_width, mean + half_width, confidence, method, n)


def bootstrap_over_subjects(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    subjects: Sequence[str] | np.ndarray,
    names: Sequence[str] = METRIC_NAMES,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    y_pred: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Percentile bootstrap over subjects for every metric in ``names``.

    Each resample draws as many subjects as there are, with replacement, from the distinct values
    of ``subjects [N]``; a subject drawn twice contributes all its windows twice. The metric is
    computed on the pooled windows of the resample; the interval is the (1-c)/2 and (1+c)/2
    quantiles of the finite resampled values, and the estimate is the metric on all windows.
    Seeded with ``seed`` (numpy ``default_rng``), so the same inputs give the same interval.
    """
    y_true, y_prob = _check_inputs(y_true, y_prob)
    y_pred = _decided(y_prob, y_pred)
    subjects = np.asarray(subjects)
    if len(subjects) != len(y_true):
        raise ValueError(f"{len(subjects)} subject ids for {len(y_true)} windows")
    unique_subjects, subject_of_window = np.unique(subjects, return_inverse=True)
    windows_of_subject = [np.flatnonzero(subject_of_window == s) for s in range(len(unique_subjects))]
    rng = np.random.default_rng(seed)
    resampled: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(unique_subjects), size=len(unique_subjects))
        index = np.concatenate([windows_of_subject[s] for s in drawn])
        resample = classification_metrics(y_true[index], y_prob[index], names, y_pred[index])
        for name, value in resample.items():
            resampled[name].append(value)
    point = classification_metrics(y_true, y_prob, names, y_pred)
    tail = (1 - confidence) / 2
    intervals = {}
    for name in names:
        values = np.asarray(resampled[name])
        values = values[np.isfinite(values)]
        if values.size == 0:
            low = high = float("nan")
        else:
            low, high = (float(q) for q in np.quantile(values, [tail, 1 - tail]))
        intervals[name] = Interval(
            point[name], low, high, confidence, "bootstrap over subjects", len(unique_subjects)
        )
    return intervals


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
                      ) -> list[dict[str, float | int | str]]:
    """Per class: ``support`` (true windows), ``predicted`` (windows called that class),
    ``recall``, ``precision`` and ``f1``. Recall is NaN for a class with no true window and
    precision NaN for a class never predicted (undefined, not 0), F1 then NaN as well; a class
    absent from the data is reported, never dropped."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    rows: list[dict[str, float | int | str]] = []
    for index, name in enumerate(class_names):
        true_k, pred_k = y_true == index, y_pred == index
        hits = int(np.sum(true_k & pred_k))
        support, predicted = int(true_k.sum()), int(pred_k.sum())
        recall = hits / support if support else float("nan")
        precision = hits / predicted if predicted else float("nan")
        f1 = (2 * hits / (support + predicted)) if support and predicted else float("nan")
        rows.append({"class": name, "support": support, "predicted": predicted,
                     "recall": recall, "precision": precision, "f1": f1})
    return rows


def primary_metric_for(n_classes: int) -> str:
    """Model-selection metric of METHODS §5: AUROC for binary tasks, Cohen's kappa otherwise."""
    return "auroc" if n_classes == 2 else "cohen_kappa"
