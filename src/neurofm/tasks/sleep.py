"""Sleep staging: YASA-style spectral features with night context, and YASA's pretrained stager.

Two systems for the sleep-staging tasks (``dreams_sleep_staging`` and its 5-s variant), both
scored by :func:`neurofm.tasks.evaluate.evaluate_system` on the task's folds like any model:

- **The spectral baseline** ``sleep_spectral`` (registered in :mod:`neurofm.tasks.baselines`):
  per epoch and channel, the features YASA's staging model uses (Vallat & Walker, eLife 2021),
  computed with YASA's and antropy's own functions (:func:`sleep_epoch_features`); then the
  context of neighbouring epochs of the same night (:func:`night_context`): a centred
  triangular-weighted mean over 7.5 min and a trailing mean over 2 min, each robust-scaled within
  the night, beside the epoch's own features, as YASA does. Classifier: standardised logistic
  regression with balanced class weights.
- **YASA's pretrained stager** (:func:`evaluate_yasa`, optional extra ``neurofm[sleep]``): the
  EEG-only LightGBM model shipped with YASA (trained on NSRR nights, none from DREAMS), applied to
  each test night's continuous signal; no training on the folds.

YASA and antropy are optional: without them these functions raise an :class:`ImportError` that
says to ``pip install 'neurofm[sleep]'``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal as sps
from sklearn.preprocessing import robust_scale

from neurofm.data.corpus import Corpus
from neurofm.data.splits import Split
from neurofm.errors import ConfigError
from neurofm.tasks.evaluate import EvaluationResult, Predictions, evaluate_system

if TYPE_CHECKING:
    from neurofm.tasks.data import TaskWindows
    from neurofm.tasks.definitions import Task

#: YASA's frequency bands (Hz, lower edge inclusive): slow and fast delta, theta, alpha, sigma
#: (spindles), beta.
SLEEP_BANDS: tuple[tuple[float, float, str], ...] = (
    (0.4, 1.0, "sdelta"), (1.0, 4.0, "fdelta"), (4.0, 8.0, "theta"), (8.0, 12.0, "alpha"),
    (12.0, 16.0, "sigma"), (16.0, 30.0, "beta"),
)
#: YASA's broad band (Hz): epochs are band-passed to it before the time-domain features.
BROAD_BAND = (0.4, 30.0)
#: Feature names per channel, in the order of :func:`sleep_epoch_features`.
EPOCH_FEATURES: tuple[str, ...] = (
    "log_std", "iqr_over_std", "skew", "kurt", "zero_crossings_per_s", "hjorth_mobility",
    "hjorth_complexity", *(f"rel_{name}" for *_, name in SLEEP_BANDS),
    "log_delta_theta", "log_delta_sigma", "log_delta_beta", "log_alpha_theta", "log_abs_power",
    "spectral_entropy", "perm_entropy", "higuchi_fd", "petrosian_fd",
)
#: Night context (YASA): a centred triangular window of 7.5 min and a trailing one of 2 min.
CENTRED_CONTEXT_SECONDS = 450.0
TRAILING_CONTEXT_SECONDS = 120.0

_INSTALL = "pip install 'neurofm[sleep]' (yasa, antropy, lightgbm)"
_FLOOR = 1e-12  # keeps logs and ratios finite on a flat epoch


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"the sleep-staging systems need {module!r}: {_INSTALL}") from error


def sleep_epoch_features(windows: np.ndarray, sfreq: float) -> np.ndarray:
    """YASA's per-epoch staging features: ``windows [N, C, T]`` -> ``[N, C * F]``, channel-major.

    Per channel (F = ``len(EPOCH_FEATURES)``): the epoch is band-passed to :data:`BROAD_BAND`
    (4th-order Butterworth, zero phase); then log standard deviation, interquartile range over
    standard deviation, skewness, kurtosis, zero crossings per second, Hjorth mobility and
    complexity (antropy); the power in each of :data:`SLEEP_BANDS` relative to 0.4-30 Hz
    (Welch, Hamming segments of min(5 s, T), median average, then
    ``yasa.bandpower_from_psd_ndarray``), the log ratios delta/theta, delta/sigma, delta/beta,
    alpha/theta, the log absolute 0.4-30 Hz power; spectral entropy (normalised, Welch),
    permutation entropy (normalised), Higuchi and Petrosian fractal dimensions (antropy).
    Amplitude features are logs or ratios, so the signal's unit only shifts them by a constant.
    """
    yasa = _require("yasa")
    ant = _require("antropy")
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3:
        raise ValueError(f"windows must be [N, C, T], got shape {windows.shape}")
    if sfreq / 2 <= BROAD_BAND[1]:
        raise ConfigError(f"sleep features need a rate above {2 * BROAD_BAND[1]:g} Hz (the "
                          f"{BROAD_BAND[1]:g} Hz band edge), got {sfreq:g} Hz; resample first")
    n, c, t = windows.shape
    epochs = windows.reshape(n * c, t)
    sos = sps.butter(4, BROAD_BAND, btype="bandpass", fs=sfreq, output="sos")
    # Contiguous rows: antropy's numba kernels take no strided views.
    epochs = np.ascontiguousarray(
        sps.sosfiltfilt(sos, epochs - epochs.mean(axis=1, keepdims=True), axis=1))
    std = np.maximum(epochs.std(axis=1, ddof=1), _FLOOR)
    q25, q75 = np.quantile(epochs, [0.25, 0.75], axis=1)
    centred = epochs - epochs.mean(axis=1, keepdims=True)
    m2 = np.maximum((centred**2).mean(axis=1), _FLOOR)
    mobility, complexity = ant.hjorth_params(epochs, axis=1)
    nperseg = min(t, int(round(5 * sfreq)))
    freqs, psd = sps.welch(epochs, sfreq, window="hamming", nperseg=nperseg, average="median")
    relative = yasa.bandpower_from_psd_ndarray(psd, freqs, bands=list(SLEEP_BANDS), relative=True)
    relative = np.maximum(relative, _FLOOR)
    rel = dict(zip((name for *_, name in SLEEP_BANDS), relative))
    delta = rel["sdelta"] + rel["fdelta"]
    broad = (freqs >= BROAD_BAND[0]) & (freqs <= BROAD_BAND[1])
    absolute = np.trapezoid(psd[:, broad], dx=freqs[1] - freqs[0], axis=1)
    spectral_entropy = ant.spectral_entropy(epochs, sfreq, method="welch", nperseg=nperseg,
                                            normalize=True, axis=1)
    columns = [
        np.log10(std), (q75 - q25) / std, (centred**3).mean(axis=1) / m2**1.5,
        (centred**4).mean(axis=1) / m2**2 - 3, ant.num_zerocross(epochs, axis=1) / (t / sfreq),
        mobility, complexity, *(rel[name] for *_, name in SLEEP_BANDS),
        np.log10(delta / rel["theta"]), np.log10(delta / rel["sigma"]),
        np.log10(delta / rel["beta"]), np.log10(rel["alpha"] / rel["theta"]),
        np.log10(np.maximum(absolute, _FLOOR)), spectral_entropy,
        np.array([ant.perm_entropy(e, normalize=True) for e in epochs]),
        np.array([ant.higuchi_fd(e) for e in epochs]), ant.petrosian_fd(epochs, axis=1),
    ]
    features = np.nan_to_num(np.stack(columns, axis=1), nan=0.0, posinf=0.0, neginf=0.0)
    return features.reshape(n, c * len(EPOCH_FEATURES))


def _weighted_mean_on_grid(values: np.ndarray, present: np.ndarray, weights: np.ndarray,
                           centre: int) -> np.ndarray:
    """Per grid row, the ``weights``-weighted mean of the present rows in its window (the
    window's row ``centre`` is the row itself); missing rows (dropped epochs) are skipped."""
    padded = np.where(present[:, None], values, 0.0)
    out = np.zeros_like(values)
    norm = np.zeros(len(values))
    for k, weight in enumerate(weights):
        shift = k - centre  # window row k looks at grid row i + shift
        lo, hi = max(0, -shift), min(len(values), len(values) - shift)
        out[lo:hi] += weight * padded[lo + shift:hi + shift]
        norm[lo:hi] += weight * present[lo + shift:hi + shift]
    return out / np.maximum(norm, _FLOOR)[:, None]


def night_context(features: np.ndarray, windows: TaskWindows) -> np.ndarray:
    """YASA's night context: ``features [N, F]`` -> ``[N, 3F]`` = the epoch's own features, then a
    centred triangular-weighted mean over :data:`CENTRED_CONTEXT_SECONDS` and a trailing mean over
    :data:`TRAILING_CONTEXT_SECONDS` of the epochs of the same recording, the two means each
    robust-scaled within the recording (median and 5-95% range, scikit-learn's
    :func:`~sklearn.preprocessing.robust_scale`), as YASA's ``SleepStaging`` builds its
    ``_c7min_norm`` and ``_p2min_norm`` features.

    Epochs sit on the recording's grid of window starts (``onset``); dropped epochs (unscored,
    tied) are holes that the means skip. The scaling uses no labels, only each night's own
    features (as YASA scales every night it stages).
    """
    features = np.asarray(features, dtype=np.float64)
    epoch = windows.signal.shape[-1] / windows.sfreq
    centred_epochs = max(1, int(round(CENTRED_CONTEXT_SECONDS / epoch)))
    trailing_epochs = max(1, int(round(TRAILING_CONTEXT_SECONDS / epoch)))
    triangle = np.bartlett(centred_epochs + 2)[1:-1]  # pandas' "triang" window
    flat = np.ones(trailing_epochs)
    out = np.empty((len(features), 3 * features.shape[1]))
    for recording in np.unique(windows.recording):
        rows = np.flatnonzero(windows.recording == recording)
        slot = np.round(windows.onset[rows] / epoch).astype(np.int64)
        grid = np.zeros((slot.max() + 1, features.shape[1]))
        present = np.zeros(slot.max() + 1, dtype=bool)
        grid[slot] = features[rows]
        present[slot] = True
        centred = _weighted_mean_on_grid(grid, present, triangle, centred_epochs // 2)[slot]
        trailing = _weighted_mean_on_grid(grid, present, flat, trailing_epochs - 1)[slot]
        out[rows] = np.hstack([features[rows], robust_scale(centred, quantile_range=(5, 95)),
                               robust_scale(trailing, quantile_range=(5, 95))])
    return out


# --------------------------------------------------------------------------- YASA's stager

#: YASA's stage names -> the AASM names of :data:`neurofm.data.layouts.SLEEP_STAGES`.
_YASA_STAGES = {"W": "W", "WAKE": "W", "N1": "N1", "N2": "N2", "N3": "N3", "R": "REM", "REM": "REM"}
#: Microvolts per unit of a corpus signal, for the units YASA can take.
_MICROVOLTS = {"uV": 1.0, "100uV": 100.0}
#: YASA's staging epoch (s).
YASA_EPOCH_SECONDS = 30.0


class YasaPredictor:
    """YASA's pretrained EEG-only stager as a fold predictor: it stages each scored recording's
    whole continuous signal (no training on the fold) and returns the stages and probabilities
    of the task's windows there."""

    def __init__(self, task: Task, windows: TaskWindows, corpus: Corpus) -> None:
        if task.window.seconds != YASA_EPOCH_SECONDS or task.window.label_mode != "majority":
            raise ConfigError(
                f"YASA stages 30-s epochs from the recording start; task {task.name!r} has "
                f"{task.window.seconds:g}-s windows labelled by {task.window.label_mode!r}")
        if windows.unit not in _MICROVOLTS:
            raise ConfigError(f"YASA needs a signal in µV; the corpus is in {windows.unit!r}")
        self.task = task
        self.windows = windows
        self.corpus = corpus
        self.yasa = _require("yasa")
        _require("lightgbm")
        self._staged: dict[str, np.ndarray] = {}
        #: Distinct warnings YASA raised while staging (recorded with the result).
        self.warnings: set[str] = set()

    def settings(self) -> dict[str, Any]:
        """What a result records about this system."""
        return {"system": "YASA SleepStaging, pretrained EEG-only LightGBM (eeg_lgb), shipped "
                          f"with yasa {self.yasa.__version__}; not trained on these folds",
                "input": f"each test night's {self.windows.channels[0]} derivation, continuous, "
                         "in µV (YASA resamples to 100 Hz and band-passes 0.4-30 Hz)",
                "yasa_warnings": sorted(self.warnings)}

    def _stage(self, recording: str) -> np.ndarray:
        """YASA's class probabilities ``[epochs, K]`` (task class order) for a whole recording."""
        if recording not in self._staged:
            import mne

            entry = self.corpus[recording]
            rows = np.flatnonzero(self.windows.recording == recording)
            channel = self.windows.channels[0]
            names = [c.upper() for c in entry.channels]
            spec = self.task.window
            candidates = spec.derivation or (channel,)
            row = next(names.index(c.upper()) for c in candidates if c.upper() in names)
            signal = self.corpus.signal(recording)[row] * _MICROVOLTS[self.windows.unit]
            raw = mne.io.RawArray(signal[None].astype(np.float64) * 1e-6,
                                  mne.create_info([channel], entry.sfreq, "eeg"), verbose="error")
            with warnings.catch_warnings(record=True) as caught:
                # YASA's shipped model was pickled by an older scikit-learn; its warning is
                # recorded in the result, not repeated per night.
                warnings.simplefilter("always")
                hypnogram = self.yasa.SleepStaging(raw, eeg_name=channel).predict()
            self.warnings.update(str(w.message).split(". ")[0] for w in caught)
            proba = hypnogram.proba
            probabilities = np.zeros((len(proba), self.task.n_classes))
            for column in proba.columns:
                stage = _YASA_STAGES[str(column).upper()]
                probabilities[:, self.task.class_names.index(stage)] = proba[column].to_numpy()
            last = int(np.round(self.windows.onset[rows] / YASA_EPOCH_SECONDS).max())
            if last >= len(probabilities):
                raise ConfigError(f"YASA staged {len(probabilities)} epochs of {recording!r}, "
                                  f"fewer than the task's windows there (up to epoch {last})")
            self._staged[recording] = probabilities
        return self._staged[recording]

    def __call__(self, index: int, fold: Split) -> Predictions:
        windows = self.windows
        scored = np.flatnonzero(np.isin(windows.recording, fold.scored_recordings))
        probabilities = np.zeros((len(scored), self.task.n_classes))
        for recording in np.unique(windows.recording[scored]):
            mine = windows.recording[scored] == recording
            epochs = np.round(windows.onset[scored][mine] / YASA_EPOCH_SECONDS).astype(np.int64)
            probabilities[mine] = self._stage(str(recording))[epochs]
        return Predictions(
            y_true=windows.label[scored], y_prob=probabilities,
            fold=np.full(len(scored), index), subject=windows.subject[scored],
            recording=windows.recording[scored], onset=windows.onset[scored],
        )


def evaluate_yasa(task: Task, windows: TaskWindows, folds: Sequence[Split], corpus: Corpus, *,
                  max_folds: int | None = None, progress: bool = True, n_resamples: int = 1000,
                  seed: int = 0) -> EvaluationResult:
    """YASA's pretrained stager on the task's epochs and folds, as a reference row
    (``system="yasa_pretrained"``); needs ``neurofm[sleep]``."""
    predictor = YasaPredictor(task, windows, corpus)
    result = evaluate_system(task, "yasa_pretrained", predictor, folds,
                             {"corpus": str(corpus.path)}, max_folds=max_folds,
                             progress=progress, n_resamples=n_resamples, seed=seed)
    result.config.update(predictor.settings(), data=windows.describe())
    return result
