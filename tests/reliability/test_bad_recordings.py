"""Fault injection at the reading and preprocessing level: every bad input gets a clear message.

Each case copies a real mirror file into ``tmp_path`` (or builds the layout there), damages it,
and asserts the documented behaviour: a :class:`RecordingError` naming the file and the problem,
or a channel dropped with its reason in ``meta["quality"]``/``meta["warnings"]``. The source file
is never modified by a failed read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from layout_writers import (
    write_bi2012_npz,
    write_dreams_hypnogram,
    write_dreams_signal,
    write_gdf1,
    write_psg_edf,
)
from neurofm.data.layouts import (
    read_bci_iv_mi,
    read_bi2012,
    read_dreams_excerpt,
    read_myo_gesture_file,
    read_sleep_edf,
)
from neurofm.data.preprocess import PreprocessConfig, preprocess
from neurofm.data.readers import read_recording
from neurofm.data.recording import Recording
from neurofm.errors import RecordingError

LABRAM = PreprocessConfig.labram()


def copy_from_mirror(mirror_dir: Path, relative: str, tmp_path: Path) -> Path:
    target = tmp_path / Path(relative).name
    shutil.copyfile(mirror_dir / relative, target)
    return target


def damage(path: Path, offset: int, replacement: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset: offset + len(replacement)] = replacement
    path.write_bytes(bytes(data))


def assert_refused(path: Path, *fragments: str, **kwargs) -> None:
    """Reading ``path`` raises RecordingError naming the file and containing every fragment."""
    before = path.read_bytes()
    with pytest.raises(RecordingError) as error:
        read_recording(path, **kwargs)
    message = str(error.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert path.read_bytes() == before


@pytest.fixture
def eegmat_copy(mirror_dir: Path, tmp_path: Path) -> Path:
    return copy_from_mirror(mirror_dir, "eegmat/Subject00_2.edf", tmp_path)


@pytest.fixture
def bdf_copy(mirror_dir: Path, tmp_path: Path) -> Path:
    return copy_from_mirror(mirror_dir, "formats/bdf/test_bdf_stim_channel.bdf", tmp_path)


@pytest.fixture(scope="module")
def eegmat_recording(mirror_dir: Path) -> Recording:
    return read_recording(mirror_dir / "eegmat" / "Subject04_2.edf")


# --------------------------------------------------------------------------- damaged files


def test_edf_truncated_in_its_data_records_is_refused(eegmat_copy: Path) -> None:
    size = eegmat_copy.stat().st_size
    with eegmat_copy.open("r+b") as handle:
        handle.truncate(size // 2)

    assert_refused(eegmat_copy, "truncated EDF file", f"{size // 2} bytes", "download")


def test_edf_truncated_in_its_header_is_refused(eegmat_copy: Path) -> None:
    with eegmat_copy.open("r+b") as handle:
        handle.truncate(100)

    assert_refused(eegmat_copy, "truncated EDF header")


def test_edf_truncated_in_its_signal_descriptions_is_refused(eegmat_copy: Path) -> None:
    with eegmat_copy.open("r+b") as handle:
        handle.truncate(256 + 1000)

    assert_refused(eegmat_copy, "truncated EDF header")


def test_edf_with_a_garbled_record_count_is_refused(eegmat_copy: Path) -> None:
    damage(eegmat_copy, 236, b"#*!?x   ")

    assert_refused(eegmat_copy, "corrupted EDF header", "not a number")


def test_edf_with_a_garbled_version_field_is_refused(eegmat_copy: Path) -> None:
    damage(eegmat_copy, 0, b"\xff\xfe\x00garb")

    assert_refused(eegmat_copy, "corrupted EDF header", "version")


def test_edf_with_a_garbled_physical_range_is_refused(eegmat_copy: Path) -> None:
    n_signals = int(eegmat_copy.read_bytes()[252:256])
    physical_minimum_of_first_signal = 256 + 104 * n_signals
    damage(eegmat_copy, physical_minimum_of_first_signal, b"-3k#.0  ")

    assert_refused(eegmat_copy, "physical minimum is not a number")


def test_edf_with_an_empty_digital_range_is_refused(eegmat_copy: Path) -> None:
    n_signals = int(eegmat_copy.read_bytes()[252:256])
    digital_min, digital_max = 256 + 120 * n_signals, 256 + 128 * n_signals
    damage(eegmat_copy, digital_min, b"0       ")
    damage(eegmat_copy, digital_max, b"0       ")

    assert_refused(eegmat_copy, "'EEG Fp1'", "empty digital or physical range")


def test_edf_with_garbage_in_its_annotation_records_is_refused(eegmat_copy: Path) -> None:
    header_bytes = int(eegmat_copy.read_bytes()[184:192])
    damage(eegmat_copy, header_bytes, b"\xff" * 200_000)  # whole data records, incl. EDF+ TAL

    assert_refused(eegmat_copy, "mne.io.read_raw_edf", "annotations channel")


def test_bdf_truncated_in_its_data_records_is_refused(bdf_copy: Path) -> None:
    with bdf_copy.open("r+b") as handle:
        handle.truncate(bdf_copy.stat().st_size - 1000)

    assert_refused(bdf_copy, "truncated BDF file")


def test_bdf_with_a_garbled_signal_count_is_refused(bdf_copy: Path) -> None:
    damage(bdf_copy, 252, b"zz  ")

    assert_refused(bdf_copy, "corrupted BDF header")


def test_bdf_whose_data_records_were_overwritten_is_refused_at_preprocessing(
    bdf_copy: Path,
) -> None:
    header_bytes = int(bdf_copy.read_bytes()[184:192])
    size = bdf_copy.stat().st_size
    damage(bdf_copy, header_bytes, b"\x00" * (size - header_bytes))  # zeroed, as a failed disk does
    recording = read_recording(bdf_copy)

    with pytest.raises(RecordingError) as error:
        preprocess(recording, PreprocessConfig(map_to_vocabulary=True, min_duration=1.0))
    assert str(bdf_copy) in str(error.value)
    assert "every channel failed a quality check" in str(error.value)
    assert "is flat" in str(error.value)


@pytest.mark.parametrize(
    ("relative", "kwargs"),
    [
        ("formats/gdf/test_1ch.gdf", {}),
        ("formats/fif/bv_dig_raw.fif", {}),
        ("formats/nihon_kohden/MB0400FU.EEG", {}),
        ("formats/cnt/scan41_short.cnt", {"data_format": "int16"}),
    ],
)
def test_other_formats_truncated_in_their_data_are_refused(
    mirror_dir: Path, tmp_path: Path, relative: str, kwargs: dict
) -> None:
    source = mirror_dir / relative
    for companion in source.parent.glob(source.stem + ".*"):  # Nihon Kohden needs its .PNT/.21E
        shutil.copyfile(companion, tmp_path / companion.name)
    path = tmp_path / source.name
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 4)  # inside the samples of every one of these

    assert_refused(path, "download or export it again", **kwargs)


def test_eeglab_data_file_truncated_is_refused(mirror_dir: Path, tmp_path: Path) -> None:
    for suffix in (".set", ".fdt"):
        shutil.copyfile(mirror_dir / "formats" / "eeglab" / f"test_raw_chanloc{suffix}",
                        tmp_path / f"test_raw_chanloc{suffix}")
    data = tmp_path / "test_raw_chanloc.fdt"
    with data.open("r+b") as handle:
        handle.truncate(data.stat().st_size // 2)

    assert_refused(tmp_path / "test_raw_chanloc.set", "Incorrect number of samples")


@pytest.mark.parametrize("name", ["noise.fif", "noise.set", "noise.vhdr", "noise.edf", "noise.gdf"])
def test_random_bytes_under_a_known_extension_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    assert_refused(path, "download or export it again")


# --------------------------------------------------------------------------- bad signals


def test_nan_samples_never_reach_the_model(eegmat_recording: Recording) -> None:
    signal = eegmat_recording.signal.copy()
    signal[3, 100:200] = np.nan

    with pytest.raises(RecordingError) as error:
        preprocess(eegmat_recording.replace(signal=signal), LABRAM)
    assert "Subject04_2.edf" in str(error.value)
    assert "100 NaN/Inf sample(s)" in str(error.value) and "'EEG F4'" in str(error.value)


def test_infinite_samples_never_reach_the_model(eegmat_recording: Recording) -> None:
    signal = eegmat_recording.signal.copy()
    signal[0, -1] = -np.inf

    with pytest.raises(RecordingError, match="NaN/Inf"):
        preprocess(eegmat_recording.replace(signal=signal), LABRAM)


def test_clipped_channel_is_dropped_with_its_reason(eegmat_recording: Recording) -> None:
    signal = eegmat_recording.signal.copy()
    low, high = np.percentile(signal[10], [15, 85])
    signal[10] = np.clip(signal[10], low, high)  # EEG T5 saturated 30% of the time

    out = preprocess(eegmat_recording.replace(signal=signal), LABRAM)

    assert "T5" not in out.ch_names and len(out.ch_names) == 18
    assert out.meta["quality"]["dropped_channels"] == ["EEG T5"]
    assert any("saturated" in w and "Subject04_2.edf" in w for w in out.meta["warnings"])


def test_flat_and_mostly_flat_channels_are_dropped_with_their_reasons(
    eegmat_recording: Recording,
) -> None:
    signal = eegmat_recording.signal.copy()
    signal[0] = 0.0  # EEG Fp1 disconnected
    signal[1, : int(0.7 * signal.shape[1])] = 3.0  # EEG Fp2 flat 70% of the time

    out = preprocess(eegmat_recording.replace(signal=signal), LABRAM)

    assert out.ch_names[:2] == ["F3", "F4"]
    checks = {p["channel"]: p["check"] for p in out.meta["quality"]["problems"]}
    assert checks == {"EEG Fp1": "flat", "EEG Fp2": "mostly_flat"}


def test_duplicate_channel_names_keep_the_first_and_report_the_rest(
    eegmat_recording: Recording,
) -> None:
    names = list(eegmat_recording.ch_names)
    names[2] = "EEG Fp1"

    out = preprocess(eegmat_recording.replace(ch_names=names), LABRAM)

    assert out.ch_names.count("FP1") == 1 and len(out.ch_names) == 18
    assert "duplicate of 'EEG Fp1'" in out.meta["channel_mapping"]["dropped"]["EEG Fp1"]


def test_duplicate_and_empty_names_without_vocabulary_mapping_are_dropped(mirror_dir: Path) -> None:
    recording = read_myo_gesture_file(
        mirror_dir / "myo_gestures" / "right_hand" / "54321-2" / "5.txt")
    names = ["EMG1", "EMG1", "", "EMG4", "EMG5", "EMG6", "EMG7", "EMG8"]

    out = preprocess(recording.replace(ch_names=names), PreprocessConfig.emg())

    assert out.ch_names == ["EMG1", "EMG4", "EMG5", "EMG6", "EMG7", "EMG8"]
    checks = sorted(p["check"] for p in out.meta["quality"]["problems"])
    assert checks == ["duplicate_name", "empty_name"]
    assert sum("54321-2" in w for w in out.meta["warnings"]) == 2


def test_sampling_rate_too_low_for_the_band_is_refused_with_the_fix(mirror_dir: Path) -> None:
    path = mirror_dir / "formats" / "eeglab" / "test_raw_chanloc.set"

    with pytest.raises(RecordingError) as error:
        preprocess(read_recording(path), LABRAM)
    message = str(error.value)
    assert str(path) in message and "128 Hz" in message
    assert "lower h_freq below 64 Hz" in message and "clamp_h_freq=True" in message


def test_recording_shorter_than_a_window_is_refused(eegmat_recording: Recording) -> None:
    short = eegmat_recording.replace(signal=eegmat_recording.signal[:, :1500])  # 3 s

    with pytest.raises(RecordingError) as error:
        preprocess(short, PreprocessConfig(min_duration=4.0))
    assert "Subject04_2.edf" in str(error.value)
    assert "3.000 s long, shorter than the minimum 4.0 s" in str(error.value)


def test_device_units_cannot_be_scaled_to_microvolts(mirror_dir: Path) -> None:
    path = mirror_dir / "myo_gestures" / "right_hand" / "12345-2" / "1.txt"

    with pytest.raises(RecordingError) as error:
        preprocess(read_myo_gesture_file(path), PreprocessConfig(
            pick_types=("emg",), map_to_vocabulary=False, l_freq=20.0, h_freq=95.0))
    assert str(path) in str(error.value) and "'device'" in str(error.value)


def test_recording_without_any_vocabulary_channel_is_refused_with_the_mapping_report(
    mirror_dir: Path,
) -> None:
    path = mirror_dir / "eeglab_sample" / "test_raw.set"

    with pytest.raises(RecordingError) as error:
        preprocess(read_recording(path), LABRAM)
    assert str(path) in str(error.value)
    assert "0 of 32 channels mapped" in str(error.value) and "'EEG 000'" in str(error.value)


# --------------------------------------------------------------------------- annotations, labels


def test_hypnogram_stages_outside_the_psg_are_dropped_with_a_warning(
    mirror_dir: Path, tmp_path: Path
) -> None:
    psg = tmp_path / "SC4001E0-PSG.edf"
    write_psg_edf(psg, seconds=3600)
    hypnogram = mirror_dir / "formats" / "edf" / "SC4001EC-Hypnogram.edf"

    recording = read_sleep_edf(psg, hypnogram)

    assert recording.annotations[-1].onset + recording.annotations[-1].duration <= 3600
    assert any(str(hypnogram) in w and "dropped" in w for w in recording.meta["warnings"])
    assert any("cut 1 annotation" in w for w in recording.meta["warnings"])


def test_cue_running_past_the_end_of_a_run_is_cut_with_a_warning(tmp_path: Path) -> None:
    signal = np.random.default_rng(5).normal(0, 20, (3, 250 * 10))
    path = tmp_path / "B0101T.gdf"
    write_gdf1(path, signal, ["EEG:C3", "EEG:Cz", "EEG:C4"], 250.0, [(2250, 769)])  # cue at 9 s

    recording = read_bci_iv_mi(path)

    assert recording.annotations[-1].description == "left_hand"
    assert recording.annotations[-1].duration == pytest.approx(1.0)
    assert any(str(path) in w and "cut 1 annotation" in w for w in recording.meta["warnings"])


def test_myo_line_missing_its_label_is_refused_naming_file_and_line(
    mirror_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "12345-1"
    folder.mkdir()
    path = folder / "2.txt"
    lines = (mirror_dir / "myo_gestures" / "right_hand" / "12345-1" / "2.txt").read_text()
    lines = lines.splitlines()
    lines[99] = lines[99].rsplit(",", 1)[0]  # 8 values: the label column is one short
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(RecordingError) as error:
        read_myo_gesture_file(path)
    assert f"{path}, line 100: 8 values, expected 9" in str(error.value)


def test_myo_non_numeric_line_is_refused_naming_file_and_line(
    mirror_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "3.txt"
    lines = (mirror_dir / "myo_gestures" / "right_hand" / "78945-2" / "3.txt").read_text()
    lines = lines.splitlines()
    lines[4] = "1,2,x,4,5,6,7,8,3"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(RecordingError, match=r"3\.txt, line 5: non-numeric"):
        read_myo_gesture_file(path)


def test_myo_label_outside_the_gesture_set_is_refused(mirror_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "4.txt"
    lines = (mirror_dir / "myo_gestures" / "right_hand" / "66666-1" / "4.txt").read_text()
    lines = lines.splitlines()
    lines[9] = lines[9].rsplit(",", 1)[0] + ",9"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(RecordingError, match=r"line 10: gesture label 9 is outside 0-7"):
        read_myo_gesture_file(path)


def test_dreams_hypnogram_shorter_than_the_signal_is_refused(tmp_path: Path) -> None:
    write_dreams_signal(tmp_path / "excerpt2.txt", "CZ-A1", np.zeros(200 * 60) + 1.0)
    write_dreams_hypnogram(tmp_path / "Hypnogram_excerpt2.txt", [5] * 10)  # 50 s of 60

    with pytest.raises(RecordingError) as error:
        read_dreams_excerpt(tmp_path / "excerpt2.txt", tmp_path / "Hypnogram_excerpt2.txt",
                            sfreq=200.0)
    assert "Hypnogram_excerpt2.txt" in str(error.value)
    assert "10 stages of 5 s (50 s)" in str(error.value) and "lasts 60 s" in str(error.value)


def test_dreams_lengths_that_imply_no_whole_sampling_rate_are_refused(tmp_path: Path) -> None:
    write_dreams_signal(tmp_path / "excerpt3.txt", "C3-A1", np.ones(1234))
    write_dreams_hypnogram(tmp_path / "Hypnogram_excerpt3.txt", [2, 2, 3])

    with pytest.raises(RecordingError, match="not a whole sampling rate"):
        read_dreams_excerpt(tmp_path / "excerpt3.txt", tmp_path / "Hypnogram_excerpt3.txt")


def test_dreams_signal_files_of_different_lengths_are_refused(tmp_path: Path) -> None:
    write_dreams_signal(tmp_path / "a.txt", "C3-A1", np.ones(1000))
    write_dreams_signal(tmp_path / "b.txt", "O1-A1", np.ones(999))
    write_dreams_hypnogram(tmp_path / "h.txt", [5, 5])

    with pytest.raises(RecordingError, match="equal lengths"):
        read_dreams_excerpt([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "h.txt", 100.0)


def test_bi2012_stimulus_channel_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "subject_02_online.npz"
    write_bi2012_npz(path, np.zeros((17, 1280)), np.zeros(1000, dtype=np.int64))

    with pytest.raises(RecordingError) as error:
        read_bi2012(path)
    assert str(path) in str(error.value) and "stim has 1000 samples but eeg has 1280" in str(
        error.value)


def test_bi2012_unknown_stimulus_codes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    stim = np.zeros(256, dtype=np.int64)
    stim[10] = 7
    write_bi2012_npz(path, np.zeros((3, 256)), stim)

    with pytest.raises(RecordingError, match=r"unknown stimulus code\(s\) \[7\]"):
        read_bi2012(path)
