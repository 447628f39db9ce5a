"""The corpus store: what a written recording looks like on disk and when read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurofm.data.corpus import Corpus, CorpusWriter, SourceFile, find_corpus_dir, recording_key
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.recording import Annotation, Recording
from neurofm.errors import CorpusError

EEG_NAMES = ["FP1", "FP2", "CZ"]


def eeg_recording(n_samples: int = 400, subject: str = "s1", labels: bool = False) -> Recording:
    rng = np.random.default_rng(n_samples)
    return Recording(
        signal=rng.standard_normal((3, n_samples)).astype(np.float32),
        ch_names=list(EEG_NAMES),
        ch_types=["eeg"] * 3,
        sfreq=200.0,
        unit="100uV",
        annotations=[Annotation(0.5, 1.0, "cue")],
        subject=subject,
        session="1",
        labels=np.arange(n_samples) % 3 if labels else None,
        meta={"warnings": ["flat channel X dropped"], "mains_freq": np.float64(50.0)},
    )


def source_file(tmp_path: Path, name: str = "raw.bin") -> SourceFile:
    path = tmp_path / name
    path.write_bytes(name.encode())
    return SourceFile.of(path)


def test_written_recording_reads_back_as_float32_memory_map(tmp_path: Path) -> None:
    recording = eeg_recording()
    writer = CorpusWriter(tmp_path, PreprocessConfig.labram())
    writer.write("set/rec 1", recording, [source_file(tmp_path)], label="rest")
    corpus = Corpus(tmp_path)
    signal = corpus.signal("set/rec 1")
    assert isinstance(signal, np.memmap) and signal.dtype == np.float32
    np.testing.assert_array_equal(signal, recording.signal)
    assert not signal.flags.writeable


def test_manifest_entry_records_channels_units_subject_labels_and_config(tmp_path: Path) -> None:
    config = PreprocessConfig.labram()
    writer = CorpusWriter(tmp_path, config)
    source = source_file(tmp_path)
    writer.write("rec", eeg_recording(labels=True), [source], label="rest")
    entry = Corpus(tmp_path)["rec"]
    assert entry.channels == tuple(EEG_NAMES)
    assert entry.vocabulary_indices == (0, 2, 41)
    assert (entry.sfreq, entry.unit, entry.n_samples, entry.duration) == (200.0, "100uV", 400, 2.0)
    assert (entry.subject, entry.session, entry.label) == ("s1", "1", "rest")
    assert entry.annotations == (Annotation(0.5, 1.0, "cue"),)
    assert entry.sources == (source,)
    assert entry.quality == ("flat channel X dropped",)
    assert entry.config_hash == config.hash()
    assert Corpus(tmp_path).config == config.to_dict()
    np.testing.assert_array_equal(Corpus(tmp_path).labels("rec"), np.arange(400) % 3)


def test_channels_outside_the_vocabulary_get_no_vocabulary_indices(tmp_path: Path) -> None:
    emg = eeg_recording().replace(ch_names=["emg1", "emg2", "emg3"], ch_types=["emg"] * 3, unit="zscore")
    CorpusWriter(tmp_path, PreprocessConfig.emg()).write("emg", emg, [source_file(tmp_path)])
    assert Corpus(tmp_path)["emg"].vocabulary_indices is None


def test_each_config_writes_its_own_corpus_folder(tmp_path: Path) -> None:
    first = CorpusWriter(tmp_path, PreprocessConfig.labram(notch_freq=50.0))
    second = CorpusWriter(tmp_path, PreprocessConfig.labram(notch_freq=60.0))
    assert first.path != second.path
    assert first.path.name == PreprocessConfig.labram(notch_freq=50.0).hash()
    with pytest.raises(CorpusError, match="holds 2 corpora"):
        find_corpus_dir(tmp_path)
    assert find_corpus_dir(first.path) == first.path


def test_recording_keys_are_filesystem_safe_and_distinct() -> None:
    assert recording_key("a/b") != recording_key("a_b")
    assert "/" not in recording_key("eegmat/Subject00_1")
    assert recording_key("../../etc").startswith("etc-")


def test_missing_corpus_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="neurofm prepare"):
        Corpus(tmp_path / "nowhere")


def test_load_recording_round_trips_the_recording(tmp_path: Path) -> None:
    recording = eeg_recording(labels=True)
    CorpusWriter(tmp_path, PreprocessConfig.labram()).write("rec", recording, [source_file(tmp_path)])
    loaded = Corpus(tmp_path).load_recording("rec")
    np.testing.assert_array_equal(loaded.signal, recording.signal)
    np.testing.assert_array_equal(loaded.labels, recording.labels)
    assert loaded.meta["mains_freq"] == 50.0


def test_summary_counts_hours_subjects_channels_and_labels(tmp_path: Path) -> None:
    writer = CorpusWriter(tmp_path, PreprocessConfig.labram())
    writer.write("a", eeg_recording(subject="s1"), [source_file(tmp_path, "a")], label="rest")
    writer.write("b", eeg_recording(800, subject="s2"), [source_file(tmp_path, "b")], label="task")
    summary = Corpus(tmp_path).summary()
    assert summary["recordings"] == 2
    assert summary["hours"] == pytest.approx(6.0 / 3600)
    assert summary["subjects"] == ["s1", "s2"]
    assert summary["channel_counts"] == {"CZ": 2, "FP1": 2, "FP2": 2}
    assert summary["recording_labels"] == {"rest": 1, "task": 1}
    json.dumps(summary)


def test_verify_finds_an_array_whose_bytes_changed(tmp_path: Path) -> None:
    CorpusWriter(tmp_path, PreprocessConfig.labram()).write("rec", eeg_recording(), [source_file(tmp_path)])
    corpus = Corpus(tmp_path)
    assert corpus.verify() == []
    path = corpus.signal_path("rec")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    problems = Corpus(tmp_path).verify()
    assert [p.path for p in problems] == [path]
