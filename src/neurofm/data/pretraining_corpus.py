"""An all-EEG pretraining corpus: every local EEG recording of the registry, minus held-out subjects.

:func:`prepare_pretraining_corpus` takes every registered dataset whose modality is EEG, uses the
verified local files of those present (mirror or cache; absent datasets are listed, partial ones
contribute what is there), leaves out

- the subjects of ``exclude_subjects`` (per dataset: an evaluation task's validation and test
  subjects, see :func:`evaluation_exclusions`), and
- the recordings a dataset marks as unfit for pretraining (``DatasetSpec.pretraining_exclusions``:
  synthetic test signals, duplicates...),

and prepares the rest with the LaBraM recipe (0.1-75 Hz band-pass, 50 Hz notch, 200 Hz, 100 uV)
with ``clamp_h_freq`` set, so a 50 Hz or 128 Hz recording is low-passed at 45% of its rate
instead of refused (each corpus entry records the edge applied). Two channel policies:

- ``"vocabulary"`` (LaBraM): only channels that map onto the 128-name vocabulary, renamed to it;
  a recording with none (numbered or ``EEG 000`` labels) fails and is listed.
- ``"all-eeg"`` (Neuro-BERT, one sequence per channel): every channel typed EEG, under its
  source label; the vocabulary index is kept for recordings whose channels all map.

The two policies are two preprocessing configs, hence two corpora (``OUT/<config hash>``).
Recordings a reader cannot read or whose channels are not EEG are failures of the preparation
report, listed with their reason. Recordings without a subject id (the ``formats`` files, the
EEGLAB sample) stay anonymous: pretraining trains on them and never validates on them. The
report (what went in per dataset, what was left out and why) is written beside the corpus as
:data:`REPORT_FILE`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from neurofm.atomic import atomic_write_json
from neurofm.data.corpus import CORPUS_FILE, Corpus
from neurofm.data.prepare import FAILED, PreparationReport, prepare_corpus
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.sources import RecordingSource
from neurofm.datasets.registry import availability, get_dataset, list_datasets, resolve
from neurofm.errors import ConfigError

#: Channel policies: LaBraM's vocabulary channels, or every EEG channel (Neuro-BERT).
ChannelPolicy = Literal["vocabulary", "all-eeg"]
CHANNEL_POLICIES: tuple[str, ...] = ("vocabulary", "all-eeg")
#: The report file written into the corpus folder.
REPORT_FILE = "pretraining_corpus.json"


def pretraining_config(
    channels: ChannelPolicy = "vocabulary", notch_freq: float | None = 50.0
) -> PreprocessConfig:
    """The LaBraM recipe with ``clamp_h_freq=True``; ``"all-eeg"`` keeps unmapped EEG channels."""
    if channels not in CHANNEL_POLICIES:
        raise ConfigError(f"channels={channels!r} is not one of {CHANNEL_POLICIES}")
    return PreprocessConfig(
        notch_freq=notch_freq, clamp_h_freq=True, map_to_vocabulary=channels == "vocabulary"
    )


def evaluation_exclusions(task: str, split: str, fold: int | None = None,
                          mirror: str | os.PathLike | None = None) -> dict[str, set[str]]:
    """``{dataset: subjects}`` that validate or test under ``split`` of the evaluation ``task``;
    with ``fold``, only those of that fold (over the subjects available locally, see
    :func:`neurofm.tasks.data.local_folds`), for pretraining one checkpoint per fold."""
    from neurofm.tasks.data import local_folds
    from neurofm.tasks.definitions import get_task

    definition = get_task(task)
    if fold is None:
        return {definition.dataset: set(definition.evaluation_subjects(split))}
    folds = local_folds(definition.using_split(split), mirror=mirror)
    if not 0 <= fold < len(folds):
        raise ConfigError(f"--fold {fold}: split {split!r} of task {task!r} has {len(folds)} "
                          f"fold(s) here, numbered 0-{len(folds) - 1}")
    chosen = folds[fold]
    return {definition.dataset: set(chosen.groups["val"]) | set(chosen.groups["test"])}


@dataclass(frozen=True)
class LeftOut:
    """A planned recording kept out of the corpus before reading, and why."""

    id: str
    dataset: str
    subject: str | None
    reason: str


@dataclass(frozen=True)
class DatasetShare:
    """What one dataset put into the corpus (``hours`` of prepared signal at 200 Hz)."""

    name: str
    local: str
    recordings: int
    failed: int
    subjects: tuple[str, ...]
    anonymous_recordings: int
    hours: float


@dataclass(frozen=True)
class PretrainingSelection:
    """The sources of an all-EEG corpus, the dataset of each, and what was left out."""

    sources: tuple[RecordingSource, ...]
    dataset_of: Mapping[str, str]
    left_out: tuple[LeftOut, ...]
    local: Mapping[str, str]
    absent: tuple[str, ...]
    absent_excluded: Mapping[str, tuple[str, ...]]


@dataclass
class PretrainingCorpusReport:
    """What an all-EEG corpus holds and what was kept out: per dataset, per recording."""

    preparation: PreparationReport
    channels: str
    exclusion: str
    exclude_subjects: dict[str, list[str]]
    selection: PretrainingSelection
    datasets: list[DatasetShare] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return self.preparation.hours

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to :data:`REPORT_FILE`."""
        selection = self.selection
        return {
            "corpus_dir": str(self.preparation.corpus_dir),
            "config_hash": self.preparation.config_hash,
            "channels": self.channels,
            "exclusion": self.exclusion,
            "exclude_subjects": self.exclude_subjects,
            "excluded_subjects_not_present": {
                name: list(subjects) for name, subjects in selection.absent_excluded.items()
            },
            "hours": self.hours,
            "datasets": [
                asdict(share) | {"subjects": list(share.subjects)} for share in self.datasets
            ],
            "absent_datasets": list(selection.absent),
            "left_out": [asdict(item) for item in selection.left_out],
            "failed": [
                {"id": o.id, "dataset": selection.dataset_of[o.id], "reason": o.message}
                for o in self.preparation.failed
            ],
            "preparation": self.preparation.to_dict(),
        }

    def summary(self) -> str:
        """Totals, one line per dataset, then what was left out or failed, with the reasons."""
        lines = [self.preparation.summary().splitlines()[0],
                 f"channels: {self.channels}; excluded: {self.exclusion}"]
        for share in self.datasets:
            anonymous = (f", {share.anonymous_recordings} without subject id"
                         if share.anonymous_recordings else "")
            lines.append(
                f"  {share.name}: {share.recordings} recordings, {len(share.subjects)} subjects"
                f"{anonymous}, {share.hours:.3f} h ({share.failed} failed; local {share.local})"
            )
        if self.selection.absent:
            lines.append("  absent (no local file): " + ", ".join(self.selection.absent))
        for name, subjects in self.selection.absent_excluded.items():
            lines.append(f"  excluded {name} subjects not present anyway: {', '.join(subjects)}")
        left_out = self.selection.left_out
        by_subject = [
            i for i in left_out if i.subject in self.exclude_subjects.get(i.dataset, ())
        ]
        if by_subject:
            held_out = ", ".join(sorted({f"{i.dataset}/{i.subject}" for i in by_subject}))
            lines.append(f"left out {len(by_subject)} recordings of excluded subjects: {held_out}")
        lines += [f"left out {i.id}: {i.reason}" for i in left_out if i not in by_subject]
        lines += self.preparation.summary().splitlines()[1:]
        return "\n".join(lines)


def _checked_exclusions(exclude_subjects: Mapping[str, Collection[str]]) -> dict[str, set[str]]:
    """``exclude_subjects`` with every dataset and subject checked against the registry."""
    checked: dict[str, set[str]] = {}
    for name, subjects in exclude_subjects.items():
        known = set(get_dataset(name).subjects)
        unknown = sorted(set(subjects) - known)
        if unknown:
            raise ConfigError(
                f"excluded subject(s) {unknown} are not subjects of dataset {name!r} (it has "
                f"{len(known)}, e.g. {sorted(known)[:3]}); check the exclusion, or nothing would "
                "be held out"
            )
        checked[name] = set(subjects)
    return checked


def collect_pretraining_sources(
    exclude_subjects: Mapping[str, Collection[str]] | None = None,
    *,
    datasets: Sequence[str] | None = None,
    mirror: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
) -> PretrainingSelection:
    """The verified local recordings of every EEG dataset (or of ``datasets``), minus exclusions.

    Raises:
        ConfigError: for an excluded subject the dataset does not have, or a non-EEG dataset.
        DatasetError: for an unknown dataset or a local file that fails its checksum.
    """
    excluded = _checked_exclusions(exclude_subjects or {})
    names = list(datasets) if datasets is not None else [
        n for n in list_datasets() if get_dataset(n).modality == "eeg"
    ]
    sources: list[RecordingSource] = []
    dataset_of: dict[str, str] = {}
    left_out: list[LeftOut] = []
    local: dict[str, str] = {}
    absent: list[str] = []
    absent_excluded: dict[str, tuple[str, ...]] = {}
    for name in names:
        spec = get_dataset(name)
        if spec.modality != "eeg":
            raise ConfigError(f"dataset {name!r} records {spec.modality}, not EEG; leave it out")
        state = availability(spec, mirror=mirror, cache=cache)
        local[name] = state.summary()
        if state.status == "absent":
            absent.append(name)
            continue
        present = resolve(spec, require="available", mirror=mirror, cache=cache).sources()
        held_out = excluded.get(name, set())
        present_subjects = {s.subject for s in present}
        if held_out - present_subjects:
            absent_excluded[name] = tuple(sorted(held_out - present_subjects))
        for source in present:
            if source.subject in held_out:
                reason = f"excluded subject {source.subject}"
            elif source.id in spec.pretraining_exclusions:
                reason = spec.pretraining_exclusions[source.id]
            else:
                sources.append(source)
                dataset_of[source.id] = name
                continue
            left_out.append(LeftOut(source.id, name, source.subject, reason))
            dataset_of[source.id] = name
    return PretrainingSelection(
        tuple(sources), dataset_of, tuple(left_out), local, tuple(absent), absent_excluded
    )


def _refuse_held_out_in_existing_corpus(folder: Path, selection: PretrainingSelection) -> None:
    """A corpus folder filled under another exclusion may hold subjects now held out: refuse it."""
    if not (folder / CORPUS_FILE).is_file():
        return
    held_out = {item.id for item in selection.left_out}
    present = sorted(held_out & set(Corpus(folder, allow_incomplete=True).ids))
    if present:
        raise ConfigError(
            f"corpus {folder} already holds {len(present)} recording(s) this run leaves out (e.g. "
            f"{present[0]}), prepared under another exclusion; pretraining on it would use them. "
            "Prepare into a new --out folder"
        )


def _shares(selection: PretrainingSelection, preparation: PreparationReport) -> list[DatasetShare]:
    subject_of = {s.id: s.subject for s in selection.sources}
    shares = []
    for name, local in selection.local.items():
        if name in selection.absent:
            continue
        outcomes = [o for o in preparation.outcomes if selection.dataset_of[o.id] == name]
        if not outcomes and preparation.shard is not None:
            continue
        kept = [o for o in outcomes if o.status != FAILED]
        subjects = sorted({s for o in kept if (s := subject_of[o.id]) is not None})
        shares.append(
            DatasetShare(
                name=name, local=local, recordings=len(kept), failed=len(outcomes) - len(kept),
                subjects=tuple(subjects),
                anonymous_recordings=sum(subject_of[o.id] is None for o in kept),
                hours=sum(o.hours for o in kept),
            )
        )
    return shares


def prepare_pretraining_corpus(
    out_dir: str | os.PathLike,
    *,
    exclude_subjects: Mapping[str, Collection[str]] | None = None,
    exclusion: str = "",
    channels: ChannelPolicy = "vocabulary",
    notch_freq: float | None = 50.0,
    datasets: Sequence[str] | None = None,
    mirror: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    strict: bool = False,
    progress: bool = True,
) -> PretrainingCorpusReport:
    """Prepare every local EEG recording except the excluded subjects into ``out_dir/<hash>``.

    Args:
        out_dir: corpus parent folder (one corpus per channel policy and notch).
        exclude_subjects: ``{dataset: subject ids}`` to hold out (e.g.
            :func:`evaluation_exclusions`); every subject must belong to its dataset.
        exclusion: words describing the exclusion, for the report.
        channels: ``"vocabulary"`` (LaBraM) or ``"all-eeg"`` (Neuro-BERT), see module docs.
        notch_freq: mains frequency to notch in Hz, ``None`` for none.
        datasets: restrict to these registry datasets (default: every EEG dataset).
        mirror, cache: where to look for the datasets (default ``$NEUROFM_MIRROR``, the cache).
        workers, shard, strict, progress: as for :func:`~neurofm.data.prepare.prepare_corpus`.

    Returns the report, also written to ``<corpus>/pretraining_corpus.json``.

    Raises:
        ConfigError: for an unknown excluded subject, no recording left, or a corpus folder that
            already holds a recording this run leaves out.
        DatasetError: when a local file fails its checksum.
    """
    config = pretraining_config(channels, notch_freq)
    selection = collect_pretraining_sources(
        exclude_subjects, datasets=datasets, mirror=mirror, cache=cache
    )
    if not selection.sources:
        raise ConfigError(
            "no EEG recording is left to prepare: "
            + "; ".join(f"{name}: {state}" for name, state in selection.local.items())
            + ". Set NEUROFM_MIRROR or fetch a dataset with `neurofm datasets fetch NAME`"
        )
    _refuse_held_out_in_existing_corpus(Path(out_dir) / config.hash(), selection)
    preparation = prepare_corpus(
        list(selection.sources), out_dir, config, workers=workers, shard=shard, strict=strict,
        progress=progress,
    )
    excluded = {k: sorted(v) for k, v in (exclude_subjects or {}).items()}
    report = PretrainingCorpusReport(
        preparation=preparation,
        channels=channels,
        exclusion=exclusion or (
            "subjects " + "; ".join(f"{k}: {', '.join(v)}" for k, v in excluded.items())
            if excluded else "none"
        ),
        exclude_subjects=excluded,
        selection=selection,
    )
    report.datasets = _shares(selection, preparation)
    atomic_write_json(preparation.corpus_dir / REPORT_FILE, report.to_dict())
    return report


__all__ = [
    "CHANNEL_POLICIES",
    "REPORT_FILE",
    "DatasetShare",
    "LeftOut",
    "PretrainingCorpusReport",
    "PretrainingSelection",
    "collect_pretraining_sources",
    "evaluation_exclusions",
    "prepare_pretraining_corpus",
    "pretraining_config",
]
