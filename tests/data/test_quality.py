"""Quality checks: what each finds, with which severity, on real recordings and damaged copies."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from neurofm.data.layouts import read_myo_gesture_file
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.quality import check_recording
from neurofm.data.readers import read_recording
from neurofm.data.recording import Recording
from neurofm.errors import RecordingError

LABRAM = PreprocessConfig.labram()


@pytest.fixture(scope="module")
def eegmat(mirror_dir: Path) -> Recording:
    """19 scalp channels of a real eegmat recording (62 s, 500 Hz, µV)."""
    recording = read_recording(mirror_dir / "eegmat" / "Subject03_2.edf")
    return recording.replace(signal=recording.signal[:19].copy(), ch_names=recording.ch_names[:19],
                             ch_types=recording.ch_types[:19])


def with_signal(recording: Recording, signal: np.ndarray) -> Recording:
    return recording.replace(signal=signal.astype(np.float32))


@pytest.mark.parametrize("name", ["Subject00_1.edf", "Subject05_2.edf", "Subject11_1.edf"])
def test_real_eegmat_recordings_pass_every_check(mirror_dir: Path, name: str) -> None:
    report = check_recording(read_recording(mirror_dir / "eegmat" / name), LABRAM)

    assert report.problems == []
    assert report.ok


def test_real_myo_recording_passes_the_emg_checks(mirror_dir: Path) -> None:
    recording = read_myo_gesture_file(
        mirror_dir / "myo_gestures" / "right_hand" / "12345-1" / "0.txt")

    report = check_recording(recording, PreprocessConfig.emg())

    assert report.dropped_positions == []
    assert report.ok


def test_nan_samples_are_fatal_and_name_the_channel(eegmat: Recording) -> None:
    signal = eegmat.signal.copy()
    signal[4, 1000:1010] = np.nan

    report = check_recording(with_signal(eegmat, signal), LABRAM)

    assert [p.check for p in report.fatal] == ["non_finite"]
    assert "'EEG F7'" in report.fatal[0].message and "10 NaN/Inf" in report.fatal[0].message
    with pytest.raises(RecordingError, match=r"Subject03_2.edf"):
        report.raise_if_fatal()


def test_infinite_samples_are_fatal(eegmat: Recording) -> None:
    signal = eegmat.signal.copy()
    signal[0, 5] = np.inf

    report = check_recording(with_signal(eegmat, signal), LABRAM)

    assert not report.ok


def test_all_flat_channel_is_dropped(eegmat: Recording) -> None:
    signal = eegmat.signal.copy()
    signal[2] = 12.5  # a disconnected electrode holding a constant offset

    report = check_recording(with_signal(eegmat, signal), LABRAM)

    assert report.dropped_positions == [2]
    assert report.problems[0].check == "flat" and report.problems[0].channel == "EEG F3"
    assert report.ok


def test_mostly_flat_channel_is_dropped_and_briefly_flat_one_kept(eegmat: Recording) -> None:
    signal = eegmat.signal.copy()
    signal[6, : int(0.8 * eegmat.n_samples)] = 0.0  # flat for 80% of the recording
    signal[7, : int(0.2 * eegmat.n_samples)] = 0.0  # flat for 20%: below max_flat_fraction

    report = check_recording(with_signal(eegmat, signal), LABRAM)

    assert report.dropped_positions == [6]
    assert report.problems[0].check == "mostly_flat"
    assert re.search(r"flat in 8\d% of its 1-s segments", report.problems[0].message)


def test_saturated_channel_is_dropped_and_brief_clipping_is_only_a_warning(
    eegmat: Recording,
) -> None:
    signal = eegmat.signal.copy()
    low, high = np.percentile(signal[8], [10, 90])
    signal[8] = np.clip(signal[8], low, high)  # 20% of samples at the rails
    rail = signal[9].max() + 50.0
    signal[9, 3000:3020] = rail  # one 20-sample saturation: 0.06%

    report = check_recording(with_signal(eegmat, signal), LABRAM)

    by_channel = {p.channel: p for p in report.problems}
    assert by_channel["EEG C3"].severity == "drop_channel"
    assert by_channel["EEG C4"].severity == "warning"
    assert report.dropped_positions == [8]


def test_duplicate_and_empty_channel_names_drop_the_extra_channels(eegmat: Recording) -> None:
    names = list(eegmat.ch_names)
    names[5] = names[0]
    names[10] = " "

    report = check_recording(eegmat.replace(ch_names=names), LABRAM)

    checks = {p.check: p for p in report.problems}
    assert checks["duplicate_name"].channel == "EEG Fp1" and "channel 5" in checks[
        "duplicate_name"].message
    assert "channel 10" in checks["empty_name"].message
    assert report.dropped_positions == [5, 10]


def test_recording_shorter_than_min_duration_is_fatal(eegmat: Recording) -> None:
    short = with_signal(eegmat, eegmat.signal[:, :2000])  # 4 s

    report = check_recording(short, PreprocessConfig(min_duration=10.0))

    assert [p.check for p in report.fatal] == ["too_short"]
    assert "4.000 s" in report.fatal[0].message and "10.0 s" in report.fatal[0].message


def test_every_channel_failing_makes_the_recording_fatal(eegmat: Recording) -> None:
    report = check_recording(with_signal(eegmat, np.zeros_like(eegmat.signal)), LABRAM)

    assert [p.check for p in report.fatal] == ["no_channels"]
    assert "is flat" in report.fatal[0].message


def test_report_serialises_to_plain_data(eegmat: Recording) -> None:
    signal = eegmat.signal.copy()
    signal[1] = 0.0

    as_dict = check_recording(with_signal(eegmat, signal), LABRAM).to_dict()

    assert as_dict["dropped_channels"] == ["EEG Fp2"]
    assert as_dict["problems"][0]["severity"] == "drop_channel"
