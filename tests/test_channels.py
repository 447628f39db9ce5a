"""The LaBraM channel vocabulary, label normalisation, and the mapping report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofm.channels import (
    LABRAM_VOCABULARY,
    map_channels,
    normalize_channel_name,
    vocabulary_indices,
)
from neurofm.errors import ChannelError


def test_vocabulary_is_the_official_table_in_order(golden_dir: Path) -> None:
    manifest = json.loads((golden_dir / "manifest.json").read_text())
    assert list(LABRAM_VOCABULARY) == manifest["channel_vocabulary"]
    assert len(LABRAM_VOCABULARY) == 128 == len(set(LABRAM_VOCABULARY))


@pytest.mark.parametrize(
    "label",
    ["Fp1", "FP1", "fp1", "fP1", "EEG Fp1", "eeg fp1", "EEG:Fp1", "EEG_Fp1", "POL Fp1", "Fp1-REF",
     "Fp1-Ref", "EEG FP1-LE", "EEG Fp1-REF", "FP1-A1", "FP1-A2", "Fp1-M1", "FP1 - REF", "Fp1.", " Fp1 "],
)
def test_real_world_spellings_of_fp1_normalise_to_fp1(label: str) -> None:
    assert normalize_channel_name(label) == "FP1"


@pytest.mark.parametrize(
    ("label", "name"),
    [("Cz", "CZ"), ("EEG Cz-LE", "CZ"), ("C3-M2", "C3"), ("EEG F3-A2", "F3"), ("ftt9h", "FTT9h"),
     ("POz", "POZ"), ("EEG A1-REF", "A1"), ("A2-REF", "A2")],
)
def test_other_labels_normalise_to_the_official_spelling(label: str, name: str) -> None:
    assert normalize_channel_name(label) == name


@pytest.mark.parametrize(
    ("label", "name"),
    [("FP1-F7", "FP1-F7"), ("fp1-f7", "FP1-F7"), ("EEG FP1-F7", "FP1-F7"), ("Fp1 - F7", "FP1-F7"),
     ("T7-P7", "T7-P7"), ("P8-O2", "P8-O2")],
)
def test_bipolar_pairs_map_to_the_vocabulary_bipolar_rows(label: str, name: str) -> None:
    assert normalize_channel_name(label) == name


@pytest.mark.parametrize(
    "label",
    ["F3-C3", "F7-FP1", "EEG Fpz-Cz", "EEG Pz-Oz", "A2-A1", "EEG A2-A1", "M1-M2", "ECG ECG",
     "EOG E1", "EEG 000", "STI 014", "Status", "", "   ", "EEG", "FP1-F7-REF", "Fp1-F7-T7"],
)
def test_labels_outside_the_vocabulary_are_not_guessed(label: str) -> None:
    assert normalize_channel_name(label) is None


def test_old_and_new_10_20_names_stay_distinct() -> None:
    for old, new in (("T3", "T7"), ("T4", "T8"), ("T5", "P7"), ("T6", "P8")):
        assert normalize_channel_name(old) == old and normalize_channel_name(new) == new
        assert vocabulary_indices([old]) != vocabulary_indices([new])
    mapping = map_channels(["EEG T3", "EEG T7"])
    assert mapping.names == ["T3", "T7"] and not mapping.dropped


def test_vocabulary_indices_follow_the_official_order() -> None:
    assert vocabulary_indices(["FP1", "EEG Fpz-REF", "P8-O2"]) == [0, 1, 127]


def test_vocabulary_indices_name_the_channel_that_is_not_in_the_vocabulary() -> None:
    with pytest.raises(ChannelError, match="'EEG Fpz-Cz' is not in the LaBraM vocabulary"):
        vocabulary_indices(["Fp1", "EEG Fpz-Cz"])


def test_mapping_reports_mapped_and_dropped_channels_with_reasons() -> None:
    labels = ["EEG Fp1", "EEG Fp2-LE", "ECG ECG", "EEG X9", "Fp1-REF", "EEG A2-A1"]
    types = ["eeg", "eeg", "ecg", "eeg", "eeg", "eeg"]
    mapping = map_channels(labels, types)

    assert mapping.names == ["FP1", "FP2"]
    assert mapping.positions == [0, 1]
    assert mapping.indices == [0, 2]
    reasons = {m.label: m.reason for m in mapping.dropped}
    assert reasons["ECG ECG"] == "channel type 'ecg' is not EEG"
    assert reasons["EEG X9"] == "not a name in the LaBraM vocabulary"
    assert reasons["Fp1-REF"] == "duplicate of 'EEG Fp1' (both map to FP1)"
    assert reasons["EEG A2-A1"] == "not a name in the LaBraM vocabulary"

    report = mapping.report()
    assert report.splitlines()[0] == "2 of 6 channels mapped to the LaBraM vocabulary"
    assert "'EEG Fp2-LE' -> FP2 (vocabulary index 2)" in report
    assert "'EEG X9' -> dropped: not a name in the LaBraM vocabulary" in report
    assert mapping.to_dict() == {
        "mapped": {"EEG Fp1": "FP1", "EEG Fp2-LE": "FP2"},
        "dropped": {label: reasons[label] for label in ("ECG ECG", "EEG X9", "Fp1-REF", "EEG A2-A1")},
    }


def test_duplicates_keep_the_first_label_and_drop_the_rest() -> None:
    mapping = map_channels(["Cz", "EEG CZ-REF", "cz"])
    assert [m.label for m in mapping.kept] == ["Cz"]
    assert [m.position for m in mapping.dropped] == [1, 2]
    assert all("duplicate of 'Cz'" in m.reason for m in mapping.dropped)


def test_mapping_positions_slice_the_signal_rows_that_were_kept() -> None:
    import numpy as np

    signal = np.arange(4)[:, None] * np.ones((4, 3))
    mapping = map_channels(["Status", "EEG C4", "EEG C3", "EEG Cz"], ["stim", "eeg", "eeg", "eeg"])
    kept = signal[mapping.positions]
    assert kept[:, 0].tolist() == [1, 2, 3]
    assert mapping.names == ["C4", "C3", "CZ"]


def test_eegmat_montage_maps_19_scalp_channels_and_drops_the_rest(mirror_dir: Path) -> None:
    import mne

    raw = mne.io.read_raw_edf(mirror_dir / "eegmat" / "Subject00_1.edf", preload=False, verbose="ERROR")
    mapping = map_channels(raw.ch_names)
    assert len(mapping.kept) == 19
    assert {m.label for m in mapping.dropped} == {"EEG A2-A1", "ECG ECG"}
    assert {"FP1", "T3", "T5", "O2", "CZ"} <= set(mapping.names)


@pytest.mark.parametrize(
    ("label", "name"),
    [("Fc5.", "FC5"), ("Cz..", "CZ"), ("Fp1.", "FP1"), ("Afz.", "AFZ"), ("T10.", "T10"),
     ("Iz..", "IZ"), ("Cpz.", "CPZ"), ("Po7.", "PO7"), ("Ft8.", "FT8"), ("Tp7.", "TP7")],
)
def test_eegbci_dotted_labels_normalise_to_the_vocabulary(label: str, name: str) -> None:
    assert normalize_channel_name(label) == name


def test_every_eegbci_channel_maps_onto_its_own_vocabulary_row(mirror_dir: Path) -> None:
    import mne

    raw = mne.io.read_raw_edf(mirror_dir / "eegbci" / "S001R01.edf", preload=False, verbose="ERROR")
    mapping = map_channels(raw.ch_names)
    assert len(raw.ch_names) == 64 and not mapping.dropped
    assert len(set(mapping.indices)) == 64
    assert {"FC5", "CZ", "FP1", "AFZ", "T9", "T10", "IZ"} <= set(mapping.names)
