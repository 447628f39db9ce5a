"""Sleep-EDF Expanded: the registry entry (checksums, nights, pairing), verification of a real
hypnogram from the mirror, and a synthetic night in the release's layout read through the plan."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from neurofm.data.layouts import SLEEP_STAGES, read_sleep_edf
from neurofm.datasets import download
from neurofm.datasets.registry import availability, get_dataset, resolve
from neurofm.errors import DatasetError, RecordingError
from sleep_writers import write_sleep_edf_hypnogram, write_sleep_edf_psg

HYPNOGRAM = "sleep-cassette/SC4001EC-Hypnogram.edf"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFM_CACHE", str(tmp_path_factory.mktemp("cache")))


def test_catalogue_lists_every_night_of_both_studies_with_its_published_checksum() -> None:
    spec = get_dataset("sleep_edf")
    assert len(spec.files) == 398
    assert all(f.sha256 and len(f.sha256) == 64 for f in spec.files)
    assert all(f.url == "https://physionet.org/files/sleep-edfx/1.0.0/" + f.path for f in spec.files)
    assert len(spec.recording_plan) == 197
    studies = [s.subject[:2] for s in spec.recording_plan]
    assert studies.count("SC") == 153 and studies.count("ST") == 44
    assert len(spec.subjects) == 100  # 78 cassette + 22 telemetry subjects, never merged
    for source in spec.recording_plan:
        psg, hypnogram = (p.name for p in source.paths)
        assert psg.endswith("-PSG.edf") and hypnogram.endswith("-Hypnogram.edf")
        assert psg[:6] == hypnogram[:6] and source.session == f"night{psg[5]}"
    first = spec.recording_plan[0]
    assert (first.id, first.subject) == ("sleep_edf/SC4001E0", "SC400")
    assert first.paths[1].as_posix() == HYPNOGRAM


def test_catalogue_checksums_are_the_published_file(mirror_dir: Path) -> None:
    published = download.read_sha256sums(mirror_dir / "sleep_edf" / "PHYSIONET_SHA256SUMS.txt")
    assert {f.path: f.sha256 for f in get_dataset("sleep_edf").files} == published


def test_a_real_release_file_verifies_and_a_damaged_copy_is_refused(mirror_dir: Path,
                                                                    tmp_path: Path) -> None:
    # The formats fixture's hypnogram is the release's SC4001EC-Hypnogram.edf, byte for byte.
    mirror = tmp_path / "mirror"
    target = mirror / "sleep_edf" / HYPNOGRAM
    target.parent.mkdir(parents=True)
    shutil.copyfile(mirror_dir / "formats" / "edf" / "SC4001EC-Hypnogram.edf", target)

    state = availability("sleep_edf", mirror=mirror)
    assert {s.path for s in state.files if s.state == "verified"} == {HYPNOGRAM}
    assert state.status == "partial" and state.count("missing") == 397

    target.write_bytes(target.read_bytes()[:-1] + b"x")
    with pytest.raises(DatasetError, match=r"sleep_edf: 1 file\(s\) fail their checksum.*SC4001EC"):
        resolve("sleep_edf", require="available", mirror=mirror)


def _synthetic_night(root: Path) -> None:
    folder = root / "sleep-cassette"
    folder.mkdir(parents=True)
    write_sleep_edf_psg(folder / "SC4001E0-PSG.edf", seconds=600)
    write_sleep_edf_hypnogram(folder / "SC4001EC-Hypnogram.edf", [
        (0, 120, "Sleep stage W"), (120, 60, "Sleep stage 1"), (180, 90, "Sleep stage 2"),
        (270, 60, "Sleep stage 3"), (330, 60, "Sleep stage 4"), (390, 30, "Movement time"),
        (420, 120, "Sleep stage R"), (540, 60, "Sleep stage ?"),
    ])


def test_synthetic_night_in_the_release_layout_reads_through_the_plan(tmp_path: Path) -> None:
    _synthetic_night(tmp_path)

    sources = get_dataset("sleep_edf").sources(tmp_path)
    assert [s.id for s in sources] == ["sleep_edf/SC4001E0"]
    recording = sources[0].load()

    assert (recording.subject, recording.session) == ("SC400", "night1")
    assert recording.sfreq == 100.0 and recording.unit == "uV"
    assert recording.ch_types == ["eeg", "eeg", "eog", "emg"]
    assert recording.n_samples == 60000
    assert 20 < recording.signal[0].std() < 30  # µV as written
    assert recording.meta["signal_rates_hz"]["EMG submental"] == 1.0
    assert any("EMG submental (1 Hz)" in w for w in recording.meta["warnings"])
    # S3 + S4 -> N3; movement and "?" unscored, counted.
    assert recording.meta["stage_seconds"] == {"W": 120.0, "N1": 60.0, "N2": 90.0, "N3": 120.0,
                                               "REM": 120.0}
    assert recording.meta["unscored_seconds"] == {"Sleep stage ?": 60.0, "Movement time": 30.0}
    per_second = recording.labels[::100]
    assert per_second[[0, 130, 200, 300, 350, 400, 450, 560]].tolist() == [
        0, 1, 2, 3, 3, -1, SLEEP_STAGES.index("REM"), -1]
    assert [a.description for a in recording.annotations] == ["W", "N1", "N2", "N3", "N3", "REM"]


def test_unknown_hypnogram_description_names_the_file(tmp_path: Path) -> None:
    write_sleep_edf_psg(tmp_path / "SC4001E0-PSG.edf", seconds=60)
    write_sleep_edf_hypnogram(tmp_path / "SC4001EC-Hypnogram.edf",
                              [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage 5")])
    with pytest.raises(RecordingError, match=r"SC4001EC-Hypnogram.edf: unknown hypnogram "
                                             r"description\(s\) \['Sleep stage 5'\]"):
        read_sleep_edf(tmp_path / "SC4001E0-PSG.edf", tmp_path / "SC4001EC-Hypnogram.edf")
