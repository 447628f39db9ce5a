"""WindowDataset: windows with stride, label modes, items and lazy memory maps."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.data.corpus import Corpus, CorpusWriter, SourceFile
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.recording import Annotation, Recording
from neurofm.data.windows import WindowDataset
from neurofm.errors import ConfigError


def write(corpus_root: Path, recording_id: str, recording: Recording, label: str | None = None) -> None:
    source = corpus_root / f"{recording_id}.src"
    source.write_bytes(recording_id.encode())
    CorpusWriter(corpus_root, PreprocessConfig.labram()).write(
        recording_id, recording, [SourceFile.of(source)], label=label
    )


def ramp(n_channels: int, n_samples: int, **fields) -> Recording:
    """Signal whose value at (c, t) is c * 10000 + t, so windows can be checked by value."""
    signal = (np.arange(n_channels)[:, None] * 10000 + np.arange(n_samples)[None, :]).astype(np.float32)
    names = ["FP1", "FP2", "CZ", "PZ", "O1"][:n_channels]
    defaults = dict(ch_names=names, ch_types=["eeg"] * n_channels, sfreq=10.0, unit="100uV")
    return Recording(signal, **{**defaults, **fields})


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    write(tmp_path, "a", ramp(3, 95, subject="s1"), label="rest")
    write(tmp_path, "b", ramp(2, 40, subject="s2"), label="task")
    return Corpus(tmp_path)


def test_windows_tile_each_recording_with_stride_and_never_cross_it(corpus: Corpus) -> None:
    dataset = WindowDataset(corpus, window_seconds=2.0, stride_seconds=1.5)
    # a: 95 samples -> starts 0, 15, ..., 75 (6); b: 40 samples -> 0, 15 (2)
    assert len(dataset) == 8
    assert dataset.window_start.tolist() == [0, 15, 30, 45, 60, 75, 0, 15]
    last = dataset[5]
    assert last["signal"].shape == (3, 20)
    assert last["signal"][0, -1].item() == 94
    assert last["recording_id"] == "a" and last["subject"] == "s1"


def test_item_carries_signal_channels_index_and_rate(corpus: Corpus) -> None:
    item = WindowDataset(corpus, window_seconds=2.0)[5]
    assert item["signal"].dtype == torch.float32
    torch.testing.assert_close(item["signal"][1, :3], torch.tensor([10020.0, 10021.0, 10022.0]))
    assert item["channel_index"].dtype == torch.long
    assert item["channel_index"].tolist() == [0, 2]
    assert (item["index"], item["sfreq"], item["recording_id"]) == (5, 10.0, "b")
    assert "label" not in item


def test_recording_labels_are_numbered_in_sorted_order_or_by_label_map(corpus: Corpus) -> None:
    dataset = WindowDataset(corpus, window_seconds=2.0, label_mode="recording")
    assert dataset.classes == ["rest", "task"]
    assert dataset[0]["label"].item() == 0 and dataset[len(dataset) - 1]["label"].item() == 1
    mapped = WindowDataset(corpus, 2.0, label_mode="recording", label_map={"task": 0, "rest": 1})
    assert mapped[0]["label"].item() == 1


def test_recording_mode_refuses_labels_missing_from_the_map(corpus: Corpus) -> None:
    with pytest.raises(ConfigError, match="task"):
        WindowDataset(corpus, 2.0, label_mode="recording", label_map={"rest": 0})


def test_sample_labels_give_windows_inside_one_label_run(tmp_path: Path) -> None:
    labels = np.array([0] * 25 + [-1] * 5 + [2] * 12 + [1] * 30)
    write(tmp_path, "myo", ramp(2, len(labels), labels=labels, ch_types=["emg"] * 2))
    dataset = WindowDataset(tmp_path, window_seconds=1.0, label_mode="samples")
    # runs: 0 over [0, 25) -> 2 windows, -1 skipped, 2 over [30, 42) -> 1, 1 over [42, 72) -> 3
    assert dataset.window_start.tolist() == [0, 10, 30, 42, 52, 62]
    assert [dataset[i]["label"].item() for i in range(len(dataset))] == [0, 0, 2, 1, 1, 1]
    assert dataset.classes == [0, 1, 2]
    assert dataset[0]["channel_index"].tolist() == [0, 1]


def test_annotation_spans_are_tiled_like_sleep_epochs(tmp_path: Path) -> None:
    stages = [Annotation(0.0, 9.0, "W"), Annotation(9.0, 3.0, "N2"), Annotation(12.0, 2.0, "?")]
    write(tmp_path, "psg", ramp(1, 150, annotations=stages))
    dataset = WindowDataset(
        tmp_path, window_seconds=3.0, label_mode="annotations", label_map={"W": 0, "N2": 1}
    )
    assert dataset.window_start.tolist() == [0, 30, 60, 90]
    assert dataset.window_label.tolist() == [0, 0, 0, 1]
    merged = WindowDataset(
        tmp_path, 3.0, label_mode="annotations", label_map={"W": 0, "N2": 1, "?": 1}
    )
    assert merged.classes == ["W", "N2"] and merged.window_label.tolist() == [0, 0, 0, 1]


def test_events_get_one_window_at_their_onset_plus_offset(tmp_path: Path) -> None:
    events = [Annotation(0.1, 0.0, "target"), Annotation(3.0, 0.0, "non"), Annotation(9.5, 0.0, "target")]
    write(tmp_path, "p300", ramp(1, 100, annotations=events))
    dataset = WindowDataset(
        tmp_path, window_seconds=1.0, label_mode="annotations", event_offset_seconds=-0.2
    )
    # the first event would start before the recording and the last would run past its end
    assert dataset.window_start.tolist() == [28]
    assert dataset.classes == ["non", "target"] and dataset.window_label.tolist() == [0]


def test_annotations_outside_the_recording_give_no_window(tmp_path: Path) -> None:
    outside = [Annotation(20.0, 5.0, "W"), Annotation(-5.0, 2.0, "W"), Annotation(8.0, 6.0, "W")]
    write(tmp_path, "psg", ramp(1, 100, annotations=outside))
    dataset = WindowDataset(tmp_path, window_seconds=1.0, label_mode="annotations")
    # only the part of the last span inside the recording, [8 s, 10 s), is tiled
    assert dataset.window_start.tolist() == [80, 90]


def test_recording_ids_restrict_the_windows(corpus: Corpus) -> None:
    dataset = WindowDataset(corpus, window_seconds=2.0, recording_ids=["b"])
    assert dataset.recording_ids == ("b",) and len(dataset) == 2


def test_recordings_shorter_than_a_window_are_listed(corpus: Corpus) -> None:
    dataset = WindowDataset(corpus, window_seconds=5.0)
    assert dataset.window_start.tolist() == [0] and dataset.recordings_without_windows == ("b",)


def test_window_length_must_be_whole_samples(corpus: Corpus) -> None:
    with pytest.raises(ConfigError, match="whole"):
        WindowDataset(corpus, window_seconds=0.25)


def test_mixed_sampling_rates_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "x", ramp(1, 50))
    write(tmp_path, "y", ramp(1, 50, sfreq=20.0))
    with pytest.raises(ConfigError, match="sampling rates"):
        WindowDataset(tmp_path, window_seconds=1.0)


def test_open_memory_maps_are_bounded_and_not_pickled(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path, f"r{i}", ramp(1, 20))
    dataset = WindowDataset(tmp_path, window_seconds=1.0, max_open_arrays=2)
    for i in range(len(dataset)):
        dataset[i]
    assert len(dataset._open) == 2
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(clone._open) == 0
    torch.testing.assert_close(clone[3]["signal"], dataset[3]["signal"])


def test_channel_set_ids_group_equal_montages(corpus: Corpus) -> None:
    dataset = WindowDataset(corpus, window_seconds=2.0)
    groups = dataset.channel_set_ids()
    assert groups.tolist() == [0, 0, 0, 0, 1, 1]
    assert dataset.window_subjects().tolist() == ["s1"] * 4 + ["s2"] * 2


def test_real_eegmat_windows_are_19_channels_by_10_seconds(mirror_dir: Path, tmp_path: Path) -> None:
    from neurofm.data.prepare import prepare_corpus

    report = prepare_corpus([mirror_dir / "eegmat" / "Subject01_2.edf"], tmp_path, progress=False)
    dataset = WindowDataset(report.corpus_dir, window_seconds=10.0, stride_seconds=4.0)
    assert len(dataset) == (62 * 200 - 2000) // 800 + 1
    item = dataset[0]
    assert item["signal"].shape == (19, 2000)
    assert torch.isfinite(item["signal"]).all()
    # 100 uV units: typical EEG amplitude is a few tens of uV, i.e. well below 10 units
    assert item["signal"].abs().median() < 1.0


def test_dataloader_workers_read_the_same_windows(corpus: Corpus) -> None:
    from torch.utils.data import DataLoader

    from neurofm.data.batching import collate_windows

    dataset = WindowDataset(corpus, window_seconds=1.0)
    batches = [
        list(DataLoader(dataset, batch_size=4, collate_fn=collate_windows, num_workers=workers))
        for workers in (0, 2)
    ]
    assert len(batches[0]) == len(batches[1]) > 1
    for single, parallel in zip(*batches):
        torch.testing.assert_close(single["signal"], parallel["signal"])
        assert single["recording_id"] == parallel["recording_id"]
