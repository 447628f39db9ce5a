"""Classical baselines: hand-crafted features and a linear classifier from scikit-learn.

- ``bandpower_logreg`` (EEG tasks): log band power in delta/theta/alpha/beta/gamma per channel
  (Welch periodogram, :func:`band_power_features`), standardised, then L2 logistic regression.
- ``emg_td_lda`` (EMG gestures): root mean square, mean absolute value, waveform length and zero
  crossings per channel (:func:`emg_time_features`), standardised, then linear discriminant analysis.
- ``sleep_spectral`` (sleep staging): YASA's per-epoch features (relative band powers with sigma,
  Hjorth parameters, entropies, fractal dimensions) with the context of neighbouring epochs of
  the night (:mod:`neurofm.tasks.sleep`, needs ``neurofm[sleep]``), standardised, then L2
  logistic regression.

A baseline is fitted on the training windows of each fold with balanced class weights (as the
fine-tuned models are; :mod:`neurofm.tasks.imbalance`) and predicts class probabilities for the
test windows; a binary task's decision threshold is chosen on the fold's validation windows.
:mod:`neurofm.tasks.evaluate` scores those exactly as it scores a model's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal as sps
from sklearn.base import ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofm.data.splits import Split
from neurofm.errors import ConfigError
from neurofm.tasks.evaluate import EvaluationResult, Predictions, evaluate_system
from neurofm.tasks.imbalance import CLASS_WEIGHTINGS, THRESHOLD_RULES, choose_threshold, decide

if TYPE_CHECKING:
    from neurofm.tasks.data import TaskWindows
    from neurofm.tasks.definitions import Task

#: Frequency bands in Hz, lower edge inclusive, upper edge exclusive.
EEG_BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}

# Keeps log10 finite on a channel that is exactly flat in one band.
_POWER_FLOOR = 1e-12


def band_power_features(
    windows: np.ndarray,
    sfreq: float,
    bands: dict[str, tuple[float, float]] = EEG_BANDS,
    segment_seconds: float = 2.0,
) -> np.ndarray:
    """Log10 band power per channel and band: ``windows [N, C, T]`` -> features ``[N, C * B]``.

    The power spectral density comes from :func:`scipy.signal.welch` (Hann segments of
    ``segment_seconds``, or the whole window if shorter, 50% overlap, linear detrend), in the
    squared unit of ``windows`` per Hz; a band's power is the PSD summed over the bins inside it
    times the bin width. Features are ordered channel-major: ``[c0 delta, c0 theta, ..., c1 delta,
    ...]``. A band above the Nyquist frequency raises :class:`ConfigError`.
    """
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3:
        raise ValueError(f"windows must be [N, C, T], got shape {windows.shape}")
    nyquist = sfreq / 2
    too_high = [name for name, (_, high) in bands.items() if high > nyquist]
    if too_high:
        raise ConfigError(
            f"bands {too_high} reach above the Nyquist frequency {nyquist:g} Hz of a "
            f"{sfreq:g} Hz signal; resample higher or drop those bands"
        )
    samples_per_segment = min(windows.shape[-1], int(round(segment_seconds * sfreq)))
    freqs, psd = sps.welch(windows, fs=sfreq, nperseg=samples_per_segment, detrend="linear", axis=-1)
    bin_width = freqs[1] - freqs[0]
    powers = []
    for low, high in bands.values():
        in_band = (freqs >= low) & (freqs < high)
        if not in_band.any():
            raise ConfigError(
                f"band {low:g}-{high:g} Hz holds no frequency bin at {bin_width:g} Hz resolution; "
                "use longer windows or a wider band"
            )
        powers.append(psd[..., in_band].sum(axis=-1) * bin_width)
    log_power = np.log10(np.maximum(np.stack(powers, axis=-1), _POWER_FLOOR))
    return log_power.reshape(len(windows), -1)


def emg_time_features(windows: np.ndarray, zero_crossing_threshold: float = 0.0) -> np.ndarray:
    """Time-domain EMG features per channel: ``windows [N, C, T]`` -> ``[N, C * 4]``.

    Per channel, in this order (x is the window with its mean removed, in the signal's unit):
    RMS = sqrt(mean(x²)); MAV = mean(|x|); waveform length WL = Σ|x[t+1] - x[t]|; zero crossings
    ZC = the number of t with x[t]·x[t+1] < 0 and |x[t+1] - x[t]| >= ``zero_crossing_threshold``
    (the threshold keeps noise around zero from counting). Channel-major order.
    """
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3:
        raise ValueError(f"windows must be [N, C, T], got shape {windows.shape}")
    centred = windows - windows.mean(axis=-1, keepdims=True)
    steps = np.diff(centred, axis=-1)
    rms = np.sqrt(np.mean(centred**2, axis=-1))
    mav = np.mean(np.abs(centred), axis=-1)
    waveform_length = np.sum(np.abs(steps), axis=-1)
    sign_change = centred[..., :-1] * centred[..., 1:] < 0
    zero_crossings = np.sum(sign_change & (np.abs(steps) >= zero_crossing_threshold), axis=-1)
    features = np.stack([rms, mav, waveform_length, zero_crossings.astype(np.float64)], axis=-1)
    return features.reshape(len(windows), -1)


@dataclass(frozen=True)
class Baseline:
    """A named classical baseline: a feature extractor and a classifier factory.

    Attributes:
        name: registry key, e.g. ``"bandpower_logreg"``.
        description: one line for reports.
        features: ``(windows [N, C, T], sfreq) -> features [N, F]``.
        classifier: ``(balanced) ->`` a fresh, unfitted scikit-learn classifier with
            ``predict_proba``; ``balanced`` weighs every class equally (class weights or
            uniform priors) instead of by its frequency.
        settings: the hyperparameters, recorded with every result.
        context: optional ``(features [N, F], windows) -> [N, F']``, features enriched with the
            window's neighbours in its recording (sleep epochs of one night); it sees no labels.
    """

    name: str
    description: str
    features: Callable[[np.ndarray, float], np.ndarray]
    classifier: Callable[[bool], ClassifierMixin]
    settings: dict[str, Any] = field(default_factory=dict)
    context: Callable[[np.ndarray, TaskWindows], np.ndarray] | None = None

    def fit(self, train_features: np.ndarray, train_labels: np.ndarray, balanced: bool = True
            ) -> ClassifierMixin:
        """The classifier fitted on ``train_features [N, F]`` / ``train_labels [N]``."""
        return self.classifier(balanced).fit(train_features, train_labels)

    @staticmethod
    def probabilities(model: ClassifierMixin, features: np.ndarray, n_classes: int) -> np.ndarray:
        """Class probabilities ``[M, K]`` of a fitted ``model``; classes missing from its training
        labels get probability 0, so the columns line up with the task's class ids."""
        probabilities = np.zeros((len(features), n_classes))
        probabilities[:, model.classes_] = model.predict_proba(features)
        return probabilities


def _bandpower_classifier(balanced: bool) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=1.0, max_iter=2000, class_weight="balanced" if balanced else None))


class _BalancedLDA(LinearDiscriminantAnalysis):
    """LDA with equal priors over the classes of its training labels (``priors`` must be known
    before ``fit``, and only ``fit`` sees the classes)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _BalancedLDA:  # X, y: sklearn's names
        classes = np.unique(y)
        self.priors = np.full(len(classes), 1.0 / len(classes))
        return super().fit(X, y)


def _emg_classifier(balanced: bool) -> Pipeline:
    return make_pipeline(StandardScaler(),
                         _BalancedLDA() if balanced else LinearDiscriminantAnalysis())


def _bandpower(windows: np.ndarray, sfreq: float) -> np.ndarray:
    return band_power_features(windows, sfreq)


def _emg(windows: np.ndarray, sfreq: float) -> np.ndarray:
    return emg_time_features(windows)


def _sleep_features(windows: np.ndarray, sfreq: float) -> np.ndarray:
    from neurofm.tasks.sleep import sleep_epoch_features

    return sleep_epoch_features(windows, sfreq)


def _sleep_context(features: np.ndarray, windows: TaskWindows) -> np.ndarray:
    from neurofm.tasks.sleep import night_context

    return night_context(features, windows)


def _sleep_classifier(balanced: bool) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=0.1, max_iter=5000, class_weight="balanced" if balanced else None))


BASELINES: dict[str, Baseline] = {
    "bandpower_logreg": Baseline(
        name="bandpower_logreg",
        description="log band power (delta, theta, alpha, beta, gamma) per channel + "
        "standardised logistic regression",
        features=_bandpower,
        classifier=_bandpower_classifier,
        settings={
            "bands_hz": {name: list(edges) for name, edges in EEG_BANDS.items()},
            "welch_segment_s": 2.0,
            "classifier": "StandardScaler + LogisticRegression(C=1.0, L2, lbfgs, "
                          "class_weight='balanced')",
        },
    ),
    "emg_td_lda": Baseline(
        name="emg_td_lda",
        description="RMS, MAV, waveform length, zero crossings per channel + standardised LDA",
        features=_emg,
        classifier=_emg_classifier,
        settings={
            "features": ["rms", "mav", "waveform_length", "zero_crossings"],
            "zero_crossing_threshold": 0.0,
            "classifier": "StandardScaler + LinearDiscriminantAnalysis(solver='svd', equal "
                          "class priors)",
        },
    ),
    "sleep_spectral": Baseline(
        name="sleep_spectral",
        description="YASA's epoch features (relative band powers incl. sigma, Hjorth, "
        "entropies) + night context (7.5-min centred, 2-min trailing means) + standardised "
        "logistic regression",
        features=_sleep_features,
        classifier=_sleep_classifier,
        context=_sleep_context,
        settings={
            "features": "neurofm.tasks.sleep.EPOCH_FEATURES per channel (yasa, antropy)",
            "context": "own features, centred triangular 7.5-min and trailing 2-min means, "
                       "the means robust-scaled (5-95%) within the recording (YASA's design)",
            "classifier": "StandardScaler + LogisticRegression(C=0.1, L2, lbfgs, "
                          "class_weight='balanced')",
        },
    ),
}


def get_baseline(name: str) -> Baseline:
    """The baseline registered under ``name``; :class:`ConfigError` listing the known ones."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ConfigError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}") from None



class BaselinePredictor:
    """Fits a baseline on one fold's training recordings and predicts its scored recordings.

    A fold predictor for :func:`neurofm.tasks.evaluate.evaluate_system`. Features are computed
    once for all windows (they depend on no training data); the scaler and classifier are fitted
    per fold on the training partition only, with balanced class weights unless ``class_weight``
    is ``"none"``. For a binary task with ``threshold="validation"`` the decision threshold is the
    one that maximises balanced accuracy on the fold's validation windows (0.5 without any);
    ``thresholds[index]`` records it per fold.
    """

    def __init__(self, baseline: Baseline, windows: TaskWindows, n_classes: int,
                 class_weight: str = "balanced", threshold: str = "validation") -> None:
        if class_weight not in CLASS_WEIGHTINGS or threshold not in THRESHOLD_RULES:
            raise ConfigError(f"baseline class_weight must be one of {CLASS_WEIGHTINGS} and "
                              f"threshold one of {THRESHOLD_RULES}; got {class_weight!r}, "
                              f"{threshold!r}")
        self.baseline = baseline
        self.windows = windows
        self.n_classes = n_classes
        self.class_weight = class_weight
        self.threshold = threshold
        self.thresholds: dict[int, float | None] = {}
        self.features = baseline.features(windows.signal, windows.sfreq)
        if baseline.context is not None:
            self.features = baseline.context(self.features, windows)

    def settings(self) -> dict[str, Any]:
        """What a result records about this baseline run."""
        return {"baseline": self.baseline.description, **self.baseline.settings,
                "class_weight": self.class_weight, "threshold": self.threshold,
                "thresholds": {f"fold{i}": t for i, t in sorted(self.thresholds.items())}}

    def __call__(self, index: int, fold: Split) -> Predictions:
        """Predictions for fold ``index``'s scored windows (class probabilities ``[M, K]``, the
        decided classes and the window keys)."""
        windows = self.windows
        train = np.isin(windows.recording, fold.train)
        scored = np.isin(windows.recording, fold.scored_recordings)
        if not train.any() or not scored.any():
            raise ConfigError(
                f"fold {index} ({fold.name}) has {int(train.sum())} training and "
                f"{int(scored.sum())} {fold.scored} windows; every fold needs both"
            )
        model = self.baseline.fit(self.features[train], windows.label[train],
                                  balanced=self.class_weight == "balanced")
        threshold = None
        if self.n_classes == 2 and self.threshold == "validation":
            val = np.isin(windows.recording, fold.val)
            threshold = 0.5
            if val.any():
                val_prob = self.baseline.probabilities(model, self.features[val], self.n_classes)
                threshold = choose_threshold(windows.label[val], val_prob[:, 1])
        self.thresholds[index] = threshold
        probabilities = self.baseline.probabilities(model, self.features[scored], self.n_classes)
        return Predictions(
            y_true=windows.label[scored],
            y_prob=probabilities,
            fold=np.full(int(scored.sum()), index),
            subject=windows.subject[scored],
            recording=windows.recording[scored],
            onset=windows.onset[scored],
            y_pred=decide(probabilities, threshold),
        )


def evaluate_baseline(task: Task, windows: TaskWindows, folds: Sequence[Split], *,
                      corpus: str | None = None, max_folds: int | None = None,
                      progress: bool = True, n_resamples: int = 1000, seed: int = 0,
                      class_weight: str = "balanced", threshold: str = "validation"
                      ) -> EvaluationResult:
    """The task's classical baseline on ``folds``, scored like any system (one call for the CLI,
    fine-tuning reports and the demo); the result records its settings and per-fold thresholds."""
    method = get_baseline(task.baseline)
    predictor = BaselinePredictor(method, windows, task.n_classes, class_weight, threshold)
    result = evaluate_system(task, method.name, predictor, folds, {"corpus": corpus},
                             max_folds=max_folds, progress=progress, n_resamples=n_resamples,
                             seed=seed)
    result.config.update(predictor.settings(), data=windows.describe())
    return result
