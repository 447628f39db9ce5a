"""What a self-supervised run was trained on: the pretraining record of its checkpoints.

A run writes the record once, as ``RUN/pretraining_data.json``, before training starts, and again
inside its exported ``model/config.json`` (under ``extra.pretraining_data``), so a model folder
copied elsewhere keeps it. The record lists every recording the run trained *or* validated on: its
id, dataset, subject and content hashes (the preprocessed array's sha256 and its source files'
sha256), never signals. A masked-EEG-modelling run also carries its tokenizer's record, since the
tokenizer saw data as well. :mod:`neurofm.tasks.overlap` reads it to refuse evaluating on
subjects a checkpoint was pretrained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofm.atomic import atomic_write_json
from neurofm.data.corpus import Corpus, CorpusEntry
from neurofm.errors import CheckpointError

FORMAT_NAME = "neurofm-pretraining-data"
FORMAT_VERSION = 1
RECORD_FILE = "pretraining_data.json"
#: The key of the record in ``model/config.json``'s ``extra``.
CONFIG_KEY = "pretraining_data"


@dataclass(frozen=True)
class PretrainedRecording:
    """One recording a run used: ``part`` is ``"train"`` or ``"val"``; ``dataset`` and
    ``subject`` are None when unknown."""

    id: str
    dataset: str | None
    subject: str | None
    part: str
    array_sha256: str
    source_sha256: tuple[str, ...]

    @property
    def hashes(self) -> tuple[str, ...]:
        """Every content hash of the recording (array, then source files)."""
        return (self.array_sha256, *self.source_sha256)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "dataset": self.dataset, "subject": self.subject,
                "part": self.part, "array_sha256": self.array_sha256,
                "source_sha256": list(self.source_sha256)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PretrainedRecording:
        return cls(id=str(data["id"]), dataset=data.get("dataset"), subject=data.get("subject"),
                   part=str(data["part"]), array_sha256=str(data["array_sha256"]),
                   source_sha256=tuple(str(h) for h in data["source_sha256"]))


@dataclass(frozen=True)
class Inherited:
    """Another model whose training data a run depends on (``role`` e.g. ``"tokenizer"``),
    with its record, or None when that model has none."""

    role: str
    source: str
    record: PretrainingRecord | None


@dataclass(frozen=True)
class PretrainingRecord:
    """The data behind a checkpoint.

    Attributes:
        trained_by: who trained it (``"neurofm pretrain"``, ``"LaBraM authors ..."``).
        corpus: the corpus folder (None when not a neurofm corpus).
        recipe: the corpus's preprocessing config and its hash.
        recordings: the recordings trained or validated on.
        whole_datasets: registry datasets used in full, subjects unlisted (dataset -> what is
            known); every subject of such a dataset counts as seen.
        inherited: the records of models this one was built from (a MEM run's tokenizer).
        note: free text for reports.
        source: where the record was read from (set by the readers, not stored).
    """

    trained_by: str
    corpus: str | None = None
    recipe: Mapping[str, Any] | None = None
    recordings: tuple[PretrainedRecording, ...] = ()
    whole_datasets: Mapping[str, str] = field(default_factory=dict)
    inherited: tuple[Inherited, ...] = ()
    note: str = ""
    source: str = ""

    def all_recordings(self) -> Iterator[PretrainedRecording]:
        """The recordings of this record and of every inherited one."""
        yield from self.recordings
        for parent in self.inherited:
            if parent.record is not None:
                yield from parent.record.all_recordings()

    def all_whole_datasets(self) -> dict[str, str]:
        """``whole_datasets`` of this record and of every inherited one."""
        merged = dict(self.whole_datasets)
        for parent in self.inherited:
            if parent.record is not None:
                merged.update(parent.record.all_whole_datasets())
        return merged

    def unrecorded(self) -> list[str]:
        """The inherited models (``"tokenizer PATH"``) whose data is not known."""
        missing = []
        for parent in self.inherited:
            if parent.record is None:
                missing.append(f"{parent.role} {parent.source}")
            else:
                missing.extend(parent.record.unrecorded())
        return missing

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "trained_by": self.trained_by, "corpus": self.corpus,
                "recipe": None if self.recipe is None else dict(self.recipe),
                "recordings": [r.to_dict() for r in self.recordings],
                "whole_datasets": dict(self.whole_datasets),
                "inherited": [{"role": p.role, "source": p.source,
                               "record": None if p.record is None else p.record.to_dict()}
                              for p in self.inherited],
                "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> PretrainingRecord:
        """Parse a record read from ``source``; :class:`CheckpointError` when it is not one."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{source} holds no {FORMAT_NAME} record")
        if data.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{source}: pretraining record version "
                                  f"{data.get('format_version')}, this neurofm reads "
                                  f"{FORMAT_VERSION}")
        try:
            return cls(
                trained_by=str(data["trained_by"]), corpus=data.get("corpus"),
                recipe=data.get("recipe"),
                recordings=tuple(PretrainedRecording.from_dict(r) for r in data["recordings"]),
                whole_datasets=dict(data.get("whole_datasets") or {}),
                inherited=tuple(Inherited(
                    str(p["role"]), str(p["source"]),
                    None if p["record"] is None else cls.from_dict(p["record"], source))
                    for p in data.get("inherited") or ()),
                note=str(data.get("note", "")), source=source)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: malformed pretraining record "
                                  f"({type(error).__name__}: {error})") from None


def dataset_of(entry: CorpusEntry) -> str | None:
    """The registry dataset of a corpus recording: its manifest's ``meta["dataset"]`` when set,
    else the id's prefix before ``/`` (``eegmat/Subject28_1`` -> ``eegmat``), else None."""
    stated = entry.meta.get("dataset") if isinstance(entry.meta, Mapping) else None
    if isinstance(stated, str) and stated:
        return stated
    return entry.id.split("/", 1)[0] if "/" in entry.id else None


def record_of_run(corpus: Corpus, train_ids: Sequence[str], val_ids: Sequence[str],
                  trained_by: str, inherited: Sequence[Inherited] = ()) -> PretrainingRecord:
    """The record of a run that trained on ``train_ids`` and validated on ``val_ids`` of
    ``corpus``."""
    recordings = tuple(
        PretrainedRecording(id=entry.id, dataset=dataset_of(entry), subject=entry.subject,
                            part=part, array_sha256=entry.array_sha256,
                            source_sha256=tuple(s.sha256 for s in entry.sources))
        for part, ids in (("train", train_ids), ("val", val_ids))
        for entry in (corpus[rid] for rid in ids))
    return PretrainingRecord(trained_by=trained_by, corpus=str(corpus.path),
                             recipe={"config_hash": corpus.config_hash, "config": corpus.config},
                             recordings=recordings, inherited=tuple(inherited))


def write_record(run_dir: str | Path, record: PretrainingRecord) -> Path:
    """Write ``record`` to ``run_dir/pretraining_data.json`` (atomically); returns the path."""
    path = Path(run_dir) / RECORD_FILE
    atomic_write_json(path, record.to_dict())
    return path


def read_record_file(path: str | Path) -> PretrainingRecord:
    """Read a ``pretraining_data.json``; :class:`CheckpointError` when unreadable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"pretraining record {path} is unreadable ({error})") from None
    return PretrainingRecord.from_dict(data, str(path))


def read_model_config(model_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a neurofm model folder; :class:`CheckpointError` when unreadable."""
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is unreadable ({error}); pass a neurofm model folder "
                              "(model.safetensors + config.json)") from None


def record_of_model_dir(model_dir: str | Path) -> PretrainingRecord | None:
    """The record stored in a model folder's ``config.json``, or None when it holds none."""
    data = (read_model_config(model_dir).get("extra") or {}).get(CONFIG_KEY)
    if data is None:
        return None
    return PretrainingRecord.from_dict(data, str(Path(model_dir) / "config.json"))


def record_of_run_checkpoint(checkpoint: str | Path) -> PretrainingRecord | None:
    """The record of the run a training checkpoint (``RUN/checkpoints/step-N.pt``) belongs to,
    or None when that run folder has no ``pretraining_data.json``."""
    path = run_dir_of_checkpoint(checkpoint) / RECORD_FILE
    return read_record_file(path) if path.is_file() else None


def run_dir_of_checkpoint(checkpoint: str | Path) -> Path:
    """The run folder of ``RUN/checkpoints/NAME.pt`` (the checkpoint's folder otherwise)."""
    folder = Path(checkpoint).parent
    return folder.parent if folder.name == "checkpoints" else folder


__all__ = ["CONFIG_KEY", "RECORD_FILE", "Inherited", "PretrainedRecording", "PretrainingRecord",
           "dataset_of", "read_model_config", "read_record_file", "record_of_model_dir",
           "record_of_run", "record_of_run_checkpoint", "run_dir_of_checkpoint", "write_record"]
