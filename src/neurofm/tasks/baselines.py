"""Classical baselines: hand-crafted features and a linear classifier from scikit-learn.

- ``bandpower_logreg`` (EEG tasks): log band power in delta/theta/alpha/beta/gamma per channel
  (Welch periodogram, :func:`band_power_features`), standardised, then L2 logistic regression.
- ``emg_td_lda`` (EMG gestures): root mean square, mean absolute value, waveform length and zero
  crossings per channel (:func:`emg_time_features`), standardised, then linear discriminant analysis.

A baseline is fitted on the training windows of each fold and predicts class probabilities for the
test windows; :mod:`neurofm.tasks.evaluate` scores those exactly as it scores a model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from scipy import signal as sps
from sklearn.base import ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofm.errors import ConfigError
from neurofm.data.splits import Split
from neurofm.tasks.evaluate import Predictions

if TYPE_CHECKING:
    from neurofm.tasks.data import TaskWindows

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
        classifier: builds a fresh, unfitted scikit-learn classifier with ``predict_proba``.
        settings: the hyperparameters, recorded with every result.
    """

    name: str
    description: str
    features: Callable[[np.ndarray, float], np.ndarray]
    classifier: Callable[[], ClassifierMixin]
    settings: dict[str, Any] = field(default_factory=dict)

    def fit_predict(
        self, train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
        n_classes: int,
    ) -> np.ndarray:
        """Fit on ``train_features [N, F]`` / ``train_labels [N]``; class probabilities ``[M, K]``.

        Classes missing from the training labels get probability 0, so the columns always line
        up with the task's ``n_classes`` class ids.
        """
        model = self.classifier().fit(train_features, train_labels)
        probabilities = np.zeros((len(test_features), n_classes))
        probabilities[:, model.classes_] = model.predict_proba(test_features)
        return probabilities


def _bandpower_classifier() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def _emg_classifier() -> Pipeline:
    return make_pipeline(StandardScaler(), LinearDiscriminantAnalysis())


def _bandpower(windows: np.ndarray, sfreq: float) -> np.ndarray:
    return band_power_features(windows, sfreq)


def _emg(windows: np.ndarray, sfreq: float) -> np.ndarray:
    return emg_time_features(windows)


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
            "classifier": "StandardScaler + LogisticRegression(C=1.0, L2, lbfgs)",
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
            "classifier": "StandardScaler + LinearDiscriminantAnalysis(solver='svd')",
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
    """Fits a baseline on one fold's training recordings and predicts its test recordings.

    A fold predictor for :func:`neurofm.tasks.evaluate.evaluate_system`. Features are computed
    once for all windows (they depend on no training data); the scaler and classifier are fitted
    per fold on the training partition only. The validation partition is not used, because a
    baseline has no hyperparameters to select.
    """

    def __init__(self, baseline: Baseline, windows: "TaskWindows", n_classes: int) -> None:
        self.baseline = baseline
        self.windows = windows
        self.n_classes = n_classes
        self.features = baseline.features(windows.signal, windows.sfreq)

    def __call__(self, index: int, fold: Split) -> Predictions:
        """Test predictions of fold ``index`` (class probabilities ``[M, K]`` and window keys)."""
        windows = self.windows
        train = np.isin(windows.recording, fold.train)
        test = np.isin(windows.recording, fold.test)
        if not train.any() or not test.any():
            raise ConfigError(
                f"fold {index} ({fold.name}) has {int(train.sum())} training and "
                f"{int(test.sum())} test windows; every fold needs both"
            )
        probabilities = self.baseline.fit_predict(
            self.features[train], windows.label[train], self.features[test], self.n_classes
        )
        return Predictions(
            y_true=windows.label[test],
            y_prob=probabilities,
            fold=np.full(int(test.sum()), index),
            subject=windows.subject[test],
            recording=windows.recording[test],
            onset=windows.onset[test],
        )
