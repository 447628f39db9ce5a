"""Downstream tasks, defined once and shared by the CLI, the tests, the benchmarks and the demo.

A :class:`Task` names its dataset (a registry entry), the preprocessing recipe, how windows and
their labels are cut from the prepared corpus (:class:`WindowSpec`), the class names, how the
subjects are split into folds (:class:`SplitSpec`), the metric used for model selection and the
classical baseline to compare against. Splits are always by subject (participant, sleep excerpt),
never by window: no subject's windows appear in two partitions of a fold.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.data.corpus import Corpus
from neurofm.data.layouts import MYO_GESTURES, SLEEP_STAGES
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.splits import Split, group_of
from neurofm.errors import ConfigError
from neurofm.tasks.metrics import primary_metric_for

#: Preprocessing recipes a task may name, as :class:`PreprocessConfig` factories.
PREPROCESSING_RECIPES = {"labram": PreprocessConfig.labram, "emg": PreprocessConfig.emg}


@dataclass(frozen=True)
class WindowSpec:
    """How a task cuts labelled windows from a prepared corpus (see ``neurofm.data.windows``).

    Attributes:
        seconds: window length in seconds.
        stride_seconds: distance between window starts (``None`` = ``seconds``, no overlap);
            unused for event-aligned windows.
        label_mode: ``"recording"`` (one label per recording), ``"samples"`` (per-sample labels;
            windows lie wholly inside one label), ``"annotations"`` (annotation descriptions) or
            ``"majority"`` (windows tile the recording from its start; each takes the per-sample
            label most of its samples carry, and windows whose majority is unscored or tied are
            dropped and counted: a 30-s sleep epoch from its six 5-s stages).
        label_map: source label (recording label, sample value, annotation description) -> class
            id ``0..K-1``; labels absent from the map are not windowed.
        event_offset_seconds: ``"annotations"`` only: one window per annotation, starting this
            many seconds after its onset, instead of tiling the annotated span.
        channels: keep exactly these channels (as the corpus names them), in this order; every
            recording must have them. ``None`` keeps every channel.
        derivation: for single-derivation tasks, candidate channel names in order of
            preference: the first one that every recording has is the only channel, or, with
            ``derivation_name``, the first one each recording has.
        derivation_name: with ``derivation``, the one name under which every window presents
            its recording's derivation (recordings of one derivation each, at different
            electrodes); ``None``: one electrode throughout.
    """

    seconds: float
    stride_seconds: float | None = None
    label_mode: str = "recording"
    label_map: Mapping[Hashable, int] = field(default_factory=dict)
    event_offset_seconds: float | None = None
    channels: tuple[str, ...] | None = None
    derivation: tuple[str, ...] | None = None
    derivation_name: str | None = None

    def __post_init__(self) -> None:
        if self.channels is not None and self.derivation is not None:
            raise ConfigError("a window spec takes channels or a derivation, not both")
        if self.derivation_name is not None and self.derivation is None:
            raise ConfigError("a window spec's derivation_name needs derivation candidates")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (label map keys as strings)."""
        data = asdict(self)
        data["label_map"] = {str(key): value for key, value in self.label_map.items()}
        for name in ("channels", "derivation"):
            value = getattr(self, name)
            data[name] = None if value is None else list(value)
        return data


@dataclass(frozen=True)
class SplitSpec:
    """Subject-wise cross-validation: every subject is tested in exactly one fold.

    Subjects are the corpus entries' ``subject`` (a participant, a sleep excerpt).

    The distinct subject ids are sorted, shuffled with ``seed`` and dealt into ``n_folds`` nearly
    equal groups (``n_folds=None``, or fewer subjects than ``n_folds``: one subject per group, i.e.
    leave one subject out, and the folds' note says so). Fold ``i``
    tests group ``i``, validates on the next ``val_groups`` groups (cyclically) and trains on the
    rest.

    Attributes:
        unit: what a subject is in this dataset ("subject", "participant", "excerpt"), for reports.
        n_folds: number of folds, or ``None`` for leave-one-out.
        val_groups: groups used for validation (model selection, early stopping) in each fold.
        seed: shuffling seed.
    """

    unit: str = "subject"
    n_folds: int | None = 5
    val_groups: int = 1
    seed: int = 0

    def folds(self, members: Mapping[str, Sequence[str]]) -> list[Split]:
        """The folds over ``members`` (subject id -> its recording ids), as saved-able splits.

        Fold ``i`` is a :class:`neurofm.data.splits.Split` named ``"fold<i>"`` listing the
        recording ids and subjects of each partition.
        """
        distinct = sorted(members)
        n_folds = len(distinct) if self.n_folds is None else min(self.n_folds, len(distinct))
        note = ""
        if n_folds < (self.n_folds or 0):
            note = (f"only {len(distinct)} {self.unit}s for {self.n_folds} folds: "
                    f"{n_folds} folds of one {self.unit} each")
        if n_folds < 2 or self.val_groups < 1 or n_folds < self.val_groups + 2:
            raise ConfigError(
                f"{len(distinct)} {self.unit}(s) cannot form {n_folds} folds with {self.val_groups} "
                f"validation group(s): each fold needs test, validation and training {self.unit}s"
            )
        order = np.random.default_rng(self.seed).permutation(len(distinct))
        groups = [sorted(distinct[i] for i in part) for part in np.array_split(order, n_folds)]
        folds = []
        for index in range(n_folds):
            val_ids = {(index + k) % n_folds for k in range(1, self.val_groups + 1)}
            parts = {
                "test": groups[index],
                "val": sorted(s for g in val_ids for s in groups[g]),
                "train": sorted(s for g, group in enumerate(groups)
                                if g != index and g not in val_ids for s in group),
            }
            recordings = {part: tuple(sorted(r for s in subjects for r in members[s]))
                          for part, subjects in parts.items()}
            folds.append(Split(
                by="subject", train=recordings["train"], val=recordings["val"],
                test=recordings["test"], groups={k: tuple(v) for k, v in parts.items()},
                seed=self.seed, name=f"fold{index}", note=note,
            ))
        return folds

    def corpus_folds(self, corpus: Corpus, recording_ids: Sequence[str] | None = None
                     ) -> list[Split]:
        """:meth:`folds` over the subjects of ``corpus`` (or of its ``recording_ids``)."""
        return self.folds(_members(corpus, recording_ids))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"kind": "cv", **asdict(self)}

    def describe(self) -> str:
        """One sentence for reports."""
        unit = self.unit
        if self.n_folds is None:
            return (
                f"leave-one-{unit}-out (seed {self.seed}): each fold tests one {unit}, validates "
                f"on the next {self.val_groups} {unit}(s) and trains on the rest; every {unit} is "
                "tested once and sits in one partition per fold"
            )
        return (
            f"{self.n_folds}-fold cross-validation over {unit}s (seed {self.seed}): each fold "
            f"tests one group of {unit}s, validates on the next {self.val_groups} group(s) and "
            f"trains on the rest; every {unit} is tested once and sits in one partition per fold"
        )


@dataclass(frozen=True)
class FixedSplit:
    """A published split: named subjects for training, validation and test, one fold.

    The partitions are used exactly as published; subjects absent from the corpus are never
    replaced by others. When any test subject is absent, no test score can be reported: the fold
    is then scored on its validation subjects (which also select the epoch and the decision
    threshold, so the score is optimistic) and says so in its note.

    Attributes:
        train, val, test: the subject ids of each partition.
        source: where the split is published (for reports).
        unit: what a subject is in this dataset, for reports.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    source: str
    unit: str = "subject"

    def __post_init__(self) -> None:
        parts = {"train": self.train, "val": self.val, "test": self.test}
        for name, subjects in parts.items():
            if not subjects and name != "test":
                raise ConfigError(f"a fixed split needs {name} {self.unit}s; it lists none")
        seen: dict[str, str] = {}
        for name, subjects in parts.items():
            for subject in subjects:
                if subject in seen:
                    raise ConfigError(f"{self.unit} {subject!r} is in both the {seen[subject]} and "
                                      f"the {name} partition of the fixed split ({self.source})")
                seen[subject] = name

    @property
    def subjects(self) -> tuple[str, ...]:
        """Every subject the split names."""
        return self.train + self.val + self.test

    def check_known(self, known: Sequence[str], dataset: str) -> None:
        """Raise :class:`ConfigError` naming the split's subjects that ``dataset`` lacks."""
        unknown = sorted(set(self.subjects) - set(known))
        if unknown:
            raise ConfigError(
                f"the split ({self.source}) names {self.unit}(s) {', '.join(unknown)} that "
                f"dataset {dataset!r} does not have; its {self.unit}s are {', '.join(known)}")

    def folds(self, members: Mapping[str, Sequence[str]]) -> list[Split]:
        """The one fold over ``members`` (subject id -> its recording ids), named ``"fixed"``.

        Raises :class:`ConfigError` when no training or no validation subject is present.
        """
        present = {name: [s for s in subjects if s in members] for name, subjects in
                   (("train", self.train), ("val", self.val), ("test", self.test))}
        notes = []
        for name in ("train", "val", "test"):
            absent = [s for s in getattr(self, name) if s not in members]
            if absent and len(absent) == len(getattr(self, name)) and name != "test":
                raise ConfigError(
                    f"none of the fixed split's {name} {self.unit}s ({', '.join(absent)}) is in "
                    f"the corpus; prepare the whole dataset (`neurofm datasets fetch`)")
            if absent:
                notes.append(f"{name} {self.unit}s absent from the corpus: {', '.join(absent)}")
        unused = sorted(set(members) - set(self.subjects))
        if unused:
            notes.append(f"{self.unit}s in the corpus that the split does not name, unused: "
                         f"{', '.join(unused)}")
        scored = "test"
        if len(present["test"]) < len(self.test) or not self.test:
            scored = "val"
            notes.append(
                "the test partition is incomplete, so no test score is reported: scores are on "
                "the validation subjects, which also selected the epoch and the decision "
                "threshold (optimistic)")
        recordings = {part: tuple(sorted(r for s in subjects for r in members[s]))
                      for part, subjects in present.items()}
        if scored == "val":
            recordings["test"] = ()
            present["test"] = []
        return [Split(by="subject", train=recordings["train"], val=recordings["val"],
                      test=recordings["test"], groups={k: tuple(v) for k, v in present.items()},
                      seed=None, name="fixed", scored=scored, note="; ".join(notes))]

    def corpus_folds(self, corpus: Corpus, recording_ids: Sequence[str] | None = None
                     ) -> list[Split]:
        """:meth:`folds` over the subjects of ``corpus`` (or of its ``recording_ids``)."""
        return self.folds(_members(corpus, recording_ids))

    def describe(self) -> str:
        """One sentence for reports."""
        return (f"fixed split ({self.source}): {len(self.train)} training, {len(self.val)} "
                f"validation and {len(self.test)} test {self.unit}s, used as published")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"kind": "fixed", "unit": self.unit, "source": self.source,
                "train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def load(cls, path: str | Path) -> FixedSplit:
        """Read a split file: JSON ``{"train": [...], "val": [...], "test": [...], "source": "..."}``
        (subject ids); :class:`ConfigError` naming the file when it is not one."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read split file {path}: {error}") from None
        lists = ("train", "val", "test")
        if not isinstance(data, dict) or not all(
                isinstance(data.get(k, []), list) and all(isinstance(s, str) for s in data.get(k, []))
                for k in lists):
            raise ConfigError(f"split file {path} must hold a JSON object with lists of subject "
                              'ids under "train", "val" and "test" (and a "source")')
        return cls(*(tuple(data.get(k, [])) for k in lists),
                   source=str(data.get("source") or path.name))


def _members(corpus: Corpus, recording_ids: Sequence[str] | None) -> dict[str, list[str]]:
    ids = sorted(corpus.ids) if recording_ids is None else list(recording_ids)
    members: dict[str, list[str]] = {}
    for rid in ids:
        members.setdefault(group_of(corpus[rid], "subject"), []).append(rid)
    return members


#: A task's subject split: cross-validation or a published fixed split.
TaskSplit = SplitSpec | FixedSplit


@dataclass(frozen=True)
class Task:
    """A downstream task: data, windows, classes, split, selection metric, baseline.

    Attributes:
        name: registry key (``"eegmat"``...).
        dataset: the :mod:`neurofm.datasets` registry entry holding the recordings.
        description: one line for reports.
        preprocessing: recipe name in :data:`PREPROCESSING_RECIPES`.
        preprocess_overrides: fields of the recipe's :class:`PreprocessConfig` to change.
        window: how windows and labels are cut.
        class_names: class id -> name.
        splits: named subject-wise splits (cross-validation, published fixed splits); the
            first is the default.
        split_name: the split in use (:meth:`using_split` chooses another).
        baseline: the classical baseline in :data:`neurofm.tasks.baselines.BASELINES`.
        metrics: the metrics its report leads with (all metrics are always computed).
        hypnogram: windows are consecutive epochs of a night, so reports plot the true and the
            predicted class over time per recording (sleep staging).
        exclude_recordings: recording id -> why the task does not use that recording of its
            dataset (left out before preparation).
    """

    name: str
    dataset: str
    description: str
    preprocessing: str
    window: WindowSpec
    class_names: tuple[str, ...]
    splits: Mapping[str, TaskSplit]
    baseline: str
    metrics: tuple[str, ...] = ("accuracy", "balanced_accuracy", "cohen_kappa", "f1_macro")
    hypnogram: bool = False
    preprocess_overrides: Mapping[str, Any] = field(default_factory=dict)
    split_name: str = ""
    exclude_recordings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.splits:
            raise ConfigError(f"task {self.name!r} defines no split")
        if not self.split_name:
            object.__setattr__(self, "split_name", next(iter(self.splits)))
        if self.split_name not in self.splits:
            raise ConfigError(f"task {self.name!r} has no split {self.split_name!r}; its splits: "
                              f"{', '.join(self.splits)}")
        if self.preprocessing not in PREPROCESSING_RECIPES:
            raise ConfigError(
                f"task {self.name!r}: unknown preprocessing {self.preprocessing!r}; "
                f"known: {sorted(PREPROCESSING_RECIPES)}"
            )
        ids = sorted(set(self.window.label_map.values()))
        if ids != list(range(len(self.class_names))):
            raise ConfigError(
                f"task {self.name!r}: label_map class ids {ids} do not number the "
                f"{len(self.class_names)} classes {self.class_names} from 0"
            )

    @property
    def split(self) -> TaskSplit:
        """The split in use."""
        return self.splits[self.split_name]

    def using_split(self, split: str | None) -> Task:
        """This task with the named split, or with the fixed split in a JSON file (see
        :meth:`FixedSplit.load`; its subjects are checked against the dataset's); ``None`` keeps
        the current one. :class:`ConfigError` names the known splits otherwise."""
        if split is None or split == self.split_name:
            return self
        if split in self.splits:
            return replace(self, split_name=split)
        if split.endswith(".json") or Path(split).is_file():
            loaded = FixedSplit.load(split)
            loaded.check_known(self.dataset_subjects(), self.dataset)
            return replace(self, splits={**self.splits, split: loaded}, split_name=split)
        raise ConfigError(f"task {self.name!r} has no split {split!r}; use one of "
                          f"{', '.join(self.splits)} or a split JSON file")

    def dataset_subjects(self) -> list[str]:
        """Every subject of the task's dataset, as the registry lists them."""
        from neurofm.datasets.registry import get_dataset

        return list(get_dataset(self.dataset).subjects)

    def evaluation_subjects(self, split: str | None = None) -> set[str]:
        """The subjects that validate or test under ``split`` (default: the one in use): what
        pretraining for this task must leave out. Under cross-validation every subject of the
        dataset is tested in some fold."""
        chosen = self.using_split(split).split
        if isinstance(chosen, FixedSplit):
            return set(chosen.val) | set(chosen.test)
        return set(self.dataset_subjects())

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def primary_metric(self) -> str:
        """Model-selection metric (METHODS §5): AUROC if binary, Cohen's kappa otherwise."""
        return primary_metric_for(self.n_classes)

    def preprocess_config(self) -> PreprocessConfig:
        """The :class:`PreprocessConfig` of this task's recipe, with its overrides."""
        return replace(PREPROCESSING_RECIPES[self.preprocessing](), **self.preprocess_overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, saved with every result."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "description": self.description,
            "preprocessing": self.preprocessing,
            "preprocess_overrides": dict(self.preprocess_overrides),
            "preprocess_config": self.preprocess_config().to_dict(),
            "window": self.window.to_dict(),
            "class_names": list(self.class_names),
            "split": {**self.split.to_dict(), "name": self.split_name,
                      "description": self.split.describe()},
            "primary_metric": self.primary_metric,
            "baseline": self.baseline,
            "metrics": list(self.metrics),
            "hypnogram": self.hypnogram,
            "exclude_recordings": dict(self.exclude_recordings),
        }


#: eegmat's fixed split as the CBraMod repository and braindecode's OpenEEGBench
#: (``arithmetic_zyma2019``) use it: subjects 1-28 train, 29-32 validate, 33-36 test (1-indexed),
#: i.e. Subject00-27, Subject28-31, Subject32-35.
EEGMAT_FIXED_SPLIT = FixedSplit(
    train=tuple(f"Subject{n:02d}" for n in range(28)),
    val=tuple(f"Subject{n:02d}" for n in range(28, 32)),
    test=tuple(f"Subject{n:02d}" for n in range(32, 36)),
    source="CBraMod repository and braindecode OpenEEGBench arithmetic_zyma2019: Subject00-27 "
           "train, Subject28-31 validation, Subject32-35 test",
)

def _dreams_sleep_staging_tasks() -> tuple[Task, ...]:
    """Sleep staging on the DREAMS Sleep Spindles excerpts: 30-s epochs and the 5-s scoring."""
    common: dict[str, Any] = {
        "dataset": "dreams_spindles",
        "preprocessing": "labram",
        # Excerpt 1 is sampled at 100 Hz and excerpt 3 at 50 Hz: their band stops at 45% of the
        # rate (45 and 22.5 Hz) instead of 75 Hz, and the 50 Hz notch is skipped there.
        "preprocess_overrides": {"clamp_h_freq": True},
        "class_names": SLEEP_STAGES,
        # Leave one excerpt out: test one, validate on the next, train on the other four.
        "splits": {"cv": SplitSpec(unit="excerpt", n_folds=None, val_groups=1)},
        "baseline": "sleep_spectral",
        "metrics": ("cohen_kappa", "f1_macro", "accuracy", "balanced_accuracy"),
        "hypnogram": True,
        "exclude_recordings": {
            "dreams_spindles/excerpt3_psg": "the whole PSG of excerpt 3, whose C3-A1 the task "
            "takes from excerpt3.txt; its hypnogram is a signal channel, not per-sample labels",
        },
    }
    # Each excerpt has one central derivation, C3-A1 (excerpts 1, 3) or CZ-A1 (the others),
    # which preprocessing names C3 or CZ; every window presents it as channel CZ.
    derivation = ("CZ", "C3")
    stages = {i: i for i in range(len(SLEEP_STAGES))}
    return (
        Task(
            name="dreams_sleep_staging",
            description=(
                "sleep staging W/N1/N2/N3/REM of 30-s epochs (the majority of six 5-s R&K "
                "stages, S3+S4 -> N3) on each DREAMS Sleep Spindles excerpt's central derivation"
            ),
            window=WindowSpec(seconds=30.0, label_mode="majority", label_map=stages,
                              derivation=derivation, derivation_name="CZ"),
            **common,
        ),
        Task(
            name="dreams_sleep_staging_5s",
            description=(
                "sleep staging W/N1/N2/N3/REM of 5-s epochs (the experts' R&K scoring "
                "resolution, S3+S4 -> N3) on each DREAMS Sleep Spindles excerpt's central "
                "derivation"
            ),
            # "majority", not "samples": the windows stay on the experts' 5-s grid (a run of
            # equal labels tiled by "samples" need not start on it), and each window's majority
            # is its expert stage, with unscored epochs dropped and counted as in the 30-s task.
            window=WindowSpec(seconds=5.0, label_mode="majority", label_map=stages,
                              derivation=derivation, derivation_name="CZ"),
            **common,
        ),
    )


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="eegmat",
            dataset="eegmat",
            description="rest (file _1) vs mental arithmetic (file _2), 19-channel EEG",
            preprocessing="labram",
            window=WindowSpec(
                seconds=5.0, label_mode="recording", label_map={"rest": 0, "arithmetic": 1}
            ),
            class_names=("rest", "arithmetic"),
            splits={
                # 32 subjects (the mirror's) in 8 folds of 4: test 4, validate 4, train 24.
                "cv": SplitSpec(unit="subject", n_folds=8, val_groups=1),
                "fixed": EEGMAT_FIXED_SPLIT,
            },
            baseline="bandpower_logreg",
            metrics=("auroc", "auc_pr", "balanced_accuracy", "accuracy"),
        ),
        Task(
            name="dreams_sleep",
            dataset="dreams_sleep",
            description="sleep staging W/N1/N2/N3/REM on 30-s epochs of one EEG derivation",
            preprocessing="labram",
            window=WindowSpec(
                seconds=30.0,
                # Per-sample labels index SLEEP_STAGES (-1 = unscored, never windowed).
                label_mode="samples",
                label_map={i: i for i in range(len(SLEEP_STAGES))},
                derivation=("CZ", "C3", "C4", "FPZ", "FP1", "O1"),
            ),
            class_names=SLEEP_STAGES,
            splits={"cv": SplitSpec(unit="excerpt", n_folds=None, val_groups=2)},
            baseline="bandpower_logreg",
            metrics=("accuracy", "f1_macro", "cohen_kappa", "balanced_accuracy"),
            hypnogram=True,
        ),
        *_dreams_sleep_staging_tasks(),
        Task(
            name="myo_gestures",
            dataset="myo_gestures",
            description="8 wrist gestures from 8-channel forearm EMG (Myo armband)",
            preprocessing="emg",
            window=WindowSpec(
                seconds=1.0,
                stride_seconds=0.5,
                label_mode="samples",
                label_map={k: k for k in range(len(MYO_GESTURES))},
            ),
            class_names=MYO_GESTURES,
            splits={"cv": SplitSpec(unit="participant", n_folds=5, val_groups=1)},
            baseline="emg_td_lda",
            # Each file holds one gesture (alternating with rest), so a per-recording z-score
            # would normalise by statistics that depend on the label; keep device units.
            preprocess_overrides={"scale": "none"},
            metrics=("accuracy", "f1_macro", "balanced_accuracy", "cohen_kappa"),
        ),
        Task(
            name="bi2012_p300",
            dataset="bi2012_p300",
            description="P300 speller: target vs non-target EEG epochs of 1 s after each flash",
            preprocessing="labram",
            window=WindowSpec(
                seconds=1.0,
                label_mode="annotations",
                label_map={"nontarget": 0, "target": 1},
                event_offset_seconds=0.0,
            ),
            class_names=("nontarget", "target"),
            splits={"cv": SplitSpec(unit="subject", n_folds=5, val_groups=1)},
            baseline="bandpower_logreg",
            # The release is sampled at 128 Hz, below what a 75 Hz low-pass needs.
            preprocess_overrides={"clamp_h_freq": True},
            metrics=("auroc", "auc_pr", "balanced_accuracy", "accuracy"),
        ),
        Task(
            name="graz_mi",
            dataset="graz_mi",
            description="motor imagery, left vs right hand: 4 s of EEG from 0.5 s after the cue",
            preprocessing="labram",
            window=WindowSpec(
                seconds=4.0,
                label_mode="annotations",
                label_map={"left_hand": 0, "right_hand": 1},
                event_offset_seconds=0.5,
                # The sensorimotor channels that BCI IV 2a (22 EEG) and 2b (3 EEG) share.
                channels=("C3", "CZ", "C4"),
            ),
            class_names=("left_hand", "right_hand"),
            splits={"cv": SplitSpec(unit="subject", n_folds=None, val_groups=1)},
            baseline="bandpower_logreg",
            metrics=("auroc", "auc_pr", "balanced_accuracy", "accuracy"),
        ),
    )
}


def get_task(name: str) -> Task:
    """The task registered under ``name``; :class:`ConfigError` listing the known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def list_tasks() -> list[str]:
    """Names of the defined tasks."""
    return list(TASKS)
