"""A task's labelled windows: registry dataset -> prepared corpus -> windows in memory.

The corpus is prepared with the task's preprocessing recipe (``neurofm.data.prepare``) and cut
into windows by :class:`neurofm.data.windows.WindowDataset` with the task's window spec, so a
baseline and a fine-tuned model see exactly the same windows. Classical baselines need the whole
set as one array; :class:`TaskWindows` holds it together with the subject, recording and onset of
every window.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurofm.data.corpus import Corpus
from neurofm.data.prepare import PreparationReport, prepare_corpus
from neurofm.data.sources import RecordingSource
from neurofm.data.splits import Split
from neurofm.data.windows import WindowDataset
from neurofm.datasets.registry import get_dataset, resolve
from neurofm.errors import ConfigError, DatasetError
from neurofm.tasks.definitions import Task

_log = logging.getLogger(__name__)


@dataclass
class TaskWindows:
    """Every labelled window of a task, in memory.

    Attributes:
        signal: float32 ``[N, C, T]`` in ``unit`` at ``sfreq`` Hz.
        label: int ``[N]`` class ids.
        subject: str ``[N]`` the split unit of each window.
        recording: str ``[N]`` the corpus recording id.
        onset: float ``[N]`` window start in seconds from the recording's start.
        sfreq: sampling rate in Hz.
        unit: the corpus unit (``"100uV"``, ``"zscore"``...).
        channels: the C channel names as the corpus stores them, the same for every window
            (a task with ``WindowSpec.derivation_name`` presents each recording's derivation
            under that one name).
        dropped: windows the task's labelling left out, by reason (``"majority"`` labels:
            unscored, tied, unmapped); empty for other label modes.
    """

    signal: np.ndarray
    label: np.ndarray
    subject: np.ndarray
    recording: np.ndarray
    onset: np.ndarray
    sfreq: float
    unit: str
    channels: tuple[str, ...]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def select(self, mask: np.ndarray) -> TaskWindows:
        """The windows where ``mask [N]`` is true."""
        return TaskWindows(self.signal[mask], self.label[mask], self.subject[mask],
                           self.recording[mask], self.onset[mask], self.sfreq, self.unit,
                           self.channels, dict(self.dropped))

    def context_rows(self, epochs: int, stride_seconds: float) -> np.ndarray:
        """The rows of each window's neighbours: int64 ``[N, epochs]``, row ``i`` holding the
        windows of ``recording[i]`` that start ``-h .. h`` strides from window ``i`` (``h =
        epochs // 2``; column ``h`` is ``i`` itself), -1 where that recording has no window there
        (its edges, a window the labelling dropped). Never a window of another recording.

        Starts are compared in samples (``onset * sfreq``, ``stride_seconds * sfreq``), so the
        match is exact; :class:`ConfigError` for an even or non-positive ``epochs`` or a stride
        that is not a positive whole number of samples.
        """
        if epochs < 1 or epochs % 2 == 0:
            raise ConfigError(f"a context of {epochs} windows: use an odd number >= 1 (the window "
                              "and as many neighbours on either side)")
        stride = stride_seconds * self.sfreq
        if stride <= 0 or abs(stride - round(stride)) > 1e-6:
            raise ConfigError(f"a stride of {stride_seconds} s is not a positive whole number of "
                              f"samples at {self.sfreq:g} Hz; windows of a sequence context lie "
                              "one stride apart")
        start = np.round(self.onset * self.sfreq).astype(np.int64)
        half = epochs // 2
        rows = np.full((len(self), epochs), -1, dtype=np.int64)
        for recording in np.unique(self.recording):
            mine = np.flatnonzero(self.recording == recording)
            order = mine[np.argsort(start[mine], kind="stable")]
            starts = start[order]
            for column, offset in enumerate(range(-half, half + 1)):
                wanted = start[mine] + offset * round(stride)
                found = np.minimum(np.searchsorted(starts, wanted), len(starts) - 1)
                hit = starts[found] == wanted
                rows[mine[hit], column] = order[found[hit]]
        return rows

    def describe(self) -> dict[str, object]:
        """Counts for reports: windows, subjects, recordings, windows per class id."""
        classes, counts = np.unique(self.label, return_counts=True)
        dropped = {"dropped_windows": dict(self.dropped)} if self.dropped else {}
        return {
            "windows": int(len(self)),
            "subjects": int(len(set(self.subject.tolist()))),
            "recordings": int(len(set(self.recording.tolist()))),
            "windows_per_class": {int(c): int(n) for c, n in zip(classes, counts)},
            "window_shape": list(self.signal.shape[1:]),
            "sfreq": self.sfreq,
            "unit": self.unit,
            "channels": list(self.channels),
            **dropped,
        }


def task_sources(
    task: Task,
    *,
    mirror: str | os.PathLike | None = None,
    dataset_dir: str | os.PathLike | None = None,
) -> list[RecordingSource]:
    """The recording sources of ``task``'s dataset that are available locally.

    By default the registry's verified local files (``mirror`` or ``$NEUROFM_MIRROR``, then the
    download cache); with ``dataset_dir``, the files under that folder laid out as the registry
    describes, not checksummed (for data you placed yourself). Raises :class:`DatasetError`
    saying that the task's dataset is not available locally, where it was looked for and how to
    get it, when no recording is found.
    """
    spec = get_dataset(task.dataset)
    if dataset_dir is not None:
        sources = _task_recordings(task, spec.sources(dataset_dir))
        if not sources:
            raise DatasetError(
                f"task {task.name!r}: no recording of dataset {task.dataset!r} is complete under "
                f"{dataset_dir} (expected e.g. {[p.as_posix() for p in spec.recording_plan[0].paths]}"
                f"); check the folder, or fetch it with `neurofm datasets fetch {task.dataset}`"
            )
        return sources
    try:
        resolved = resolve(spec, require="available", mirror=mirror)
    except DatasetError as error:
        raise DatasetError(
            f"task {task.name!r} needs dataset {task.dataset!r}, which is not available "
            f"locally: {error}"
        ) from None
    if resolved.note:
        _log.warning("task %s: %s", task.name, resolved.note)
    return _task_recordings(task, resolved.sources())


def _task_recordings(task: Task, sources: list[RecordingSource]) -> list[RecordingSource]:
    """``sources`` without the recordings the task leaves out (``Task.exclude_recordings``)."""
    return [s for s in sources if s.id not in task.exclude_recordings]


def prepare_task_corpus(
    task: Task,
    corpus_root: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    dataset_dir: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = True,
) -> tuple[Corpus, PreparationReport]:
    """Prepare (or reuse) the corpus of ``task``'s dataset under ``corpus_root``.

    The corpus lands in ``corpus_root/<recipe hash>``; re-running skips recordings already there.
    Recordings that fail preparation are reported in the returned report and left out;
    ``mirror`` and ``dataset_dir`` are as in :func:`task_sources`.
    """
    sources = task_sources(task, mirror=mirror, dataset_dir=dataset_dir)
    report = prepare_corpus(sources, corpus_root, task.preprocess_config(), workers=workers,
                            progress=progress)
    if not report.prepared and not report.skipped:
        first = report.failed[0].message if report.failed else "no sources"
        raise DatasetError(
            f"task {task.name!r}: no recording of {task.dataset!r} could be prepared ({first})"
        )
    return Corpus(report.corpus_dir), report


def task_window_dataset(task: Task, corpus: Corpus | str | os.PathLike,
                        recording_ids: list[str] | None = None) -> WindowDataset:
    """The task's windows over ``corpus`` as a PyTorch dataset (what a fine-tuned model reads)."""
    spec = task.window
    if recording_ids is None and spec.label_mode == "recording":
        corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        recording_ids = sorted(e.id for e in corpus if e.label in spec.label_map)
    return WindowDataset(
        corpus,
        spec.seconds,
        spec.stride_seconds,
        recording_ids=recording_ids,
        label_mode=spec.label_mode,
        label_map=dict(spec.label_map),
        event_offset_seconds=spec.event_offset_seconds,
    )


def task_folds(task: Task, corpus: Corpus | str | os.PathLike) -> list[Split]:
    """The task's subject-wise folds over the recordings of ``corpus`` that the task windows.

    Deterministic given the corpus and the task's split seed, so a baseline and a fine-tuned
    model evaluated separately get the same folds.
    """
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
    return task.split.corpus_folds(corpus, task_window_dataset(task, corpus).recording_ids)


def local_folds(task: Task, *, mirror: str | os.PathLike | None = None) -> list[Split]:
    """The task's folds over the subjects of its dataset available locally, before any corpus is
    prepared: the folds :func:`task_folds` gives once every local recording is prepared (for
    choosing what one fold's pretraining must leave out)."""
    members: dict[str, list[str]] = {}
    for source in task_sources(task, mirror=mirror):
        if source.subject is not None:
            members.setdefault(source.subject, []).append(source.id)
    return task.split.folds(members)


def task_channels(task: Task, recording_channels: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The channel names ``task`` uses, the same in every recording.

    ``recording_channels`` maps recording id -> its channel names. A single-derivation task takes
    the first of its candidates that every recording has (so one channel means one electrode
    throughout); a task with a channel list needs all of them in every recording; otherwise every
    recording must have the same channels in the same order. Names are returned as the first
    recording spells them; :class:`ConfigError` names a recording that does not fit.
    """
    spec = task.window
    ids = list(recording_channels)
    upper = {rid: [c.upper() for c in recording_channels[rid]] for rid in ids}
    first = list(recording_channels[ids[0]])

    def spelled(name: str) -> str:
        return first[upper[ids[0]].index(name.upper())]

    if spec.derivation is not None and spec.derivation_name is not None:
        for rid in ids:
            if not any(name.upper() in upper[rid] for name in spec.derivation):
                raise ConfigError(
                    f"task {task.name!r} uses one EEG derivation per recording, the first of "
                    f"{list(spec.derivation)} it has, but recording {rid!r} has none of them "
                    f"(it has {list(recording_channels[rid])})")
        return (spec.derivation_name,)
    if spec.derivation is not None:
        for name in spec.derivation:
            if all(name.upper() in upper[rid] for rid in ids):
                return (spelled(name),)
        lacking = {name: next(rid for rid in ids if name.upper() not in upper[rid])
                   for name in spec.derivation}
        raise ConfigError(
            f"task {task.name!r} uses one EEG derivation, the first of {list(spec.derivation)} "
            f"that every recording has, but each is missing somewhere (e.g. "
            + ", ".join(f"{name} in {rid!r}" for name, rid in lacking.items()) + ")"
        )
    if spec.channels is not None:
        for rid in ids:
            missing = [name for name in spec.channels if name.upper() not in upper[rid]]
            if missing:
                raise ConfigError(
                    f"task {task.name!r}: recording {rid!r} lacks channel(s) {missing} (it has "
                    f"{list(recording_channels[rid])}); the task uses {list(spec.channels)}"
                )
        return tuple(spelled(name) for name in spec.channels)
    for rid in ids[1:]:
        if upper[rid] != upper[ids[0]]:
            raise ConfigError(
                f"task {task.name!r}: recording {rid!r} has channels "
                f"{list(recording_channels[rid])}, unlike {ids[0]!r} ({first}); a task that keeps "
                "every channel needs one montage"
            )
    return tuple(first)


def load_task_windows(task: Task, corpus: Corpus | str | os.PathLike) -> TaskWindows:
    """Read every labelled window of ``task`` from ``corpus`` into memory.

    Channels are chosen by :func:`task_channels`, so every window has the same channels in the
    same order (a classical feature vector has one slot per channel, and a model's channel
    embedding one electrode per name).
    """
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
    dataset = task_window_dataset(task, corpus)
    if len(dataset) == 0:
        raise DatasetError(f"task {task.name!r}: corpus {corpus.path} yields no labelled windows")
    entries = [corpus[rid] for rid in dataset.recording_ids]
    channels = task_channels(task, {e.id: e.channels for e in entries})
    spec = task.window
    if spec.derivation is not None and spec.derivation_name is not None:
        # Each recording's own first candidate, presented under the one task name.
        picked = [[next(name for name in spec.derivation
                        if name.upper() in [c.upper() for c in e.channels])] for e in entries]
    else:
        picked = [list(channels)] * len(entries)
    rows = [[[c.upper() for c in e.channels].index(name.upper()) for name in names]
            for e, names in zip(entries, picked)]
    units = {e.unit for e in entries}
    if len(units) != 1:
        raise ConfigError(f"task {task.name!r}: recordings in several units {sorted(units)}")
    length = dataset.window_length
    signal = np.empty((len(dataset), len(rows[0]), length), dtype=np.float32)
    for position in range(len(entries)):
        windows = np.flatnonzero(dataset.window_recording == position)
        if windows.size == 0:
            continue
        array = corpus.signal(entries[position].id)[rows[position]]
        for window in windows:
            start = int(dataset.window_start[window])
            signal[window] = array[:, start:start + length]
    return TaskWindows(
        signal=signal,
        label=np.asarray(dataset.window_label, dtype=np.int64),
        subject=np.asarray(dataset.window_subjects(), dtype=str),
        recording=np.asarray(dataset.recording_ids, dtype=str)[dataset.window_recording],
        onset=dataset.window_start / dataset.sfreq,
        sfreq=float(dataset.sfreq),
        unit=units.pop(),
        channels=channels,
        dropped=dict(dataset.dropped_windows),
    )


def default_corpus_root() -> Path:
    """Where ``neurofm evaluate`` keeps prepared task corpora unless told otherwise."""
    return Path(os.environ.get("NEUROFM_CACHE", Path.home() / ".cache" / "neurofm")) / "corpora"
