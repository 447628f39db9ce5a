"""Reading every real recording in the mirror into a Recording with stated units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurofm.data.readers import (
    infer_channel_type,
    keep_annotations_inside,
    read_annotations_file,
    read_recording,
)
from neurofm.data.recording import Annotation
from neurofm.errors import RecordingError

EEGMAT_FILES = [f"Subject{s:02d}_{k}.edf" for s in range(12) for k in (1, 2)]

# file, reader kwargs, channels, rate (Hz), samples, annotations: from formats/README.md and MNE.
FORMAT_FILES = [
    ("edf/test_reduced.edf", {}, 139, 512.0, 3072, 5),
    ("edf/test_utf8_annotations.edf", {}, 11, 200.0, 2000, 2),
    ("bdf/test_bdf_stim_channel.bdf", {}, 4, 500.0, 5000, 0),
    ("gdf/test_1ch.gdf", {}, 1, 150.0, 4500, 0),
    ("brainvision/test_NO.vhdr", {}, 65, 5000.0, 2238, 0),
    ("eeglab/test_raw_chanloc.set", {}, 61, 128.0, 385, 2),
    ("cnt/scan41_short.cnt", {"data_format": "int16"}, 128, 400.0, 3070, 6),
    ("nihon_kohden/MB0400FU.EEG", {}, 25, 200.0, 5800, 2),
    ("persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay", {}, 83, 200.0, 847, 5),
    ("fif/bv_dig_raw.fif", {}, 67, 5000.0, 5000, 2),
]


def test_eegmat_file_is_read_in_microvolts_with_ecg_typed_from_its_label(mirror_dir: Path) -> None:
    recording = read_recording(mirror_dir / "eegmat" / "Subject00_1.edf")

    assert recording.signal.dtype == np.float32
    assert recording.signal.shape == (21, 91000)
    assert recording.sfreq == 500.0
    assert recording.unit == "uV"
    assert recording.ch_names[0] == "EEG Fp1"
    assert recording.ch_types.count("eeg") == 20
    assert recording.ch_types[recording.ch_names.index("ECG ECG")] == "ecg"
    assert recording.meta["inferred_types"] == {"ECG ECG": "ecg"}
    assert recording.meta["original_units"]["EEG Fp1"] == "µV"
    assert recording.meta["reader"] == "mne.io.read_raw_edf"
    # Scalp EEG in microvolts: tens of µV, not volts (1e-5) nor nanovolts.
    eeg_std = recording.signal[:19].std(axis=1)
    assert np.all((eeg_std > 1.0) & (eeg_std < 200.0))


@pytest.mark.parametrize("name", EEGMAT_FILES)
def test_every_eegmat_file_reads_with_21_channels_at_500_hz(mirror_dir: Path, name: str) -> None:
    recording = read_recording(mirror_dir / "eegmat" / name)

    assert recording.n_channels == 21
    assert recording.sfreq == 500.0
    # Background recordings last about 3 minutes (170-188 s), task recordings 62 s.
    if name.endswith("_1.edf"):
        assert 170.0 <= recording.duration <= 188.0
    else:
        assert recording.duration == 62.0
    assert np.isfinite(recording.signal).all()
    assert recording.source == mirror_dir / "eegmat" / name


@pytest.mark.parametrize(("name", "kwargs", "n_channels", "sfreq", "n_samples", "n_annotations"),
                         FORMAT_FILES, ids=[f[0].split("/")[0] + ":" + Path(f[0]).name
                                            for f in FORMAT_FILES])
def test_every_format_file_reads_into_a_recording(
    mirror_dir: Path, name: str, kwargs: dict, n_channels: int, sfreq: float, n_samples: int,
    n_annotations: int,
) -> None:
    recording = read_recording(mirror_dir / "formats" / name, **kwargs)

    assert recording.signal.shape == (n_channels, n_samples)
    assert recording.signal.dtype == np.float32
    assert recording.sfreq == sfreq
    assert recording.unit == "uV"
    assert len(recording.annotations) == n_annotations
    assert all(0 <= a.onset <= recording.duration for a in recording.annotations)
    assert np.isfinite(recording.signal).all()
    assert set(recording.meta) >= {"reader", "original_units", "channel_units", "mains_freq",
                                   "warnings"}


def test_eeglab_sample_reads_32_channels_and_its_154_events(mirror_dir: Path) -> None:
    recording = read_recording(mirror_dir / "eeglab_sample" / "test_raw.set")

    assert recording.signal.shape == (32, 30504)
    assert recording.sfreq == 128.0
    assert len(recording.annotations) == 154
    assert {a.description for a in recording.annotations} == {"square", "rt"}
    assert recording.annotations[0].onset == pytest.approx(1.000068)


def test_utf8_annotation_text_survives_reading(mirror_dir: Path) -> None:
    recording = read_recording(mirror_dir / "formats" / "edf" / "test_utf8_annotations.edf")

    assert [a.description for a in recording.annotations] == ["RECORD START", "仰卧"]
    assert recording.annotations[1].onset == pytest.approx(2.0)
    assert recording.annotations[1].duration == pytest.approx(0.5)


def test_stim_channel_keeps_its_codes_while_eeg_is_converted_to_microvolts(
    mirror_dir: Path,
) -> None:
    recording = read_recording(mirror_dir / "formats" / "bdf" / "test_bdf_stim_channel.bdf")

    assert recording.ch_types == ["eeg", "eeg", "eeg", "stim"]
    assert recording.meta["channel_units"] == ["uV", "uV", "uV", "n/a"]
    status = recording.signal[3]
    assert np.array_equal(status, np.round(status))  # trigger codes, not scaled by 1e6


def test_gdf_channel_labelled_ecg_is_typed_ecg(mirror_dir: Path) -> None:
    recording = read_recording(mirror_dir / "formats" / "gdf" / "test_1ch.gdf")

    assert recording.ch_names == ["ECG"]
    assert recording.ch_types == ["ecg"]


def test_cnt_whose_header_claims_zero_samples_asks_for_the_sample_width(mirror_dir: Path) -> None:
    path = mirror_dir / "formats" / "cnt" / "scan41_short.cnt"

    with pytest.raises(RecordingError, match="data_format") as error:
        read_recording(path)
    assert str(path) in str(error.value)


def test_sleep_edf_hypnogram_reads_as_contiguous_stage_annotations(mirror_dir: Path) -> None:
    annotations = read_annotations_file(mirror_dir / "formats" / "edf" / "SC4001EC-Hypnogram.edf")

    assert len(annotations) == 154
    assert {a.description for a in annotations} <= {
        "Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage 4",
        "Sleep stage R", "Sleep stage ?", "Movement time",
    }
    assert annotations[0] == Annotation(0.0, 30630.0, "Sleep stage W")
    ends = [a.onset + a.duration for a in annotations[:-1]]
    assert np.allclose(ends, [a.onset for a in annotations[1:]])


def test_unsupported_extension_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "recording.xyz"
    path.write_bytes(b"not a recording")

    with pytest.raises(RecordingError, match=r"unsupported file type '.xyz'") as error:
        read_recording(path)
    assert str(path) in str(error.value)


def test_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such file") as error:
        read_recording(tmp_path / "absent.edf")
    assert "absent.edf" in str(error.value)


@pytest.mark.parametrize(
    ("label", "mne_type", "expected"),
    [
        ("ECG ECG", "eeg", "ecg"),
        ("EEG A2-A1", "eeg", "eeg"),
        ("EOG horizontal", "eeg", "eog"),
        ("EMG submental", "eeg", "emg"),
        ("POL EKG1", "eeg", "ecg"),
        ("Status", "eeg", "stim"),
        ("Resp oro-nasal", "eeg", "misc"),
        ("Fp1", "eeg", "eeg"),
        ("ECG", "misc", "misc"),
    ],
)
def test_channel_type_is_inferred_from_the_label_only_for_blanket_eeg(
    label: str, mne_type: str, expected: str
) -> None:
    assert infer_channel_type(label, mne_type) == expected


def test_annotations_outside_the_recording_are_dropped_and_reported() -> None:
    warnings_out: list[str] = []
    annotations = [
        Annotation(1.0, 2.0, "inside"),
        Annotation(9.0, 5.0, "runs past the end"),
        Annotation(12.0, 1.0, "after the end"),
        Annotation(-3.0, 1.0, "before the start"),
    ]

    kept = keep_annotations_inside(annotations, 10.0, "run.edf", warnings_out)

    assert kept == [Annotation(1.0, 2.0, "inside"), Annotation(9.0, 1.0, "runs past the end")]
    assert any("dropped 2 annotation(s)" in line and "run.edf" in line for line in warnings_out)
    assert any("cut 1 annotation(s)" in line for line in warnings_out)
