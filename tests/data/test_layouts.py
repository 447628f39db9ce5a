"""Layout readers: Myo gesture CSV (real), and DREAMS, Sleep-EDF, BI2012, BCI IV layouts.

Myo files and the Sleep-EDF hypnogram are real files from the mirror. DREAMS, Brain Invaders
2012 and BCI Competition IV recordings are not in the mirror: their tests write small files in
each documented layout, filled with seeded random numbers (synthetic, not real data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layout_writers import (
    write_bi2012_mat,
    write_bi2012_npz,
    write_dreams_hypnogram,
    write_dreams_signal,
    write_gdf1,
    write_psg_edf,
)
from neurofm.data.layouts import (
    MYO_GESTURES,
    SLEEP_STAGES,
    read_bci_iv_mi,
    read_bi2012,
    read_dreams_excerpt,
    read_dreams_spindles_excerpt,
    read_myo_gesture_file,
    read_sleep_edf,
)
from neurofm.data.readers import read_annotations_file
from neurofm.data.recording import Annotation
from neurofm.errors import RecordingError

MYO_SESSIONS = [
    "10000-1", "12345-1", "12345-2", "21547-1", "21547-2", "22222-1", "32185-1", "40052-1",
    "45612-1", "45612-2", "54321-1", "54321-2", "66666-1", "78945-1", "78945-2",
]


# --------------------------------------------------------------------------- Myo (real files)


def test_myo_session_files_hold_eight_emg_channels_and_alternating_labels(mirror_dir: Path) -> None:
    session = mirror_dir / "myo_gestures" / "right_hand" / "12345-1"

    for gesture in range(8):
        recording = read_myo_gesture_file(session / f"{gesture}.txt")
        assert recording.signal.shape[0] == 8
        assert recording.ch_types == ["emg"] * 8
        assert recording.unit == "device"
        assert recording.sfreq == 200.0
        assert "nominal" in recording.meta["sfreq_note"]
        assert (recording.subject, recording.session) == ("12345", "1")
        assert recording.meta["label_names"] == list(MYO_GESTURES)
        assert set(np.unique(recording.labels)) == ({0} if gesture == 0 else {0, gesture})
        assert recording.signal.min() >= -128 and recording.signal.max() <= 127
        # about one minute at the nominal rate
        assert 50 <= recording.duration <= 70


@pytest.mark.parametrize("session", MYO_SESSIONS)
def test_every_myo_session_reads_all_eight_gesture_files(mirror_dir: Path, session: str) -> None:
    folder = mirror_dir / "myo_gestures" / "right_hand" / session
    participant, number = session.split("-")

    for gesture in range(8):
        recording = read_myo_gesture_file(folder / f"{gesture}.txt")
        assert recording.subject == participant and recording.session == number
        assert recording.labels is not None and len(recording.labels) == recording.n_samples
        assert set(np.unique(recording.labels)) <= {0, gesture}


def test_myo_participant_and_session_given_explicitly_override_the_folder(mirror_dir: Path) -> None:
    path = mirror_dir / "myo_gestures" / "right_hand" / "45612-2" / "3.txt"

    recording = read_myo_gesture_file(path, participant="p7", session="s9")

    assert (recording.subject, recording.session) == ("p7", "s9")


# --------------------------------------------------------------------------- DREAMS


def test_dreams_excerpt_maps_rk_codes_to_aasm_labels_and_merged_annotations(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sfreq, codes = 50, [5, 5, 3, 2, 2, 1, 0, 4, -1, -2, 5, 5]  # 12 stages of 5 s = 60 s
    write_dreams_signal(tmp_path / "excerpt1.txt", "C3-A1", rng.normal(0, 30, 60 * sfreq))
    write_dreams_hypnogram(tmp_path / "Hypnogram_excerpt1.txt", codes)

    recording = read_dreams_excerpt(tmp_path / "excerpt1.txt", tmp_path / "Hypnogram_excerpt1.txt")

    assert recording.sfreq == 50.0  # derived from 3000 samples / (12 x 5 s)
    assert recording.ch_names == ["C3-A1"] and recording.ch_types == ["eeg"]
    assert recording.unit == "uV"
    assert recording.meta["hypnogram_scoring"] == "R&K"
    assert [(a.onset, a.duration, a.description) for a in recording.annotations] == [
        (0.0, 10.0, "W"), (10.0, 5.0, "N1"), (15.0, 10.0, "N2"), (25.0, 10.0, "N3"),
        (35.0, 5.0, "REM"), (50.0, 10.0, "W"),
    ]
    per_stage = recording.labels.reshape(12, 5 * sfreq)
    assert (per_stage == per_stage[:, :1]).all()
    expected = [0, 0, 1, 2, 2, 3, 3, 4, -1, -1, 0, 0]
    assert per_stage[:, 0].tolist() == expected
    assert SLEEP_STAGES[per_stage[5, 0]] == "N3"


def test_dreams_excerpt_reads_several_signal_files_and_aasm_hypnograms(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_dreams_signal(tmp_path / "eeg.txt", "CZ-A1", rng.normal(0, 30, 2000))
    write_dreams_signal(tmp_path / "eog.txt", "EOG P8-A1", rng.normal(0, 30, 2000))
    write_dreams_hypnogram(tmp_path / "HypnogramAASM_subject1.txt", [5, 3, 2, 1], "HypnogramAASM")

    recording = read_dreams_excerpt(
        [tmp_path / "eeg.txt", tmp_path / "eog.txt"], tmp_path / "HypnogramAASM_subject1.txt",
        sfreq=100.0,
    )

    assert recording.signal.shape == (2, 2000)
    assert recording.ch_types == ["eeg", "eog"]
    assert recording.meta["hypnogram_scoring"] == "AASM"
    assert [a.description for a in recording.annotations] == ["W", "N1", "N2", "N3"]


def test_dreams_subjects_night_reads_its_edf_with_the_text_hypnogram(tmp_path: Path) -> None:
    write_psg_edf(tmp_path / "subject1.edf", seconds=60, sfreq=200.0)
    write_dreams_hypnogram(tmp_path / "HypnogramAASM_subject1.txt", [5] * 4 + [3] * 4 + [4] * 4,
                           "HypnogramAASM")

    recording = read_dreams_excerpt(tmp_path / "subject1.edf",
                                    tmp_path / "HypnogramAASM_subject1.txt")

    assert recording.sfreq == 200.0 and recording.unit == "uV"
    assert recording.ch_types == ["eeg", "eog"]
    assert [a.description for a in recording.annotations] == ["W", "N1", "REM"]
    assert recording.labels[[0, 4000, 8000]].tolist() == [0, 1, 4]


# --------------------------------------------------------------------------- Sleep-EDF


def test_sleep_edf_night_gets_aasm_labels_from_the_real_hypnogram(mirror_dir: Path,
                                                                   tmp_path: Path) -> None:
    hypnogram = mirror_dir / "formats" / "edf" / "SC4001EC-Hypnogram.edf"
    psg = tmp_path / "SC4001E0-PSG.edf"
    write_psg_edf(psg, seconds=86400)  # the hypnogram spans 24 h; 1 Hz keeps the file small

    recording = read_sleep_edf(psg, hypnogram)

    assert (recording.subject, recording.session) == ("00", "1")
    assert recording.ch_types == ["eeg", "eog"]
    assert recording.meta["label_names"] == list(SLEEP_STAGES)
    assert recording.meta["warnings"] == []
    seconds_per_stage: dict[str, float] = {}
    rk = {"Sleep stage W": "W", "Sleep stage 1": "N1", "Sleep stage 2": "N2",
          "Sleep stage 3": "N3", "Sleep stage 4": "N3", "Sleep stage R": "REM"}
    for annotation in read_annotations_file(hypnogram):
        stage = rk.get(annotation.description)
        if stage is not None:
            seconds_per_stage[stage] = seconds_per_stage.get(stage, 0.0) + annotation.duration
    for index, stage in enumerate(SLEEP_STAGES):
        assert (recording.labels == index).sum() == seconds_per_stage.get(stage, 0.0)
    unscored = 86400 - sum(seconds_per_stage.values())
    assert (recording.labels == -1).sum() == unscored > 0


def test_sleep_edf_stages_past_the_end_of_a_short_psg_are_dropped_with_a_warning(
    mirror_dir: Path, tmp_path: Path
) -> None:
    psg = tmp_path / "SC4001E0-PSG.edf"
    write_psg_edf(psg, seconds=31200)

    recording = read_sleep_edf(psg, mirror_dir / "formats" / "edf" / "SC4001EC-Hypnogram.edf")

    assert recording.labels[[100, 30700, 30800]].tolist() == [0, 1, 2]
    assert recording.annotations[0] == Annotation(0.0, 30630.0, "W")
    assert any("dropped" in w and "SC4001EC-Hypnogram.edf" in w
               for w in recording.meta["warnings"])
    assert max(a.onset + a.duration for a in recording.annotations) <= recording.duration


# --------------------------------------------------------------------------- Brain Invaders 2012


def test_bi2012_flashes_become_target_and_nontarget_annotations(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    eeg = rng.normal(0, 10, (17, 1280))
    stim = np.zeros(1280, dtype=np.int64)
    stim[128:131] = 1  # a flash lasts a few samples: one event at its first sample
    stim[256:259] = 2
    stim[384:387] = 1
    names = write_bi2012_npz(tmp_path / "subject_01_training.npz", eeg, stim)

    recording = read_bi2012(tmp_path / "subject_01_training.npz")

    assert recording.ch_names == names and recording.ch_types == ["eeg"] * 17
    assert recording.sfreq == 128.0 and recording.unit == "uV"
    assert (recording.subject, recording.session) == ("01", "training")
    assert recording.annotations == [
        Annotation(1.0, 0.0, "nontarget"), Annotation(2.0, 0.0, "target"),
        Annotation(3.0, 0.0, "nontarget"),
    ]
    np.testing.assert_allclose(recording.signal, eeg.astype(np.float32))


def test_bi2012_signal_stored_in_volts_comes_out_in_microvolts(tmp_path: Path) -> None:
    eeg = np.random.default_rng(3).normal(0, 10e-6, (4, 256))
    write_bi2012_npz(tmp_path / "run.npz", eeg, np.zeros(256, dtype=np.int64), unit="V")

    recording = read_bi2012(tmp_path / "run.npz")

    np.testing.assert_allclose(recording.signal, (eeg * 1e6).astype(np.float32), rtol=1e-5)


def test_bi2012_release_mat_file_reads_with_moabb_codes(tmp_path: Path) -> None:
    eeg = np.random.default_rng(5).normal(0, 10, (17, 640))
    nontarget, target = np.zeros(640), np.zeros(640)
    nontarget[64:67] = 1
    target[192:195] = 2
    path = tmp_path / "training.mat"
    write_bi2012_mat(path, eeg, nontarget, target)

    recording = read_bi2012(path)

    assert recording.ch_names[:3] == ["F7", "F3", "Fz"] and recording.sfreq == 128.0
    assert recording.annotations == [Annotation(0.5, 0.0, "nontarget"),
                                      Annotation(1.5, 0.0, "target")]
    np.testing.assert_allclose(recording.signal, eeg.astype(np.float32), rtol=1e-6)


# --------------------------------------------------------------------------- BCI IV


def test_bci_iv_cues_become_class_annotations_and_eog_channels_are_typed(tmp_path: Path) -> None:
    signal = np.random.default_rng(4).normal(0, 20, (6, 250 * 20))
    names = ["EEG-C3", "EEG-Cz", "EEG-C4", "EOG-left", "EOG-central", "EOG-right"]
    events = [(500, 768), (750, 769), (2500, 768), (2750, 770), (4000, 1023)]
    write_gdf1(tmp_path / "A01T.gdf", signal, names, 250.0, events)

    recording = read_bci_iv_mi(tmp_path / "A01T.gdf")

    assert recording.ch_types == ["eeg", "eeg", "eeg", "eog", "eog", "eog"]
    assert recording.unit == "uV" and recording.sfreq == 250.0
    cues = [(a.onset, a.duration, a.description) for a in recording.annotations
            if a.description in ("left_hand", "right_hand")]
    assert cues == [(3.0, 4.0, "left_hand"), (11.0, 4.0, "right_hand")]
    assert "1023" in [a.description for a in recording.annotations]  # rejected-trial marker kept
    np.testing.assert_allclose(recording.signal, np.round(signal * 10) / 10, atol=1e-3)


# --------------------------------------------------------------------------- DREAMS spindles (real)


def test_dreams_spindles_excerpt6_keeps_its_extra_samples_unscored(mirror_dir: Path) -> None:
    folder = mirror_dir / "dreams_spindles"
    recording = read_dreams_spindles_excerpt(
        folder / "excerpt6.txt", folder / "Hypnogram_excerpt6.txt",
        folder / "Visual_scoring1_excerpt6.txt", sfreq=200.0, derivation="CZ-A1",
    )
    assert recording.signal.shape == (1, 360_140) and recording.unit == "uV"
    assert recording.ch_names == ["CZ-A1"] and recording.ch_types == ["eeg"]
    assert (recording.labels[-140:] == -1).all() and (recording.labels[:360_000] >= 0).all()
    assert any("140 samples (0.7 s) beyond 30 min, kept" in w for w in recording.meta["warnings"])
    spindles = [a for a in recording.annotations if a.description == "spindle_expert1"]
    assert spindles and all(0 <= a.onset < 1800 and 0 < a.duration < 5 for a in spindles)
    assert 15 < float(recording.signal.std()) < 35  # microvolts (README: 19-29 uV)


def test_dreams_spindles_excerpt_with_the_wrong_rate_is_refused_naming_the_file(
    mirror_dir: Path,
) -> None:
    path = mirror_dir / "dreams_spindles" / "excerpt3.txt"  # 50 Hz: 90,000 samples
    with pytest.raises(RecordingError, match=r"excerpt3\.txt: 90000 samples at 100 Hz last 900 s.*30 min"):
        read_dreams_spindles_excerpt(path, sfreq=100.0)
    assert read_dreams_spindles_excerpt(path, sfreq=50.0).duration == 1800.0


def test_dreams_spindles_reader_refuses_unknown_files_and_malformed_scorings(tmp_path: Path) -> None:
    signal = tmp_path / "excerpt9.txt"
    write_dreams_signal(signal, "CZ-A1", np.zeros(1800 * 10))
    other = tmp_path / "notes.txt"
    other.write_text("[Notes]\n1\n")
    with pytest.raises(RecordingError, match=r"notes\.txt: header \[Notes\] is neither"):
        read_dreams_spindles_excerpt(signal, other, sfreq=10.0)
    scoring = tmp_path / "Visual_scoring1_excerpt9.txt"
    scoring.write_text("[vis1_Spindles/CZ-A1]\n 10.0 1.0\n 20.0 x\n")
    with pytest.raises(RecordingError, match=r"Visual_scoring1_excerpt9\.txt, line 3"):
        read_dreams_spindles_excerpt(signal, scoring, sfreq=10.0)
    recording = read_dreams_spindles_excerpt(signal, sfreq=10.0, derivation="C3-A1")
    assert recording.labels is None
    assert any("documented as 'C3-A1'" in w for w in recording.meta["warnings"])
