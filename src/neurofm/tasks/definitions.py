"""Downstream tasks, defined once and shared by the CLI, the tests, the benchmarks and the demo.

A :class:`Task` names its dataset (a registry entry), the preprocessing recipe, how windows and
their labels are cut from the prepared corpus (:class:`WindowSpec`), the class names, how the
subjects are split into folds (:class:`SplitSpec`), the metric used for model selection and the
classical baseline to compare against. Splits are always by subject (participant, sleep excerpt),
never by window: no subject's windows appear in two partitions of a fold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Hashable, Mapping, Sequence

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
            windows lie wholly inside one label) or ``"annotations"`` (annotation descriptions).
        label_map: source label (recording label, sample value, annotation description) -> class
            id ``0..K-1``; labels absent from the map are not windowed.
        event_offset_seconds: ``"annotations"`` only: one window per annotation, starting this
            many seconds after its onset, instead of tiling the annotated span.
        channels: keep exactly these channels (as the corpus names them), in this order; every
            recording must have them. ``None`` keeps every channel.
        derivation: for single-derivation tasks, candidate channel names in order of
            preference; the first one a recording has is its only channel.
    """

    seconds: float
    stride_seconds: float | None = None
    label_mode: str = "recording"
    label_map: Mapping[Hashable, int] = field(default_factory=dict)
    event_offset_seconds: float | None = None
    channels: tuple[str, ...] | None = None
    derivation: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.channels is not None and self.derivation is not None:
            raise ConfigError("a window spec takes channels or a derivation, not both")

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
    equal groups (``n_folds=None``: one subject per group, i.e. leave one subject out). Fold ``i``
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
        n_folds = len(distinct) if self.n_folds is None else self.n_folds
        if n_folds < 2 or self.val_groups < 1 or n_folds < self.val_groups + 2:
            raise ConfigError(
                f"{len(distinct)} {self.unit}(s) cannot form {n_folds} folds with {self.val_groups} "
                f"validation group(s): each fold needs test, validation and training {self.unit}s"
            )
        if len(distinct) < n_folds:
            raise ConfigError(
                f"only {len(distinct)} {self.unit}(s) ({', '.join(distinct)}) for {n_folds} folds; "
                f"use fewer folds or add {self.unit}s"
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
                seed=self.seed, name=f"fold{index}",
            ))
        return folds

    def corpus_folds(self, corpus: Corpus, recording_ids: Sequence[str] | None = None
                     ) -> list[Split]:
        """:meth:`folds` over the subjects of ``corpus`` (or of its ``recording_ids``)."""
        ids = sorted(corpus.ids) if recording_ids is None else list(recording_ids)
        members: dict[str, list[str]] = {}
        for rid in ids:
            members.setdefault(group_of(corpus[rid], "subject"), []).append(rid)
        return self.folds(members)

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
        split: the subject-wise split.
        baseline: the classical baseline in :data:`neurofm.tasks.baselines.BASELINES`.
        metrics: the metrics its report leads with (all metrics are always computed).
        hypnogram: windows are consecutive epochs of a night, so reports plot the true and the
            predicted class over time per recording (sleep staging).
    """

    name: str
    dataset: str
    description: str
    preprocessing: str
    window: WindowSpec
    class_names: tuple[str, ...]
    split: SplitSpec
    baseline: str
    metrics: tuple[str, ...] = ("accuracy", "balanced_accuracy", "cohen_kappa", "f1_macro")
    hypnogram: bool = False
    preprocess_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
            "split": {**asdict(self.split), "description": self.split.describe()},
            "primary_metric": self.primary_metric,
            "baseline": self.baseline,
            "metrics": list(self.metrics),
            "hypnogram": self.hypnogram,
        }


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
            split=SplitSpec(unit="subject", n_folds=6, val_groups=1),
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
            split=SplitSpec(unit="excerpt", n_folds=None, val_groups=2),
            baseline="bandpower_logreg",
            metrics=("accuracy", "f1_macro", "cohen_kappa", "balanced_accuracy"),
            hypnogram=True,
        ),
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
            split=SplitSpec(unit="participant", n_folds=5, val_groups=1),
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
            split=SplitSpec(unit="subject", n_folds=5, val_groups=1),
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
            split=SplitSpec(unit="subject", n_folds=None, val_groups=1),
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
