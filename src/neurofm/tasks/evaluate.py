"""Scoring a system's test predictions on a task's folds: metrics per fold and per subject, CIs.

Any system, a classical baseline or a fine-tuned model, hands over :class:`Predictions` (one row
per test window: true class, class probabilities, fold, subject, recording, onset) together with
the folds it used. :func:`evaluate_predictions` checks that every window was tested in the fold
that holds its subject out, scores it and returns an :class:`EvaluationResult`, which is saved as
JSON with the task definition, the split and the system's configuration, so that a result always
says exactly what was measured on what.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofm import __version__
from neurofm.atomic import atomic_write_json
from neurofm.data.splits import Split
from neurofm.errors import ConfigError
from neurofm.tasks.definitions import Task
from neurofm.tasks.metrics import (
    METRIC_NAMES,
    Interval,
    bootstrap_over_subjects,
    classification_metrics,
    t_interval,
)

#: A system under evaluation: ``(fold position, fold split) -> predictions`` for the fold's test
#: recordings, having trained only on its train (and selected only on its val) recordings.
FoldPredictor = Callable[[int, Split], "Predictions"]

#: A result is flagged as collapsed when one class takes more than this share of its predictions
#: while its AUROC exceeds :data:`COLLAPSE_AUROC` (it ranks, but its decisions do not use it).
COLLAPSE_SHARE = 0.95
COLLAPSE_AUROC = 0.55

RESULT_FORMAT = "neurofm-evaluation"
RESULT_VERSION = 1


@dataclass
class Predictions:
    """Test-set predictions of one system, one row per window, over all folds.

    Attributes:
        y_true: int ``[N]`` true class ids.
        y_prob: float ``[N, K]`` class probabilities (rows sum to 1).
        fold: int ``[N]`` position (in the list of folds) of the fold that tested the window.
        subject: str ``[N]`` the window's subject (the split unit).
        recording: str ``[N]`` the recording id the window was cut from.
        onset: float ``[N]`` the window's start in seconds from its recording's start.
        y_pred: int ``[N]`` the predicted class of each window under the system's decision rule
            (a validation-chosen threshold for binary tasks); default the argmax of ``y_prob``.
    """

    y_true: np.ndarray
    y_prob: np.ndarray
    fold: np.ndarray
    subject: np.ndarray
    recording: np.ndarray
    onset: np.ndarray
    y_pred: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.y_true = np.asarray(self.y_true, dtype=np.int64)
        self.y_prob = np.asarray(self.y_prob, dtype=np.float64)
        self.fold = np.asarray(self.fold, dtype=np.int64)
        self.subject = np.asarray(self.subject, dtype=str)
        self.recording = np.asarray(self.recording, dtype=str)
        self.onset = np.asarray(self.onset, dtype=np.float64)
        n = len(self.y_true)
        lengths = {name: len(getattr(self, name)) for name in
                   ("y_prob", "fold", "subject", "recording", "onset")}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"predictions of {n} windows have mismatched columns {lengths}")
        if self.y_prob.ndim != 2:
            raise ValueError(f"y_prob must be [N, K], got shape {self.y_prob.shape}")
        self.y_pred = (self.y_prob.argmax(axis=1) if self.y_pred is None
                       else np.asarray(self.y_pred, dtype=np.int64))
        if len(self.y_pred) != n:
            raise ValueError(f"predictions of {n} windows have {len(self.y_pred)} decided classes")

    def select(self, mask: np.ndarray) -> Predictions:
        """The rows where ``mask [N]`` is true."""
        return Predictions(*(getattr(self, name)[mask] for name in _COLUMNS))

    @classmethod
    def concatenate(cls, parts: Sequence[Predictions]) -> Predictions:
        """Stack the rows of several prediction sets (e.g. one per fold)."""
        if not parts:
            raise ValueError("no predictions to concatenate")
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS))

    def to_dict(self) -> dict[str, list]:
        """JSON-ready columns (probabilities rounded to 6 decimals)."""
        return {
            "y_true": self.y_true.tolist(),
            "y_prob": np.round(self.y_prob, 6).tolist(),
            "fold": self.fold.tolist(),
            "subject": self.subject.tolist(),
            "recording": self.recording.tolist(),
            "onset": self.onset.tolist(),
            "y_pred": np.asarray(self.y_pred).tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, list]) -> Predictions:
        """Inverse of :meth:`to_dict` (results written before ``y_pred`` was stored decide by
        the argmax)."""
        y_prob = np.asarray(data["y_prob"], dtype=np.float64)
        return cls(data["y_true"], y_prob.reshape(len(data["y_true"]), -1), data["fold"],
                   data["subject"], data["recording"], data["onset"], data.get("y_pred"))


_COLUMNS = ("y_true", "y_prob", "fold", "subject", "recording", "onset", "y_pred")


@dataclass
class EvaluationResult:
    """Everything measured for one system on one task, serialisable to JSON.

    Attributes:
        task: the task definition (:meth:`Task.to_dict`).
        system: the system's name in reports, e.g. ``"bandpower_logreg"`` or ``"labram_base"``.
        config: the system's settings (baseline hyperparameters, fine-tuning recipe...).
        folds: the splits (one per fold) the predictions were made on.
        fold_metrics: per fold (in the order of ``folds``), every metric on that fold's test
            windows (NaN for a fold without test windows).
        subject_metrics: per test subject, every metric on that subject's windows.
        pooled: every metric on all test windows together.
        over_folds: per metric, the t-interval of the mean of ``fold_metrics``.
        over_subjects: per metric, the bootstrap-over-subjects interval of ``pooled``.
        predictions: the test predictions themselves (for confusion matrices and hypnograms).
        created: UTC time of the evaluation (ISO 8601).
        neurofm_version: the package version that produced it.
        history_csv: optional path to the training-metrics CSV (long format: step, epoch, split,
            name, value, wall_time) of a fine-tuning run, for learning-curve plots; a relative
            path is relative to the result file.
    """

    task: dict[str, Any]
    system: str
    config: dict[str, Any]
    folds: list[Split]
    fold_metrics: list[dict[str, float]]
    subject_metrics: dict[str, dict[str, float]]
    pooled: dict[str, float]
    over_folds: dict[str, Interval]
    over_subjects: dict[str, Interval]
    predictions: Predictions
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                         .isoformat(timespec="seconds"))
    neurofm_version: str = __version__
    history_csv: str | None = None

    @property
    def task_name(self) -> str:
        return str(self.task["name"])

    @property
    def class_names(self) -> list[str]:
        return list(self.task["class_names"])

    @property
    def primary_metric(self) -> str:
        return str(self.task["primary_metric"])

    def collapse(self) -> str | None:
        """A warning when the system collapsed onto one class: one class predicted for more than
        :data:`COLLAPSE_SHARE` of the scored windows although the probabilities rank the classes
        (AUROC above :data:`COLLAPSE_AUROC`); ``None`` otherwise."""
        counts = np.bincount(self.predictions.y_pred, minlength=len(self.class_names))
        share = counts.max() / max(1, counts.sum())
        auroc = self.pooled.get("auroc", float("nan"))
        if share > COLLAPSE_SHARE and auroc > COLLAPSE_AUROC:
            return (f"collapsed: predicts {self.class_names[int(counts.argmax())]!r} for "
                    f"{100 * share:.1f}% of the windows although its AUROC is {auroc:.3f}; its "
                    "threshold metrics are those of a majority-class guess")
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; undefined values (NaN) become ``null``."""
        return without_nan({
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "task": self.task,
            "system": self.system,
            "config": self.config,
            "folds": [fold.to_dict() for fold in self.folds],
            "fold_metrics": self.fold_metrics,
            "subject_metrics": self.subject_metrics,
            "pooled": self.pooled,
            "over_folds": {k: v.to_dict() for k, v in self.over_folds.items()},
            "over_subjects": {k: v.to_dict() for k, v in self.over_subjects.items()},
            "predictions": self.predictions.to_dict(),
            "created": self.created,
            "neurofm_version": self.neurofm_version,
            "history_csv": self.history_csv,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "result") -> EvaluationResult:
        """Inverse of :meth:`to_dict`; :class:`ConfigError` naming ``where`` if it is not one."""
        if not isinstance(data, Mapping) or data.get("format") != RESULT_FORMAT:
            raise ConfigError(f"{where} is not a neurofm evaluation result (no format "
                              f"{RESULT_FORMAT!r}); pass files written by `neurofm evaluate`")
        if data.get("version") != RESULT_VERSION:
            raise ConfigError(f"{where} has result version {data.get('version')}; this neurofm "
                              f"reads version {RESULT_VERSION}")
        metric = _with_nan
        return cls(
            task=dict(data["task"]),
            system=str(data["system"]),
            config=dict(data["config"]),
            folds=[Split.from_dict(f) for f in data["folds"]],
            fold_metrics=[metric(m) for m in data["fold_metrics"]],
            subject_metrics={s: metric(m) for s, m in data["subject_metrics"].items()},
            pooled=metric(data["pooled"]),
            over_folds={k: Interval.from_dict(_with_nan(v)) for k, v in data["over_folds"].items()},
            over_subjects={k: Interval.from_dict(_with_nan(v))
                           for k, v in data["over_subjects"].items()},
            predictions=Predictions.from_dict(data["predictions"]),
            created=str(data["created"]),
            neurofm_version=str(data["neurofm_version"]),
            history_csv=data.get("history_csv"),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as JSON atomically; returns the path."""
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationResult:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"result file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"result file {path} is not valid JSON ({error}); "
                              "re-run `neurofm evaluate` to write it again") from None
        result = cls.from_dict(data, where=str(path))
        if result.history_csv and not Path(result.history_csv).is_absolute():
            # A relative metrics CSV is taken relative to the result file, so a run folder can move.
            result.history_csv = str(path.parent / result.history_csv)
        return result


def without_nan(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts and lists) as None, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    return value


def _with_nan(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: float("nan") if v is None else v for k, v in values.items()}


def check_predictions_follow_split(predictions: Predictions, folds: Sequence[Split]) -> None:
    """Raise :class:`ConfigError` unless every window was scored in the fold holding its subject
    out (in its test part, or in its validation part for a fold scored there).

    This is the guard against leakage: a window whose subject trained or validated the model that
    predicted it would inflate every metric.
    """
    unknown = sorted(set(predictions.fold.tolist()) - set(range(len(folds))))
    if unknown:
        raise ConfigError(f"predictions name fold(s) {unknown}, but the split has {len(folds)} folds")
    for index, fold in enumerate(folds):
        tested = set(predictions.subject[predictions.fold == index].tolist())
        leaked = sorted(tested - set(fold.scored_groups))
        if leaked:
            raise ConfigError(
                f"fold {index}: windows of subject(s) {leaked} were scored but are not in that "
                f"fold's {fold.scored} partition {list(fold.scored_groups)}; predict each fold's "
                f"{fold.scored} subjects only"
            )


def evaluate_predictions(
    task: Task,
    system: str,
    predictions: Predictions,
    folds: Sequence[Split],
    config: Mapping[str, Any] | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    history_csv: str | None = None,
) -> EvaluationResult:
    """Score ``predictions`` of ``system`` on ``task``: per fold, per subject, pooled, with CIs.

    Args:
        task: the task the predictions are for (defines the classes and the selection metric).
        system: a name for the system in reports.
        predictions: test predictions over the folds (``y_prob`` has ``task.n_classes`` columns).
        folds: the split used; each prediction's subject must be in its fold's test partition.
        config: the system's settings, stored with the result.
        n_resamples, confidence, seed: the bootstrap over subjects.
        history_csv: the training-metrics CSV of the run, if any (learning curves).
    """
    if predictions.y_prob.shape[1] != task.n_classes:
        raise ConfigError(
            f"predictions have {predictions.y_prob.shape[1]} class columns but task {task.name!r} "
            f"has {task.n_classes} classes {task.class_names}"
        )
    if len(predictions.y_true) == 0:
        raise ConfigError(f"no test windows to evaluate for task {task.name!r}")
    check_predictions_follow_split(predictions, folds)
    fold_metrics = []
    for index in range(len(folds)):
        rows = predictions.fold == index
        if rows.any():
            part = predictions.select(rows)
            fold_metrics.append(classification_metrics(part.y_true, part.y_prob,
                                                       y_pred=part.y_pred))
        else:
            # A fold whose test subjects have no windows keeps its place, with undefined metrics.
            fold_metrics.append({name: float("nan") for name in METRIC_NAMES})
    subject_metrics = {}
    for subject in sorted(set(predictions.subject.tolist())):
        part = predictions.select(predictions.subject == subject)
        subject_metrics[subject] = classification_metrics(part.y_true, part.y_prob,
                                                          y_pred=part.y_pred)
    over_folds = {name: t_interval([m[name] for m in fold_metrics], confidence)
                  for name in METRIC_NAMES}
    over_subjects = bootstrap_over_subjects(
        predictions.y_true, predictions.y_prob, predictions.subject, METRIC_NAMES,
        n_resamples=n_resamples, confidence=confidence, seed=seed, y_pred=predictions.y_pred,
    )
    return EvaluationResult(
        task=task.to_dict(),
        system=system,
        config={**dict(config or {}),
                "bootstrap": {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}},
        folds=list(folds),
        fold_metrics=fold_metrics,
        subject_metrics=subject_metrics,
        pooled={name: over_subjects[name].estimate for name in METRIC_NAMES},
        over_folds=over_folds,
        over_subjects=over_subjects,
        predictions=predictions,
        history_csv=history_csv,
    )


def evaluate_system(
    task: Task,
    system: str,
    predict_fold: FoldPredictor,
    folds: Sequence[Split],
    config: Mapping[str, Any] | None = None,
    *,
    max_folds: int | None = None,
    progress: bool = True,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    history_csv: str | None = None,
) -> EvaluationResult:
    """Run ``predict_fold`` on each fold and score the pooled test predictions.

    This is the one path every system takes: the classical baselines
    (:class:`neurofm.tasks.baselines.BaselinePredictor`) and fine-tuned models alike, so all are
    scored on the same windows of the same folds. ``max_folds`` runs only the first folds (quick
    checks; the result then covers only their test subjects and says so in its config).
    """
    from tqdm.auto import tqdm

    chosen = list(folds)[: max_folds or len(folds)]
    parts = [predict_fold(index, fold)
             for index, fold in enumerate(tqdm(chosen, desc=f"{task.name} {system}", unit="fold",
                                              disable=not progress))]
    settings = dict(config or {})
    if len(chosen) < len(folds):
        settings["folds_run"] = f"{len(chosen)} of {len(folds)}"
    return evaluate_predictions(
        task, system, Predictions.concatenate(parts), chosen, settings,
        n_resamples=n_resamples, confidence=confidence, seed=seed, history_csv=history_csv,
    )
