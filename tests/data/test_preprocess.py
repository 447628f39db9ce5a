"""Preprocessing recipes: what comes out (unit, rate, channels), what filters keep and remove."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from neurofm.data.layouts import read_myo_gesture_file
from neurofm.data.preprocess import PreprocessConfig, preprocess
from neurofm.data.readers import read_recording
from neurofm.data.recording import Annotation, Recording
from neurofm.errors import ConfigError

# sha256 of the default (LaBraM) config's canonical JSON. Changing it orphans every corpus
# prepared so far, so it changes only on purpose (bump PREPROCESS_VERSION or a default).
# PREPROCESS_VERSION 2 (labels resampled by sample and hold); version 1 was e9796233...
LABRAM_CONFIG_HASH = "fd71bd9ee3e719ef269cc6fc0c48fa61a9d9ac3cbbccc6b5c00054a1c0291c9b"


def sine_recording(components: dict[str, tuple[float, float, float]], sfreq: float = 500.0,
                   seconds: float = 80.0) -> Recording:
    """Channels named by 10-20 labels, each ``amplitude * sin(2 pi f t) + offset`` in µV.

    80 s by default: the 0.1 Hz high-pass is a 33-s FIR filter, so the middle half of the output
    lies more than half a filter length from either edge.
    """
    t = np.arange(int(seconds * sfreq)) / sfreq
    rows = [amplitude * np.sin(2 * np.pi * freq * t) + offset
            for freq, amplitude, offset in components.values()]
    names = list(components)
    return Recording(signal=np.array(rows, dtype=np.float32), ch_names=names,
                     ch_types=["eeg"] * len(names), sfreq=sfreq, unit="uV")


def middle_rms(row: np.ndarray) -> float:
    """RMS away from the edges, where the long 0.1 Hz high-pass filter settles."""
    quarter = len(row) // 4
    return float(np.sqrt(np.mean(row[quarter:-quarter] ** 2)))


def test_labram_recipe_on_eegmat_gives_19_channels_in_100uv_at_200_hz(mirror_dir: Path) -> None:
    raw = read_recording(mirror_dir / "eegmat" / "Subject00_2.edf")

    out = preprocess(raw, PreprocessConfig.labram())

    assert out.unit == "100uV"
    assert out.sfreq == 200.0
    assert out.signal.dtype == np.float32
    assert out.signal.shape == (19, round(raw.n_samples * 200 / 500))
    assert out.ch_names[:3] == ["FP1", "FP2", "F3"]
    assert out.ch_types == ["eeg"] * 19
    # µV / 100: scalp EEG mostly within [-1, 1]
    assert np.mean(np.abs(out.signal) < 1.0) > 0.95
    assert out.meta["preprocessing"]["config_hash"] == PreprocessConfig.labram().hash()
    assert out.meta["preprocessing"]["notch_applied"] == 50.0


def test_eegmat_vocabulary_mapping_keeps_19_eeg_and_reports_why_ecg_and_a2_a1_dropped(
    mirror_dir: Path,
) -> None:
    out = preprocess(read_recording(mirror_dir / "eegmat" / "Subject01_1.edf"),
                     PreprocessConfig.labram())

    mapping = out.meta["channel_mapping"]
    assert len(mapping["mapped"]) == 19
    assert mapping["mapped"]["EEG Fp1"] == "FP1"
    assert mapping["dropped"] == {
        "EEG A2-A1": "not a name in the LaBraM vocabulary",
        "ECG ECG": "channel type 'ecg' is not EEG",
    }
    assert len(mapping["vocabulary_indices"]) == 19
    assert out.meta["quality"]["problems"] == []


def test_output_matches_a_plain_mne_pipeline_on_the_same_file(mirror_dir: Path) -> None:
    path = mirror_dir / "eegmat" / "Subject02_2.edf"
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    raw.filter(0.1, 75.0, verbose="error").notch_filter(50.0, verbose="error")
    raw.resample(200.0, verbose="error")
    reference = raw.get_data()[:19] * 1e6 / 100  # volts -> 100 µV

    ours = preprocess(read_recording(path), PreprocessConfig.labram()).signal

    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_output_matches_mne_on_a_recording_shorter_than_the_filter() -> None:
    # 10 s at 250 Hz is shorter than the 33-s high-pass kernel: the padding path MNE takes then.
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 20, (3, 2500))
    raw = mne.io.RawArray(signal * 1e-6, mne.create_info(["Fz", "Cz", "Pz"], 250.0, "eeg"),
                          verbose="error")
    raw.filter(0.1, 75.0, verbose="error").notch_filter(50.0, verbose="error")
    raw.resample(200.0, verbose="error")
    recording = Recording(signal=signal.astype(np.float32), ch_names=["Fz", "Cz", "Pz"],
                          ch_types=["eeg"] * 3, sfreq=250.0, unit="uV")

    ours = preprocess(recording, PreprocessConfig.labram()).signal

    np.testing.assert_allclose(ours, raw.get_data() * 1e4, rtol=1e-4, atol=1e-6)


def test_band_pass_keeps_10_hz_and_removes_100_hz_and_dc() -> None:
    recording = sine_recording({"Fp1": (10.0, 50.0, 200.0), "Fp2": (100.0, 50.0, 0.0)})

    out = preprocess(recording, PreprocessConfig.labram())

    kept, removed = out.signal
    assert middle_rms(kept) == pytest.approx(50.0 / np.sqrt(2) / 100, rel=0.03)
    assert abs(kept[len(kept) // 4: -len(kept) // 4].mean()) < 0.01  # the 200 µV offset is gone
    assert middle_rms(removed) < 0.01 * 50.0 / np.sqrt(2) / 100


def test_notch_removes_mains_at_50_hz_and_is_recorded_when_off() -> None:
    recording = sine_recording({"Cz": (50.0, 50.0, 0.0)})
    passed_amplitude = 50.0 / np.sqrt(2) / 100

    notched = preprocess(recording, PreprocessConfig.labram(notch_freq=50.0))
    unnotched = preprocess(recording, PreprocessConfig.labram(notch_freq=None))

    assert middle_rms(notched.signal[0]) < 0.05 * passed_amplitude
    assert middle_rms(unnotched.signal[0]) == pytest.approx(passed_amplitude, rel=0.05)
    assert unnotched.meta["preprocessing"]["notch_applied"] is None


def test_sixty_hz_notch_is_recorded_in_the_output() -> None:
    out = preprocess(sine_recording({"Cz": (60.0, 50.0, 0.0)}), PreprocessConfig.labram(60.0))

    assert out.meta["preprocessing"]["notch_applied"] == 60.0
    assert middle_rms(out.signal[0]) < 0.05 * 50.0 / np.sqrt(2) / 100


def test_per_sample_labels_follow_the_resampling_by_sample_and_hold() -> None:
    recording = sine_recording({"C3": (10.0, 20.0, 0.0)}, seconds=10.0)
    labels = np.repeat([0, 1, 2], [2000, 1500, 1500])  # 4 s, 3 s, 3 s at 500 Hz
    annotations = [Annotation(4.0, 3.0, "one")]

    out = preprocess(recording.replace(labels=labels, annotations=annotations),
                     PreprocessConfig.labram())

    assert out.labels.tolist() == [0] * 800 + [1] * 600 + [2] * 600
    assert out.annotations == annotations


@pytest.mark.parametrize("sfreq", [50.0, 100.0])
def test_labels_upsampled_to_200_hz_keep_their_boundaries_exactly(sfreq: float) -> None:
    # A DREAMS-like hypnogram at 50 or 100 Hz: 5-s stages, the last one 2.5 s.
    recording = sine_recording({"CZ": (5.0, 20.0, 0.0)}, sfreq=sfreq, seconds=42.5)
    seconds = [5.0] * 8 + [2.5]
    stages = np.arange(len(seconds)) % 4
    labels = np.repeat(stages, [int(s * sfreq) for s in seconds])

    out = preprocess(recording.replace(labels=labels),
                     PreprocessConfig(clamp_h_freq=True, min_duration=10.0))

    assert out.sfreq == 200.0 and len(out.labels) == 8500
    assert out.labels.tolist() == np.repeat(stages, [int(s * 200) for s in seconds]).tolist()
    # Every output sample carries the label of the input sample whose period holds its time.
    held = labels[(np.arange(8500) * sfreq / 200.0).astype(np.int64)]
    assert np.array_equal(out.labels, held)


def test_low_sampling_rate_is_accepted_with_clamped_h_freq_when_allowed(mirror_dir: Path) -> None:
    recording = read_recording(mirror_dir / "formats" / "eeglab" / "test_raw_chanloc.set")
    config = PreprocessConfig(clamp_h_freq=True)

    out = preprocess(recording, config)

    assert out.sfreq == 200.0
    assert out.meta["preprocessing"]["h_freq_clamped"] is True
    assert out.meta["preprocessing"]["h_freq_applied"] == pytest.approx(0.45 * 128)
    assert any("h_freq lowered" in w for w in out.meta["warnings"])


def test_emg_recipe_on_myo_data_zscores_each_channel_and_keeps_labels(mirror_dir: Path) -> None:
    recording = read_myo_gesture_file(
        mirror_dir / "myo_gestures" / "right_hand" / "21547-1" / "7.txt")

    out = preprocess(recording, PreprocessConfig.emg())

    assert out.unit == "zscore" and out.sfreq == 200.0
    assert out.ch_names == recording.ch_names and out.ch_types == ["emg"] * 8
    np.testing.assert_allclose(out.signal.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.signal.std(axis=1), 1.0, rtol=1e-3)
    assert np.array_equal(out.labels, recording.labels)
    assert "channel_mapping" not in out.meta


def test_emg_recipe_without_zscore_keeps_device_units(mirror_dir: Path) -> None:
    recording = read_myo_gesture_file(
        mirror_dir / "myo_gestures" / "right_hand" / "21547-1" / "7.txt")

    out = preprocess(recording, PreprocessConfig.emg(zscore=False))

    assert out.unit == "device"
    # 20-95 Hz band: the slow drift is gone, each channel's mean is ~0 counts
    assert np.all(np.abs(out.signal.mean(axis=1)) < 0.5)


def test_config_hash_is_stable_and_keys_every_option() -> None:
    assert PreprocessConfig.labram().hash() == LABRAM_CONFIG_HASH
    assert PreprocessConfig().hash() == PreprocessConfig.labram().hash()
    assert PreprocessConfig.labram(60.0).hash() != LABRAM_CONFIG_HASH
    assert PreprocessConfig(min_duration=10.0).hash() != LABRAM_CONFIG_HASH


def test_config_round_trips_through_its_dictionary() -> None:
    config = PreprocessConfig.emg(zscore=False, notch_freq=60.0)

    restored = PreprocessConfig.from_dict(config.to_dict())

    assert restored == config
    assert restored.hash() == config.hash()
    assert config.to_dict()["pick_types"] == ["emg"]


def test_unknown_config_option_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="highpass"):
        PreprocessConfig.from_dict({"highpass": 0.5})


def test_band_above_the_output_nyquist_is_refused() -> None:
    with pytest.raises(ConfigError, match="h_freq=120"):
        PreprocessConfig(h_freq=120.0, sfreq=200.0)
