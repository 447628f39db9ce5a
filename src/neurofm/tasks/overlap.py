"""The overlap guard: refuse to score a pretrained model on subjects it was pretrained on.

Self-supervised pretraining on a task's validation or test subjects inflates its scores, even
without labels. Every neurofm pretraining run records what it saw
(:mod:`neurofm.engine.pretraining_data`); before fine-tuning or evaluating, :func:`guard_overlap`
reads the record of the ``--init`` checkpoint and compares it with the evaluation subjects of the
task's folds. An evaluation subject overlaps when

- a pretraining recording is of the same dataset and the same subject id, or
- a pretraining recording shares a content hash with one of the subject's recordings: the same
  source file (the same recording prepared into another corpus under another id) or the same
  preprocessed array. A hash that several recordings share on one side (a montage or sidecar
  file) identifies none of them and is ignored.

An overlap raises :class:`~neurofm.errors.OverlapError` naming the subjects and the checkpoint,
unless ``allow_overlap`` (``--allow-overlap``): then the run goes on and the report says what
overlapped. A checkpoint without a record (written before records existed) is warned about and
not checked, and the report says so. An official LaBraM ``.pth`` carries nothing; its record is
the paper's list of pretraining datasets (:data:`LABRAM_PAPER_RECORD`), in which only the
PhysioNet EEG Motor Movement/Imagery set (the registry's ``eegbci``) is a neurofm dataset: every
one of its subjects counts as seen, and no other dataset's subjects do.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from neurofm.data.corpus import Corpus
from neurofm.data.splits import Split
from neurofm.engine.config import read_yaml
from neurofm.engine.pretraining_data import (
    PretrainedRecording,
    PretrainingRecord,
    read_model_config,
    record_of_model_dir,
    record_of_run_checkpoint,
    run_dir_of_checkpoint,
)
from neurofm.errors import CheckpointError, OverlapError
from neurofm.loading import ADAPTER_SIDECAR, init_path, is_engine_checkpoint

_log = logging.getLogger(__name__)

EVALUATION_PARTS = ("val", "test")
_MAX_CHAIN = 8

#: What is known of the official LaBraM checkpoints' data (METHODS.md section 4, the paper's
#: appendix D): about 2,500 h from 16 sources, listed by name and hours, without subject lists.
LABRAM_PAPER_RECORD = PretrainingRecord(
    trained_by="LaBraM authors (Jiang et al., ICLR 2024), official checkpoint",
    whole_datasets={"eegbci": "EEGMMI (PhysioNet EEG Motor Movement/Imagery, 47.3 h) is in "
                              "LaBraM's pretraining data, all subjects as far as the paper says"},
    note=("pretrained on the LaBraM paper's data (2,534.78 h: TUSZ, TUEP, self-collected, SEED "
          "series, TUAR, EEGMMI, Raw EEG Data, Siena, Inria BCI, TUSL, Target-vs-Non-Target, "
          "Grasp-and-Lift, BCI IV-1, Emobrain, Resting State, SPIS; appendix D, no subject "
          "lists); no eegmat (PhysioNet mental arithmetic) data is known in it"),
)


def pretraining_record(init: str) -> PretrainingRecord | None:
    """The pretraining record of the weights an init string names, or None when they have none.

    ``init`` is any value fine-tuning accepts: ``"scratch"`` (an empty record: nothing was
    pretrained), a neurofm model folder (its ``config.json``; a fine-tuned model's record is that
    of the init it was fine-tuned from), an adapter folder (the record of the base init in its
    ``neurofm_adapter.json``), a training checkpoint ``RUN/checkpoints/NAME.pt`` (the run's
    ``pretraining_data.json``, or for a fine-tuning run the record of its init), or
    ``official:PATH`` / another ``.pth`` file (:data:`LABRAM_PAPER_RECORD`). Raises
    :class:`CheckpointError` when the path does not exist or its files are unreadable.
    """
    return _record(init, depth=0)


def _record(init: str, depth: int) -> PretrainingRecord | None:
    if init == "scratch":
        return PretrainingRecord(trained_by="nobody", source="scratch",
                                 note="random initialisation, no pretraining data")
    if depth > _MAX_CHAIN:
        raise CheckpointError(f"{init}: the chain of inits it was fine-tuned from is longer than "
                              f"{_MAX_CHAIN} (a loop?)")
    official, path = init_path(init)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a neurofm model folder, a "
                              "adapter folder, a training checkpoint .pt, official:PATH or "
                              "'scratch'")
    if path.is_dir():
        sidecar = path / ADAPTER_SIDECAR
        if sidecar.is_file():
            base = _read_json(sidecar).get("init")
            if base is None:
                raise CheckpointError(f"{sidecar} names no base init; it was not written by "
                                      "`neurofm finetune --mode lora`")
            return _record(str(base), depth + 1)
        record = record_of_model_dir(path)
        if record is not None:
            return record
        base = (read_model_config(path).get("extra") or {}).get("init")
        return None if base is None else _record(str(base), depth + 1)
    if not official and is_engine_checkpoint(path):
        record = record_of_run_checkpoint(path)
        if record is not None:
            return record
        config_file = run_dir_of_checkpoint(path) / "config.yaml"
        base = read_yaml(config_file).get("init") if config_file.is_file() else None
        return None if base is None else _record(str(base), depth + 1)
    return replace(LABRAM_PAPER_RECORD, source=str(path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is unreadable ({error})") from None


@dataclass(frozen=True)
class EvaluationSubjects:
    """The subjects a task is scored on: partition -> subject ids, and each subject's content
    hashes (source files and preprocessed arrays, the ones distinctive in its corpus)."""

    subjects: Mapping[str, tuple[str, ...]]
    hashes: Mapping[str, frozenset[str]] = field(default_factory=dict)


def evaluation_subjects(folds: Sequence[Split],
                        corpus: Corpus | str | Path | None = None) -> EvaluationSubjects:
    """The validation and test subjects of ``folds`` (over all folds), with their hashes.

    With ``corpus``, subjects are its entries' subject ids (a recording without one stands for
    itself) and each gets the hashes of its recordings, less those several recordings of the
    corpus share (a common sidecar file). Without it, subjects are the folds' groups and no
    hashes are known, so only ids are compared.
    """
    subjects: dict[str, set[str]] = {part: set() for part in EVALUATION_PARTS}
    hashes: dict[str, set[str]] = {}
    if corpus is None:
        for fold in folds:
            for part in EVALUATION_PARTS:
                groups = fold.groups.get(part, ())
                subjects[part].update(g.split("/", 1)[0] if fold.by == "session" else g
                                      for g in groups)
    else:
        corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        counts = Counter(h for entry in corpus for h in _entry_hashes(entry))
        for fold in folds:
            for part in EVALUATION_PARTS:
                for rid in fold.part(part):
                    entry = corpus[rid]
                    subject = entry.subject if entry.subject is not None else rid
                    subjects[part].add(subject)
                    hashes.setdefault(subject, set()).update(
                        h for h in _entry_hashes(entry) if counts[h] == 1)
    return EvaluationSubjects({p: tuple(sorted(s)) for p, s in subjects.items()},
                              {s: frozenset(h) for s, h in hashes.items()})


def _entry_hashes(entry: Any) -> tuple[str, ...]:
    return (entry.array_sha256, *(s.sha256 for s in entry.sources))


@dataclass(frozen=True)
class Overlap:
    """An evaluation subject the checkpoint was pretrained on: which partition, which
    pretraining recordings, and why they match."""

    partition: str
    subject: str
    pretrained: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        shown = ", ".join(self.pretrained[:4]) + (" ..." if len(self.pretrained) > 4 else "")
        return f"{self.partition} subject {self.subject} ({self.reason}: {shown})"


@dataclass(frozen=True)
class OverlapCheck:
    """The guard's verdict, for the run's report and results.

    ``applied`` is False when the checkpoint has no record; ``overlaps`` are those let through
    by ``allowed`` (``--allow-overlap``); ``notes`` say what could not be checked.
    """

    checkpoint: str
    applied: bool
    overlaps: tuple[Overlap, ...] = ()
    allowed: bool = False
    notes: tuple[str, ...] = ()
    pretrained_on: str = ""

    def report_lines(self) -> list[str]:
        """Plain sentences for the report (one per line)."""
        if not self.applied:
            return [(f"Overlap guard not applied: {self.checkpoint} has no pretraining record "
                     "(written before neurofm recorded pretraining data); its pretraining data "
                     "may include the evaluation subjects."), *self.notes]
        lines = [f"Overlap guard: {self.checkpoint}: {self.pretrained_on}."]
        if self.overlaps:
            lines.append(f"--allow-overlap: {len(self.overlaps)} evaluation subject(s) were in "
                         "the pretraining data, so their scores may be inflated: "
                         + "; ".join(o.describe() for o in self.overlaps) + ".")
        else:
            lines.append("No validation or test subject is in its pretraining data.")
        return [*lines, *self.notes]

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "applied": self.applied,
                "report": self.report_lines(),
                "allowed": self.allowed, "pretrained_on": self.pretrained_on,
                "overlaps": [asdict(o) for o in self.overlaps],
                "notes": list(self.notes)}


def check_overlap(record: PretrainingRecord | None, checkpoint: str, task_dataset: str,
                  evaluation: Mapping[str, Sequence[str]],
                  evaluation_hashes: Mapping[str, Iterable[str]] | None = None, *,
                  allow_overlap: bool = False) -> OverlapCheck:
    """Compare ``record`` (of ``checkpoint``) with the evaluation subjects of a task.

    Args:
        record: the checkpoint's record (:func:`pretraining_record`); None: warn, do not check.
        checkpoint: the init string, for messages.
        task_dataset: the registry dataset of the task's recordings (``"eegmat"``).
        evaluation: partition name -> subject ids (``{"val": [...], "test": [...]}``).
        evaluation_hashes: subject -> content hashes of its recordings (optional).
        allow_overlap: let overlaps through (``--allow-overlap``), reported.

    Raises :class:`OverlapError` naming the overlapping subjects unless ``allow_overlap``.
    """
    if record is None:
        _log.warning("overlap guard not applied: %s has no pretraining record (an older file); "
                     "make sure it was not pretrained on the evaluation subjects", checkpoint)
        return OverlapCheck(checkpoint, applied=False)
    overlaps = _overlaps(record, task_dataset, evaluation, evaluation_hashes or {})
    notes = tuple(f"Not checked: the data of the {what} it was built from is unknown (no "
                  "pretraining record)." for what in record.unrecorded())
    for note in notes:
        _log.warning("overlap guard, %s: %s", checkpoint, note)
    if overlaps and not allow_overlap:
        listed = "\n  ".join(o.describe() for o in overlaps)
        raise OverlapError(
            f"checkpoint {checkpoint} was pretrained on data of {len(overlaps)} evaluation "
            f"subject(s) of dataset {task_dataset!r}:\n  {listed}\nTheir validation and test "
            "scores would be inflated. Pretrain on a corpus without them (e.g. "
            "data.exclude_recordings), choose another split, or pass --allow-overlap "
            "(allow_overlap=True) if you really mean it; the report will say so.")
    return OverlapCheck(checkpoint, applied=True, overlaps=tuple(overlaps),
                        allowed=allow_overlap, notes=notes, pretrained_on=_summary(record))


def _overlaps(record: PretrainingRecord, task_dataset: str,
              evaluation: Mapping[str, Sequence[str]],
              evaluation_hashes: Mapping[str, Iterable[str]]) -> list[Overlap]:
    recordings = list(record.all_recordings())
    counts = Counter(h for r in recordings for h in set(r.hashes))
    by_subject: dict[str, list[PretrainedRecording]] = {}
    by_hash: dict[str, PretrainedRecording] = {}
    for r in recordings:
        if r.dataset == task_dataset and r.subject is not None:
            by_subject.setdefault(r.subject, []).append(r)
        by_hash.update((h, r) for h in r.hashes if counts[h] == 1)
    whole = record.all_whole_datasets().get(task_dataset)
    overlaps = []
    for partition in EVALUATION_PARTS:
        for subject in sorted(set(evaluation.get(partition, ()))):
            if whole is not None:
                overlaps.append(Overlap(partition, subject, (whole,), "whole dataset"))
                continue
            same = by_subject.get(subject, [])
            if same:
                overlaps.append(Overlap(partition, subject, tuple(sorted({r.id for r in same})),
                                        "same dataset and subject"))
                continue
            files = sorted({by_hash[h].id for h in evaluation_hashes.get(subject, ())
                            if h in by_hash})
            if files:
                overlaps.append(Overlap(partition, subject, tuple(files),
                                        "same file content under another id"))
    return overlaps


def _summary(record: PretrainingRecord) -> str:
    if record.note:
        return record.note
    recordings = list(record.all_recordings())
    datasets = Counter(r.dataset or "unknown dataset" for r in recordings)
    subjects = {(r.dataset, r.subject) for r in recordings if r.subject is not None}
    listed = ", ".join(f"{name} ({n})" for name, n in sorted(datasets.items()))
    return (f"pretrained ({record.trained_by}) on {len(recordings)} recording(s) of "
            f"{len(subjects)} subject(s): {listed}")


def guard_overlap(init: str, task_dataset: str, folds: Sequence[Split],
                  corpus: Corpus | str | Path | None, *, allow_overlap: bool = False
                  ) -> OverlapCheck:
    """The overlap guard in one call: the record of ``init`` against the validation and test
    subjects of ``folds`` (see the module docstring). ``corpus`` (the folds' corpus) adds the
    content-hash comparison; without it only dataset and subject ids are compared.

    Raises :class:`OverlapError` on an overlap unless ``allow_overlap``; returns the verdict,
    whose :meth:`OverlapCheck.report_lines` go into the report.
    """
    record = pretraining_record(init)
    evaluation = evaluation_subjects(folds, corpus)
    return check_overlap(record, init, task_dataset, evaluation.subjects, evaluation.hashes,
                         allow_overlap=allow_overlap)


__all__ = ["LABRAM_PAPER_RECORD", "EvaluationSubjects", "Overlap", "OverlapCheck",
           "check_overlap", "evaluation_subjects", "guard_overlap", "pretraining_record"]
