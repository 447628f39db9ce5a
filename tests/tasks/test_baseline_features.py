"""Hand-crafted baseline features on signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.errors import ConfigError
from neurofm.tasks.baselines import (
    EEG_BANDS,
    band_power_features,
    emg_time_features,
    get_baseline,
)

SFREQ = 200.0


def test_alpha_power_dominates_for_a_10_hz_sine():
    time = np.arange(int(4 * SFREQ)) / SFREQ
    window = np.sin(2 * np.pi * 10.0 * time)[None, None, :]
    features = band_power_features(window, SFREQ).reshape(len(EEG_BANDS))
    band_names = list(EEG_BANDS)
    assert band_names[int(np.argmax(features))] == "alpha"
    # A unit sine carries power 1/2; the alpha band holds nearly all of it.
    assert 10 ** features[band_names.index("alpha")] == pytest.approx(0.5, rel=0.05)


def test_band_power_features_are_channel_major():
    time = np.arange(int(4 * SFREQ)) / SFREQ
    channels = np.stack([np.sin(2 * np.pi * 6.0 * time), np.sin(2 * np.pi * 20.0 * time)])
    features = band_power_features(channels[None], SFREQ).reshape(2, len(EEG_BANDS))
    band_names = list(EEG_BANDS)
    assert band_names[int(np.argmax(features[0]))] == "theta"
    assert band_names[int(np.argmax(features[1]))] == "beta"


def test_band_above_nyquist_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="Nyquist"):
        band_power_features(np.zeros((1, 1, 256)), sfreq=64.0)


def test_emg_time_features_on_a_known_square_wave():
    # +1, -1 alternating: mean 0, every step crosses zero with a jump of 2.
    square = np.tile([1.0, -1.0], 50)[None, None, :]
    rms, mav, waveform_length, zero_crossings = emg_time_features(square)[0]
    assert rms == pytest.approx(1.0)
    assert mav == pytest.approx(1.0)
    assert waveform_length == pytest.approx(2.0 * 99)
    assert zero_crossings == 99


def test_emg_zero_crossings_ignore_steps_below_the_threshold():
    # Mean-removed: [0.1, -0.1, 0.1, -0.1, 3, -3] - mean 0 -> steps of 0.2 are noise.
    window = np.array([0.1, -0.1, 0.1, -0.1, 3.0, -3.0])[None, None, :]
    all_crossings = emg_time_features(window)[0, 3]
    large_crossings = emg_time_features(window, zero_crossing_threshold=1.0)[0, 3]
    assert all_crossings == 5
    assert large_crossings == 2


def test_emg_features_remove_the_channel_offset_and_are_channel_major():
    offset_square = np.stack([np.tile([3.0, 1.0], 10), np.zeros(20)])[None]
    features = emg_time_features(offset_square).reshape(2, 4)
    assert features[0] == pytest.approx([1.0, 1.0, 2.0 * 19, 19])
    assert features[1] == pytest.approx([0.0, 0.0, 0.0, 0])


def test_baseline_probabilities_line_up_with_task_classes_when_a_class_is_missing():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(-2, 1, (20, 3)), rng.normal(2, 1, (20, 3))])
    labels = np.repeat([0, 2], 20)  # class 1 never occurs in training
    baseline = get_baseline("emg_td_lda")
    probabilities = baseline.probabilities(baseline.fit(features, labels), features, n_classes=3)
    assert probabilities.shape == (40, 3)
    assert np.all(probabilities[:, 1] == 0)
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.9


def test_unknown_baseline_names_the_known_ones():
    with pytest.raises(ConfigError, match="bandpower_logreg"):
        get_baseline("svm")
