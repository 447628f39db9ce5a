"""Property-based tests of the window arithmetic and the padding collate (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofm.data.batching import collate_windows
from neurofm.data.corpus import CorpusWriter, SourceFile
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.recording import Recording
from neurofm.data.windows import WindowDataset, label_runs, window_starts

lengths = st.integers(min_value=0, max_value=500)
windows = st.integers(min_value=1, max_value=60)


@given(n=lengths, window=windows, stride=windows)
def test_windows_fit_the_span_and_follow_the_documented_count(n: int, window: int, stride: int) -> None:
    starts = window_starts(n, window, stride)
    expected = (n - window) // stride + 1 if n >= window else 0
    assert len(starts) == expected
    assert np.all(starts >= 0) and np.all(starts + window <= n)
    assert np.all(np.diff(starts) == stride)


@given(n=lengths, window=windows, stride=windows)
def test_with_stride_up_to_the_window_every_sample_is_covered_but_a_short_tail(
    n: int, window: int, stride: int
) -> None:
    stride = min(stride, window)
    starts = window_starts(n, window, stride)
    covered = np.zeros(n, dtype=bool)
    for start in starts:
        covered[start : start + window] = True
    if n >= window:
        end = starts[-1] + window
        assert covered[:end].all() and not covered[end:].any()
        assert n - end < stride
    else:
        assert not covered.any()


@given(labels=st.lists(st.integers(min_value=-1, max_value=3), max_size=300))
def test_label_runs_partition_the_labels_into_constant_runs(labels: list[int]) -> None:
    array = np.asarray(labels, dtype=np.int64)
    starts, ends, values = label_runs(array)
    assert np.array_equal(np.repeat(values, ends - starts), array)
    assert np.all(values[1:] != values[:-1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    recordings=st.lists(
        st.lists(st.integers(min_value=-1, max_value=2), min_size=0, max_size=120).map(
            lambda labels: labels or [0]
        ),
        min_size=1,
        max_size=3,
    ),
    window=st.integers(min_value=1, max_value=20),
    stride=st.integers(min_value=1, max_value=20),
)
def test_sample_windows_never_cross_a_recording_or_a_label_change(
    recordings: list[list[int]], window: int, stride: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source = root / "source"
        source.write_bytes(b"x")
        writer = CorpusWriter(root, PreprocessConfig.emg())
        for i, labels in enumerate(recordings):
            n = len(labels)
            # Each sample's value encodes (recording, position), so windows reveal where they read.
            signal = (i * 1000 + np.arange(n, dtype=np.float32))[None, :]
            recording = Recording(signal, ["emg"], ["emg"], 10.0, "zscore", labels=np.array(labels))
            writer.write(f"r{i}", recording, [SourceFile.of(source)])
        dataset = WindowDataset(root, window / 10.0, stride / 10.0, label_mode="samples")
        expected = 0
        for labels in recordings:
            starts, ends, values = label_runs(np.array(labels))
            expected += sum(
                len(window_starts(int(e - s), window, stride)) for s, e, v in zip(starts, ends, values) if v >= 0
            )
        assert len(dataset) == expected
        for index in range(len(dataset)):
            item = dataset[index]
            values = item["signal"][0].numpy().astype(np.int64)
            recording_index, positions = values // 1000, values % 1000
            assert (recording_index == int(item["recording_id"][1:])).all()
            assert np.array_equal(positions, np.arange(positions[0], positions[0] + window))
            labels = np.array(recordings[recording_index[0]])[positions]
            assert (labels == dataset.classes[item["label"].item()]).all()


channel_counts = st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=5)


@given(counts=channel_counts, n_times=st.integers(min_value=1, max_value=16), seed=st.integers(0, 2**16))
def test_collate_keeps_real_positions_and_masks_exactly_the_padding(
    counts: list[int], n_times: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    items = [
        {
            "signal": torch.randn(c, n_times, generator=generator),
            "channel_index": torch.randint(1, 128, (c,), generator=generator),
            "index": i,
        }
        for i, c in enumerate(counts)
    ]
    batch = collate_windows(items)
    widest = max(counts)
    assert batch["signal"].shape == (len(counts), widest, n_times)
    for row, (item, c) in enumerate(zip(items, counts)):
        assert torch.equal(batch["signal"][row, :c], item["signal"])
        assert torch.equal(batch["channel_index"][row, :c], item["channel_index"])
        assert batch["channel_mask"][row].tolist() == [True] * c + [False] * (widest - c)
        assert not batch["signal"][row, c:].any() and not batch["channel_index"][row, c:].any()
