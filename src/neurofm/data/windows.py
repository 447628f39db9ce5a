"""`WindowDataset`: fixed-length windows over a prepared corpus, as a PyTorch ``Dataset``.

Window arithmetic (``T`` = window length, ``S`` = stride, both in samples; ``n`` = the length of
a span, which is a whole recording or one labelled stretch of it):

- windows start at ``0, S, 2S, ...`` from the span's first sample and end at most at its last,
  so a span holds ``floor((n - T) / S) + 1`` windows when ``n >= T`` and none otherwise;
- with ``S <= T`` every sample before the last window's end is covered, and fewer than ``S``
  samples at the span's end are left out; no window ever crosses a span's boundary.

``label_mode`` picks the spans and labels: ``"none"`` and ``"recording"`` tile whole recordings
(the latter labels windows by the recording's label); ``"samples"`` tiles each run of equal
per-sample label (``-1`` runs skipped), so no window straddles a label change; ``"annotations"``
tiles each annotation span (sleep stages), or, with ``event_offset_seconds``, places one window at
``onset + offset`` per annotation (P300 flashes, MI cues), skipping windows that would leave the
recording; ``"majority"`` tiles whole recordings and labels each window by the per-sample label
most of its samples carry (30-s sleep epochs from 5-s stages: the majority of six), dropping and
counting windows whose most common label is unscored (``-1``) or shared by two labels (a tie).

Only small index arrays live in memory; signals are read from memory maps opened on first use
(a bounded number stay open), so memory does not grow with the corpus.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from neurofm.data.corpus import Corpus, CorpusEntry
from neurofm.errors import ConfigError

LABEL_MODES = ("none", "recording", "samples", "annotations", "majority")


def window_starts(n_samples: int, window: int, stride: int, offset: int = 0) -> np.ndarray:
    """Start samples of the windows that fit in a span of ``n_samples`` starting at ``offset``."""
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return offset + np.arange(0, n_samples - window + 1, stride, dtype=np.int64)


def majority_label(labels: np.ndarray) -> tuple[int | None, str | None]:
    """The label most samples of ``labels [T]`` carry, or ``None`` and why: ``"unscored"`` when
    that label is ``-1``, ``"tied"`` when two labels are equally common."""
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    top = np.flatnonzero(counts == counts.max())
    if len(top) > 1:
        return None, "tied"
    value = int(values[top[0]])
    return (None, "unscored") if value < 0 else (value, None)


def label_runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal value in ``labels [T]``: (starts, ends exclusive, values)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    changes = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], changes]).astype(np.int64)
    ends = np.concatenate([changes, [labels.size]]).astype(np.int64)
    return starts, ends, labels[starts].astype(np.int64)


class WindowDataset(Dataset):
    """Windows of ``window_seconds`` over the recordings of a corpus.

    Args:
        corpus: an open :class:`Corpus` or its path.
        window_seconds: window length; must be a whole number of samples at the corpus rate.
        stride_seconds: distance between window starts (default: ``window_seconds``, no overlap).
        recording_ids: restrict to these recordings (e.g. one part of a :class:`~neurofm.data.
            splits.Split`); default all, in sorted order.
        label_mode: ``"none"``, ``"recording"``, ``"samples"``, ``"annotations"`` or
            ``"majority"`` (see module doc).
        label_map: label value -> class index. ``"recording"``/``"annotations"`` map label strings,
            ``"samples"`` and ``"majority"`` map integers; values absent from the map are left
            out (``"recording"`` raises instead). Default: the sorted distinct values, numbered
            from 0. ``classes[i]`` names class ``i`` (the first label mapped to it).
        event_offset_seconds: ``"annotations"`` mode only: one window per annotation starting this
            many seconds after its onset (negative = before) instead of tiling its span.
        max_open_arrays: memory maps kept open at once.

    Each item is a dict: ``"signal"`` float32 ``[C, T]`` (corpus unit, e.g. 100 uV),
    ``"channel_index"`` long ``[C]`` (vocabulary indices, or positions ``0..C-1`` for corpora
    without a vocabulary mapping such as EMG), ``"label"`` long scalar (unless ``"none"``),
    ``"index"`` (the window's position in this dataset), ``"sfreq"``, ``"recording_id"`` and
    ``"subject"`` (``""`` when unknown).
    """

    def __init__(
        self,
        corpus: Corpus | str | os.PathLike,
        window_seconds: float,
        stride_seconds: float | None = None,
        *,
        recording_ids: Sequence[str] | None = None,
        label_mode: str = "none",
        label_map: Mapping[Hashable, int] | None = None,
        event_offset_seconds: float | None = None,
        max_open_arrays: int = 64,
    ) -> None:
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        if label_mode not in LABEL_MODES:
            raise ConfigError(f"label_mode {label_mode!r} is not one of {LABEL_MODES}")
        if event_offset_seconds is not None and label_mode != "annotations":
            raise ConfigError("event_offset_seconds applies only to label_mode='annotations'")
        ids = sorted(self.corpus.ids) if recording_ids is None else list(recording_ids)
        entries = [self.corpus[i] for i in ids]
        if not entries:
            raise ConfigError(f"no recordings selected from corpus {self.corpus.path}")
        rates = sorted({e.sfreq for e in entries})
        if len(rates) != 1:
            raise ConfigError(
                f"recordings of corpus {self.corpus.path} have sampling rates {rates} Hz; windows "
                "need one rate: prepare with a preprocessing config that resamples"
            )
        self.sfreq = rates[0]
        self.window_length = _whole_samples(window_seconds, self.sfreq, "window_seconds")
        self.stride = (
            self.window_length
            if stride_seconds is None
            else _whole_samples(stride_seconds, self.sfreq, "stride_seconds")
        )
        self.label_mode = label_mode
        #: ``"majority"`` mode: windows left out because their majority label is unscored,
        #: tied, or absent from the label map, by that reason.
        self.dropped_windows: dict[str, int] = (
            {"unscored": 0, "tied": 0, "unmapped": 0} if label_mode == "majority" else {})
        self.recording_ids: tuple[str, ...] = tuple(e.id for e in entries)
        self.subjects: tuple[str, ...] = tuple(e.subject or "" for e in entries)
        self.label_map, self.classes = self._class_table(entries, label_map)
        self._channel_index = [_channel_index(e) for e in entries]
        recording_of, start_of, label_of = self._window_table(entries, event_offset_seconds)
        #: Window table: recording position (into ``recording_ids``), start sample, class index.
        self.window_recording: np.ndarray = recording_of
        self.window_start: np.ndarray = start_of
        self.window_label: np.ndarray | None = None if label_mode == "none" else label_of
        #: Recordings that yield no window (shorter than one, or no usable label span).
        with_windows = set(np.unique(recording_of).tolist())
        self.recordings_without_windows: tuple[str, ...] = tuple(
            rid for i, rid in enumerate(self.recording_ids) if i not in with_windows
        )
        self.max_open_arrays = max_open_arrays
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()

    def _class_table(
        self, entries: list[CorpusEntry], label_map: Mapping[Hashable, int] | None
    ) -> tuple[dict[Hashable, int], list[Hashable]]:
        if self.label_mode == "none":
            return {}, []
        if self.label_mode == "recording":
            unlabelled = [e.id for e in entries if e.label is None]
            if unlabelled:
                raise ConfigError(
                    f"label_mode='recording' but {len(unlabelled)} recording(s) have no label "
                    f"(e.g. {unlabelled[0]!r}); select labelled recordings with recording_ids"
                )
            values: set[Hashable] = {e.label for e in entries}
        elif self.label_mode == "annotations":
            values = {a.description for e in entries for a in e.annotations}
        else:
            values = set()
            for entry in entries:
                labels = self.corpus.labels(entry.id)
                if labels is None:
                    raise ConfigError(
                        f"label_mode={self.label_mode!r} but recording {entry.id!r} has no "
                        "per-sample labels"
                    )
                values.update(int(v) for v in np.unique(labels) if v >= 0)
        if label_map is None:
            classes = sorted(values)  # type: ignore[type-var]
            return {value: i for i, value in enumerate(classes)}, classes
        if self.label_mode == "recording":
            missing = sorted(str(v) for v in values if v not in label_map)
            if missing:
                raise ConfigError(
                    f"recording labels {missing} are not in label_map {dict(label_map)}; add them or "
                    "select other recordings"
                )
        # Several labels may share a class (R&K "N4" -> "N3"); a class is named by its first label.
        names: dict[int, Hashable] = {}
        for value, index in label_map.items():
            names.setdefault(int(index), value)
        return dict(label_map), [names.get(i) for i in range(max(names, default=-1) + 1)]

    def _window_table(
        self, entries: list[CorpusEntry], event_offset_seconds: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        window, stride = self.window_length, self.stride
        recordings: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        labels: list[np.ndarray] = []

        def add(position: int, span_starts: np.ndarray, label: int) -> None:
            recordings.append(np.full(len(span_starts), position, dtype=np.int32))
            starts.append(span_starts)
            labels.append(np.full(len(span_starts), label, dtype=np.int64))

        for position, entry in enumerate(entries):
            n = entry.n_samples
            if self.label_mode in ("none", "recording"):
                label = self.label_map[entry.label] if self.label_mode == "recording" else -1
                add(position, window_starts(n, window, stride), label)
            elif self.label_mode == "samples":
                sample_labels = self.corpus.labels(entry.id)
                assert sample_labels is not None  # checked in __init__
                run_starts, run_ends, values = label_runs(sample_labels)
                for begin, end, value in zip(run_starts, run_ends, values):
                    if value >= 0 and int(value) in self.label_map:
                        span = window_starts(int(end - begin), window, stride, int(begin))
                        add(position, span, self.label_map[int(value)])
            elif self.label_mode == "majority":
                sample_labels = self.corpus.labels(entry.id)
                assert sample_labels is not None  # checked in __init__
                for begin in window_starts(n, window, stride):
                    value, reason = majority_label(sample_labels[begin:begin + window])
                    if value is not None and value not in self.label_map:
                        reason = "unmapped"
                    if reason is not None:
                        self.dropped_windows[reason] += 1
                    else:
                        add(position, np.array([begin], dtype=np.int64), self.label_map[value])
            else:
                for annotation in entry.annotations:
                    if annotation.description not in self.label_map:
                        continue
                    label = self.label_map[annotation.description]
                    if event_offset_seconds is None:
                        begin = round(annotation.onset * self.sfreq)
                        end = min(n, round((annotation.onset + annotation.duration) * self.sfreq))
                        span = window_starts(max(0, end - max(begin, 0)), window, stride, max(begin, 0))
                    else:
                        begin = round((annotation.onset + event_offset_seconds) * self.sfreq)
                        inside = begin >= 0 and begin + window <= n
                        span = np.array([begin] if inside else [], dtype=np.int64)
                    add(position, span, label)
        if not starts:
            return (np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return np.concatenate(recordings), np.concatenate(starts), np.concatenate(labels)

    def __len__(self) -> int:
        return len(self.window_start)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        index %= len(self)
        position = int(self.window_recording[index])
        start = int(self.window_start[index])
        signal = self._array(position)[:, start : start + self.window_length]
        item: dict[str, Any] = {
            "signal": torch.from_numpy(np.array(signal, dtype=np.float32)),
            "channel_index": torch.from_numpy(self._channel_index[position]),
            "index": index,
            "sfreq": self.sfreq,
            "recording_id": self.recording_ids[position],
            "subject": self.subjects[position],
        }
        if self.window_label is not None:
            item["label"] = torch.tensor(int(self.window_label[index]), dtype=torch.long)
        return item

    def _array(self, position: int) -> np.ndarray:
        array = self._open.get(position)
        if array is None:
            array = self.corpus.signal(self.recording_ids[position])
            self._open[position] = array
            if len(self._open) > self.max_open_arrays:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(position)
        return array

    def channel_set_ids(self) -> np.ndarray:
        """Per window, an int identifying its channel set (equal ids = equal ``channel_index``)."""
        ids: dict[tuple[int, ...], int] = {}
        per_recording = np.array(
            [ids.setdefault(tuple(c.tolist()), len(ids)) for c in self._channel_index], dtype=np.int64
        )
        return per_recording[self.window_recording]

    def window_subjects(self) -> np.ndarray:
        """Per window, its recording's subject (``""`` when unknown): groups for cross-validation."""
        return np.asarray(self.subjects, dtype=object)[self.window_recording]

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers open their own memory maps.
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state


def _whole_samples(seconds: float, sfreq: float, option: str) -> int:
    samples = seconds * sfreq
    if samples < 1 or abs(samples - round(samples)) > 1e-6:
        raise ConfigError(
            f"{option}={seconds} s is not a whole, positive number of samples at {sfreq} Hz"
        )
    return int(round(samples))


def _channel_index(entry: CorpusEntry) -> np.ndarray:
    if entry.vocabulary_indices is not None:
        return np.asarray(entry.vocabulary_indices, dtype=np.int64)
    return np.arange(entry.n_channels, dtype=np.int64)


__all__ = ["LABEL_MODES", "WindowDataset", "label_runs", "majority_label", "window_starts"]
