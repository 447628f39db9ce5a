"""The dataset registry: the catalogue, local availability, verified resolution, sources, CLI."""

from __future__ import annotations

import argparse
import pickle
import shutil
from pathlib import Path

import pytest

from neurofm.cli import datasets as datasets_cli
from neurofm.datasets import download
from neurofm.datasets.registry import (
    READ_MYO_GESTURE_FILE,
    READ_RECORDING,
    availability,
    get_dataset,
    list_datasets,
    resolve,
)
from neurofm.errors import DatasetError

MIRROR_DATASETS = ("eegmat", "myo_gestures", "eeglab_sample", "eegbci", "dreams_spindles", "formats")
PARTIAL_IN_MIRROR = ("eegmat", "eegbci", "dreams_spindles")
ABSENT_DATASETS = ("dreams_sleep", "bi2012_p300", "graz_mi")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets an empty download cache, so nothing outside the mirror is ever found."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("NEUROFM_CACHE", str(cache))
    return cache


def _mirror_sums(mirror_dir: Path, folder: str, name: str = "SHA256SUMS") -> dict[str, str]:
    return download.read_sha256sums(mirror_dir / folder / name)


def test_registry_names_the_ten_datasets() -> None:
    assert set(list_datasets()) == {
        "eegmat", "dreams_sleep", "myo_gestures", "bi2012_p300", "graz_mi", "eeglab_sample",
        "eegbci", "dreams_spindles", "sleep_edf", "formats",
    }
    assert [n for n in list_datasets() if get_dataset(n).modality != "eeg"] == ["myo_gestures"]


def test_every_entry_names_its_source_licence_files_and_recordings() -> None:
    for name in list_datasets():
        spec = get_dataset(name)
        assert spec.name == name
        assert spec.homepage.startswith("https://")
        assert spec.license and spec.description and spec.task and spec.citation
        assert spec.checksum_source
        archives = {archive.name for archive in spec.archives}
        for remote in spec.files:
            download.check_relative_path(remote.path, what=name)
            assert (remote.url or "").startswith("https://") or remote.archive in archives
        planned = {p.as_posix() for source in spec.recording_plan for p in source.paths}
        assert planned <= {remote.path for remote in spec.files}
        assert len({source.id for source in spec.recording_plan}) == len(spec.recording_plan)
        assert all(source.id.startswith(f"{name}/") for source in spec.recording_plan)
        assert set(spec.pretraining_exclusions) <= {source.id for source in spec.recording_plan}


def test_unknown_dataset_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'sleep-cassette'.*eegmat"):
        get_dataset("sleep-cassette")


def test_eegmat_lists_all_36_subjects_with_the_physionet_checksums(mirror_dir: Path) -> None:
    spec = get_dataset("eegmat")
    physionet = _mirror_sums(mirror_dir, "eegmat", "PHYSIONET_SHA256SUMS.txt")
    edf_files = [f for f in spec.files if f.path.endswith(".edf")]
    assert len(edf_files) == 72
    assert len(spec.subjects) == 36
    for remote in spec.files:
        assert remote.sha256 == physionet[remote.path]
        assert remote.url == f"https://physionet.org/files/eegmat/1.0.0/{remote.path}"


def test_eegmat_resolves_the_32_mirror_subjects_as_a_partial_dataset(mirror_dir: Path) -> None:
    resolved = resolve("eegmat", require="available")
    assert not resolved.complete
    assert len(resolved.paths) == 65  # 32 subjects x 2 recordings + subject-info.csv
    assert "partial: 32 of 36 subjects" in resolved.note
    assert "neurofm datasets fetch eegmat" in resolved.note
    assert all(path.parent == mirror_dir / "eegmat" for path in resolved.paths.values())
    with pytest.raises(DatasetError, match=r"eegmat is not available locally.*8 file"):
        resolve("eegmat", require="complete")


def test_eegmat_sources_are_labelled_rest_and_arithmetic_per_subject(mirror_dir: Path) -> None:
    sources = resolve("eegmat", require="available").sources()
    assert len(sources) == 64
    first, second = sources[0], sources[1]
    assert (first.id, first.subject, first.label) == ("eegmat/Subject00_1", "Subject00", "rest")
    assert (second.id, second.subject, second.label) == ("eegmat/Subject00_2", "Subject00", "arithmetic")
    assert first.paths == (mirror_dir / "eegmat" / "Subject00_1.edf",)
    assert first.reader == READ_RECORDING
    assert {s.subject for s in sources} == {f"Subject{n:02d}" for n in range(32)}
    assert [s.label for s in sources].count("rest") == 32


def test_myo_sources_are_one_per_gesture_file_with_participant_and_session(mirror_dir: Path) -> None:
    spec = get_dataset("myo_gestures")
    sources = spec.sources(mirror_dir / "myo_gestures")
    assert len(sources) == 120
    source = next(s for s in sources if s.id == "myo_gestures/12345-2/3")
    assert source.paths == (mirror_dir / "myo_gestures" / "right_hand" / "12345-2" / "3.txt",)
    assert (source.subject, source.session) == ("12345", "2")
    assert source.reader == READ_MYO_GESTURE_FILE
    assert source.reader_kwargs == {"participant": "12345", "session": "2"}
    assert len({s.subject for s in sources}) == 10
    assert len({(s.subject, s.session) for s in sources}) == 15


def test_eeglab_sample_is_one_recording_read_through_its_set_header(mirror_dir: Path) -> None:
    (source,) = resolve("eeglab_sample").sources()
    assert source.id == "eeglab_sample/test_raw"
    assert source.paths == (mirror_dir / "eeglab_sample" / "test_raw.set",)


@pytest.mark.parametrize("name", MIRROR_DATASETS)
def test_mirror_files_verify_against_the_mirror_sha256sums(mirror_dir: Path, name: str) -> None:
    spec = get_dataset(name)
    state = availability(name)
    sums = _mirror_sums(mirror_dir, spec.mirror_folder)
    by_path = {status.path: status for status in state.files}
    for relative, digest in sums.items():
        if relative not in by_path:  # the mirror's own notes (eegbci/ORIGINAL_BLOBS.txt)
            continue
        assert spec.file(relative).sha256 == digest
        assert by_path[relative].state == "verified"
        assert by_path[relative].actual == digest
    assert state.status == ("partial" if name in PARTIAL_IN_MIRROR else "complete")


@pytest.mark.parametrize("name", ABSENT_DATASETS)
def test_datasets_missing_from_mirror_are_reported_absent(mirror_dir: Path, name: str) -> None:
    spec = get_dataset(name)
    state = availability(name)
    assert state.status == "absent"
    assert state.summary().startswith("absent: 0 of")
    assert f"neurofm datasets fetch {name}" in state.explanation()
    assert spec.sources(mirror_dir / spec.mirror_folder) == []
    with pytest.raises(DatasetError, match=f"{name} is not available locally"):
        resolve(name, require="available")


def test_eegbci_plans_109_subjects_and_verifies_the_mirror_s001_runs(mirror_dir: Path) -> None:
    spec = get_dataset("eegbci")
    assert len(spec.subjects) == 109 and spec.subjects[0] == "S001" and spec.subjects[-1] == "S109"
    assert len(spec.recording_plan) == 109 * 14
    assert spec.file("S002R01.edf").sha256 is None  # no checksum in neurofm beyond S001
    assert spec.file("S002R01.edf").url == "https://physionet.org/files/eegmmidb/1.0.0/S002/S002R01.edf"
    assert "repaired" in spec.checksum_source and "Attribution" in spec.license
    sources = resolve("eegbci", require="available").sources()
    assert [s.id for s in sources] == [f"eegbci/S001R{run:02d}" for run in range(1, 15)]
    assert {(s.subject, s.session) for s in sources[:2]} == {("S001", "R01"), ("S001", "R02")}
    assert availability("eegbci").subjects_available() == (1, 109)


def test_dreams_spindles_plans_8_excerpts_with_their_documented_rates(mirror_dir: Path) -> None:
    spec = get_dataset("dreams_spindles")
    plan = {s.id: s for s in spec.recording_plan}
    rates = {s.subject: s.reader_kwargs["sfreq"] for s in plan.values() if "sfreq" in s.reader_kwargs}
    assert rates == {"excerpt1": 100.0, "excerpt2": 200.0, "excerpt3": 50.0, **{
        f"excerpt{n}": 200.0 for n in range(4, 9)}}
    assert plan["dreams_spindles/excerpt1"].reader_kwargs["derivation"] == "C3-A1"
    assert "publishes none" in spec.checksum_source and "NoDerivs 3.0" in spec.license
    assert spec.file("excerpt7.txt").sha256 is None
    assert "dreams_spindles/excerpt3_psg" in spec.pretraining_exclusions
    present = {s.id for s in resolve("dreams_spindles", require="available").sources()}
    assert present == {f"dreams_spindles/excerpt{n}" for n in range(1, 7)} | {
        "dreams_spindles/excerpt3_psg"}


def test_dreams_spindles_source_reads_signal_stages_and_both_experts(mirror_dir: Path) -> None:
    source = next(s for s in get_dataset("dreams_spindles").sources() if s.subject == "excerpt1")
    recording = source.load()
    assert (recording.sfreq, recording.n_samples, recording.ch_names) == (100.0, 180_000, ["C3-A1"])
    descriptions = {a.description for a in recording.annotations}
    assert {"spindle_expert1", "spindle_expert2", "spindle_automatic", "N2"} <= descriptions
    assert recording.labels is not None and recording.labels.max() <= 4


def test_absent_source_plans_still_describe_each_recording() -> None:
    dreams = get_dataset("dreams_sleep").recording_plan
    assert len(dreams) == 20
    assert [p.as_posix() for p in dreams[0].paths] == ["subject1.edf", "HypnogramAASM_subject1.txt"]
    bi2012 = get_dataset("bi2012_p300").recording_plan
    assert len(bi2012) == 50 and {s.session for s in bi2012} == {"training", "online"}
    graz = {s.id: s for s in get_dataset("graz_mi").recording_plan}
    assert (graz["graz_mi/A01T"].subject, graz["graz_mi/A01T"].session) == ("A01", "T")
    assert (graz["graz_mi/B0904E"].subject, graz["graz_mi/B0904E"].session) == ("B09", "04E")


def test_a_damaged_mirror_file_is_refused_naming_file_and_checksums(
    mirror_dir: Path, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_dir / "eeglab_sample", mirror / "eeglab_sample")
    damaged = mirror / "eeglab_sample" / "test_raw.fdt"
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    expected = get_dataset("eeglab_sample").file("test_raw.fdt").sha256
    with pytest.raises(DatasetError) as error:
        resolve("eeglab_sample", mirror=mirror, require="available")
    message = str(error.value)
    assert str(damaged) in message and expected in message
    assert download.hash_file(damaged) in message
    assert availability("eeglab_sample", mirror=mirror).status == "partial"


def test_checksums_are_cached_by_path_size_and_mtime(
    mirror_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_dir / "eeglab_sample", mirror / "eeglab_sample")
    hashed: list[Path] = []
    real_hash = download.hash_file
    monkeypatch.setattr(download, "hash_file", lambda path: hashed.append(path) or real_hash(path))
    monkeypatch.setattr(download.ChecksumCache, "_memory", {})

    availability("eeglab_sample", mirror=mirror)
    assert len(hashed) == 2
    monkeypatch.setattr(download.ChecksumCache, "_memory", {})  # a new process: disk cache only
    availability("eeglab_sample", mirror=mirror)
    assert len(hashed) == 2
    header = mirror / "eeglab_sample" / "test_raw.set"
    header.chmod(0o644)
    header.write_bytes(header.read_bytes())  # same bytes, new mtime: hashed again
    availability("eeglab_sample", mirror=mirror)
    assert len(hashed) == 3


def test_resolved_sources_pickle_for_worker_processes() -> None:
    sources = resolve("eegmat", require="available").sources()
    clone = pickle.loads(pickle.dumps(sources[0]))
    assert clone == sources[0]


def test_spec_sources_without_root_uses_the_verified_local_files(mirror_dir: Path) -> None:
    assert len(get_dataset("eegmat").sources()) == len(list((mirror_dir / "eegmat").glob("Subject*.edf")))
    with pytest.raises(DatasetError, match="graz_mi is not available locally"):
        get_dataset("graz_mi").sources()


def test_registry_sources_read_real_recordings(mirror_dir: Path) -> None:
    pytest.importorskip("neurofm.data.layouts")
    pytest.importorskip("neurofm.data.readers")
    eegmat = resolve("eegmat", require="available").sources()[1].load()
    assert eegmat.subject == "Subject00"
    assert eegmat.sfreq == 500 and eegmat.signal.shape[0] == 21
    myo = next(s for s in get_dataset("myo_gestures").sources() if s.id == "myo_gestures/12345-1/3")
    gesture = myo.load()
    assert (gesture.subject, gesture.session) == ("12345", "1")
    assert gesture.signal.shape[0] == 8 and set(gesture.labels.tolist()) == {0, 3}
    (eeglab,) = resolve("eeglab_sample").sources()
    assert eeglab.load().signal.shape[0] == 32


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="neurofm")
    datasets_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["datasets", *argv])
    return args.func(args)


def test_cli_list_shows_complete_partial_and_absent_datasets(
    mirror_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("list") == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and line.split()[0] in list_datasets()}
    assert "partial" in lines["eegmat"] and "32 of 36 subjects" in lines["eegmat"]
    assert "complete" in lines["myo_gestures"] and "complete" in lines["eeglab_sample"]
    for name in ABSENT_DATASETS:
        assert "absent" in lines[name]
    # Each incomplete dataset gets a line saying why and what to do.
    assert "dreams_sleep: 60 file(s) are in neither" in out
    assert "neurofm datasets fetch graz_mi" in out


def test_cli_fetch_offline_names_the_file_and_the_variable(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"eegmat/Subject32_1\.edf.*NEUROFM_OFFLINE=1"):
        _cli("fetch", "eegmat", "--dest", str(tmp_path / "dest"), "--quiet")
    assert not list((tmp_path / "dest").rglob("*.edf"))


def test_cli_fetch_of_a_complete_mirror_dataset_downloads_nothing(
    mirror_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("fetch", "myo_gestures", "--dest", str(tmp_path / "dest"), "--quiet") == 0
    out = capsys.readouterr().out
    assert "myo_gestures: complete, 120 files verified, 120 recordings" in out
    assert not (tmp_path / "dest").exists()
