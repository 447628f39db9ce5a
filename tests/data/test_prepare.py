"""Corpus preparation: real recordings in, resumable and shardable, bad input reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from neurofm.cli import main
from neurofm.data.corpus import Corpus
from neurofm.data.prepare import (
    parse_shard,
    prepare_corpus,
    resolve_source_argument,
    resolve_sources,
    shard_sources,
)
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.recording import Recording
from neurofm.data.sources import RecordingSource
from neurofm.errors import ConfigError, RecordingError


def read_npy_recording(path: Path) -> Recording:
    """Test reader: a [3, T] float array in microvolts at 400 Hz (NaN allowed, to be rejected)."""
    signal = np.load(path).astype(np.float32)
    return Recording(signal, ["Fp1", "Fp2", "Cz"], ["eeg"] * 3, 400.0, "uV", source=path)


def npy_sources(folder: Path, count: int, bad: tuple[int, ...] = ()) -> list[RecordingSource]:
    rng = np.random.default_rng(1)
    sources = []
    for i in range(count):
        signal = rng.standard_normal((3, 1600)) * 20.0
        if i in bad:
            signal[1, 100] = np.nan
        path = folder / f"rec{i}.npy"
        np.save(path, signal)
        sources.append(RecordingSource(f"rec{i}", (path,), read_npy_recording, subject=f"s{i % 2}"))
    return sources


@pytest.fixture
def eegmat_pair(mirror_dir: Path) -> list[Path]:
    return [mirror_dir / "eegmat" / "Subject00_1.edf", mirror_dir / "eegmat" / "Subject00_2.edf"]


def test_real_eegmat_recordings_become_a_200_hz_corpus(eegmat_pair: list[Path], tmp_path: Path) -> None:
    report = prepare_corpus(eegmat_pair, tmp_path, progress=False)
    assert [o.status for o in report.outcomes] == ["prepared", "prepared"]
    corpus = Corpus(report.corpus_dir)
    entry = corpus["Subject00_1"]
    assert (entry.sfreq, entry.unit, entry.n_channels) == (200.0, "100uV", 19)
    assert entry.n_samples == 182 * 200
    assert report.hours == pytest.approx((182 + 62) / 3600)
    assert entry.sources[0].path == str(eegmat_pair[0].resolve())


def test_rerun_skips_finished_recordings(tmp_path: Path) -> None:
    sources = npy_sources(tmp_path, 3)
    prepare_corpus(sources, tmp_path / "out", progress=False)
    report = prepare_corpus(sources, tmp_path / "out", progress=False)
    assert [o.status for o in report.outcomes] == ["skipped"] * 3
    assert report.hours == pytest.approx(3 * 4.0 / 3600)


def test_changed_source_bytes_are_prepared_again(tmp_path: Path) -> None:
    sources = npy_sources(tmp_path, 2)
    prepare_corpus(sources, tmp_path / "out", progress=False)
    np.save(sources[1].paths[0], np.random.default_rng(2).standard_normal((3, 800)) * 20.0)
    report = prepare_corpus(sources, tmp_path / "out", progress=False)
    assert [o.status for o in report.outcomes] == ["skipped", "prepared"]
    assert Corpus(report.corpus_dir)["rec1"].n_samples == 400


def test_bad_recording_is_skipped_with_a_report_line(tmp_path: Path) -> None:
    report = prepare_corpus(npy_sources(tmp_path, 3, bad=(1,)), tmp_path / "out", progress=False)
    assert [o.status for o in report.outcomes] == ["prepared", "failed", "prepared"]
    assert "rec1.npy" in report.failed[0].message and "NaN" in report.failed[0].message
    assert "failed rec1" in report.summary()
    assert Corpus(report.corpus_dir).ids == ["rec0", "rec2"]


def test_strict_stops_at_the_first_bad_recording(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="rec0"):
        prepare_corpus(npy_sources(tmp_path, 2, bad=(0,)), tmp_path / "out", strict=True, progress=False)


def test_shards_split_the_sources_and_fill_one_corpus(tmp_path: Path) -> None:
    sources = npy_sources(tmp_path, 6)
    parts = [shard_sources(sources, (i, 3)) for i in range(3)]
    assert sorted(s.id for part in parts for s in part) == sorted(s.id for s in sources)
    assert shard_sources(list(reversed(sources)), (1, 3)) == list(reversed(parts[1]))
    for i in range(3):
        prepare_corpus(sources, tmp_path / "out", shard=(i, 3), progress=False)
    assert Corpus(tmp_path / "out").ids == sorted(s.id for s in sources)


def test_shard_text_is_parsed_and_checked() -> None:
    assert parse_shard("2/4") == (2, 4)
    for text in ("4/4", "1", "-1/2", "a/b"):
        with pytest.raises(ConfigError, match="shard"):
            parse_shard(text)


def test_two_spawned_worker_processes_write_the_same_corpus_as_one(
    eegmat_pair: list[Path], tmp_path: Path
) -> None:
    one = prepare_corpus(eegmat_pair, tmp_path / "one", progress=False)
    two = prepare_corpus(
        eegmat_pair, tmp_path / "two", workers=2, progress=False, start_method="spawn"
    )
    assert [o.status for o in two.outcomes] == ["prepared", "prepared"]
    for name in ("Subject00_1", "Subject00_2"):
        assert Corpus(one.corpus_dir)[name].array_sha256 == Corpus(two.corpus_dir)[name].array_sha256


def test_folder_sources_are_named_by_their_relative_path(eegmat_pair: list[Path], tmp_path: Path) -> None:
    (tmp_path / "site" / "a").mkdir(parents=True)
    shutil.copy(eegmat_pair[1], tmp_path / "site" / "a" / "x.EDF")
    (tmp_path / "site" / "notes.txt").write_text("not a recording")
    [source] = resolve_source_argument(tmp_path / "site")
    assert source.id == "a/x"


def test_two_sources_with_one_id_are_refused(eegmat_pair: list[Path], tmp_path: Path) -> None:
    (tmp_path / "copy").mkdir()
    shutil.copy(eegmat_pair[0], tmp_path / "copy")
    with pytest.raises(ConfigError, match="Subject00_1"):
        resolve_sources([eegmat_pair[0], tmp_path / "copy" / "Subject00_1.edf"])


def test_unknown_source_argument_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file, folder, glob"):
        resolve_source_argument("no-such-dataset-or-file")


def test_cli_prepare_then_info(eegmat_pair: list[Path], tmp_path: Path, capsys) -> None:
    pattern = str(eegmat_pair[0].parent / "Subject00_[12].edf")
    assert main(["prepare", pattern, "--out", str(tmp_path), "--notch", "50", "--quiet"]) == 0
    assert "2 prepared" in capsys.readouterr().out
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "recordings    2" in out and PreprocessConfig.labram().hash() in out


@pytest.mark.parametrize("command", ["prepare", "info"])
def test_commands_explain_themselves_with_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "corpus" in capsys.readouterr().out


def test_info_reports_damage_with_exit_status_1(eegmat_pair: list[Path], tmp_path: Path, capsys) -> None:
    report = prepare_corpus(eegmat_pair[1:], tmp_path, progress=False)
    next((report.corpus_dir / "manifest").glob("*.json")).unlink()
    assert main(["info", str(tmp_path)]) == 1
    assert "no manifest entry" in capsys.readouterr().out


def test_registered_dataset_name_resolves_to_its_sources(mirror_dir: Path) -> None:
    sources = resolve_source_argument("eegmat")
    assert len(sources) == len(list((mirror_dir / "eegmat").glob("Subject*.edf")))
    assert sources[0].id == "eegmat/Subject00_1" and sources[0].label == "rest"


def test_real_myo_sessions_keep_per_sample_labels_for_sample_windows(
    mirror_dir: Path, tmp_path: Path
) -> None:
    from neurofm.data.windows import WindowDataset

    sources = resolve_source_argument("myo_gestures")[:2]
    report = prepare_corpus(sources, tmp_path, PreprocessConfig.emg(), progress=False)
    assert not report.failed, report.summary()
    corpus = Corpus(report.corpus_dir)
    entry = corpus[sources[0].id]
    assert entry.has_labels and entry.unit == "zscore" and entry.vocabulary_indices is None
    dataset = WindowDataset(corpus, window_seconds=0.5, stride_seconds=0.25, label_mode="samples")
    assert len(dataset) > 0
    for index in range(0, len(dataset), max(1, len(dataset) // 10)):
        position = dataset.window_recording[index]
        start = dataset.window_start[index]
        labels = corpus.labels(dataset.recording_ids[position])[start : start + dataset.window_length]
        assert (labels == dataset.classes[dataset.window_label[index]]).all()


def test_concurrent_shard_jobs_fill_one_corpus(mirror_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    files = [str(mirror_dir / "eegmat" / f"Subject0{i}_2.edf") for i in range(4)]
    job_script = (
        "import sys; from neurofm.data.prepare import prepare_corpus; "
        "prepare_corpus(sys.argv[3:], sys.argv[1], shard=(int(sys.argv[2]), 2), progress=False)"
    )
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", job_script, str(tmp_path), str(i), *files],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for job in jobs:
        assert job.wait(timeout=120) == 0, job.stderr.read().decode()
    assert Corpus(tmp_path).ids == [f"Subject0{i}_2" for i in range(4)]


def test_running_out_of_memory_on_one_recording_is_reported_not_fatal(tmp_path: Path) -> None:
    sources = npy_sources(tmp_path, 2)
    starved = RecordingSource("starved", sources[0].paths, exhausting_reader)
    report = prepare_corpus([starved, sources[1]], tmp_path / "out", progress=False)
    assert [o.status for o in report.outcomes] == ["failed", "prepared"]
    assert "not enough memory" in report.failed[0].message


def exhausting_reader(path: Path) -> Recording:
    raise MemoryError
