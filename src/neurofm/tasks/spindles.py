"""Sleep spindle detection on the DREAMS Sleep Spindles excerpts, scored event by event.

**Events.** A spindle is an interval ``(start, end)`` in seconds from the excerpt start; a set of
them is a float array ``[n, 2]`` sorted by start (:func:`spindle_events` reads a scoring from a
:class:`~neurofm.data.recording.Recording` read by
:func:`neurofm.data.layouts.read_dreams_spindles_excerpt`, whose annotations hold every scoring).

**Matching** (:func:`match_events`). A detection is a true positive when it overlaps a reference
spindle: Devuyst et al. (IEEE EMBC 2011), who published the database, score "by event" in this
way. The rule is YASA's ``compare_detection(method="intersection")`` (yasa >= 0.8): a detection
and a reference event may pair when their overlap is positive and their intersection over union
(IoU) is at least :attr:`OverlapCriterion.iou_threshold`; the pairing is one-to-one (a maximum
bipartite matching), so a detection that overlaps two reference spindles counts one true
positive, and the second spindle is a false negative unless another detection pairs with it.
Events that only touch (one ends where the other starts) never match. The default threshold 0
is "any overlap" (:data:`ANY_OVERLAP`); :data:`IOU_02` is the IoU >= 0.2 criterion of Warby et
al. (Nature Methods 2014), YASA's default.

**Metrics** (:class:`EventCounts`): precision TP / (TP + FP), recall TP / (TP + FN), and
F1 = 2 TP / (2 TP + FP + FN), the harmonic mean of the two. Per excerpt, and pooled by summing
TP, FP and FN over the excerpts. Precision is undefined (``None``, "n/a") without detections,
recall without reference spindles, F1 when there is neither; F1 is 0 when only one side is empty.

**Scored spans.** Expert 1 scored only the first 1000 s of each excerpt (:data:`EXPERT1_SCORED_SECONDS`;
the database's own README on github.com/numediart/The-DREAMS-Databases-and-Assessment-algorithm
says expert 1's scoring was cut off after 1000 s, and no expert-1 spindle starts later); expert 2
scored the whole 30 min of excerpts 1-6 and gave nearly every spindle a fixed 1-s duration.
A comparison keeps, on both sides, the events that start inside the reference's scored span.

**References** (:data:`REFERENCES`): each expert, their ``union`` (expert 1's spindles plus those
of expert 2 that match none of expert 1's) and ``both`` (expert 1's spindles that expert 2 also
marked), the last two over the first 1000 s and formed with the same criterion as the scoring.

**Systems** (:data:`SYSTEMS`): the detector whose output the database ships
(``Automatic_detection_excerptN.txt``, Devuyst et al.'s own), YASA's ``spindles_detect`` with its
default settings on the whole excerpt (``yasa``) or on the expert-staged N1-N3 sleep only
(``yasa_nrem``), and expert 2 against expert 1 (the inter-rater agreement, the human bar).

Spindle detection is scored on events over whole excerpts, not on windows with labels and folds,
so it is not a :class:`~neurofm.tasks.definitions.Task`: :func:`evaluate_spindles` is the entry
point, and ``benchmarks/spindles.py`` writes its report. YASA is the optional extra
``neurofm[sleep]``.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofm.data.recording import Recording
from neurofm.errors import ConfigError, RecordingError
from neurofm.tasks.sleep import _INSTALL
from neurofm.units import scale_factor

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

#: Expert 1 scored the first 1000 s of each excerpt only.
EXPERT1_SCORED_SECONDS = 1000.0

#: Scoring name -> annotation description given by the DREAMS spindles reader.
SCORINGS: dict[str, str] = {
    "expert1": "spindle_expert1",
    "expert2": "spindle_expert2",
    "dreams_detector": "spindle_automatic",
}

#: Reference scorings a system is compared with, and what each is.
REFERENCES: dict[str, str] = {
    "expert1": "expert 1, first 1000 s",
    "expert2": "expert 2, whole excerpt",
    "union": "expert 1 or expert 2, first 1000 s",
    "both": "expert 1 and expert 2, first 1000 s",
}

#: Systems scored against the references, and what each is.
SYSTEMS: dict[str, str] = {
    "dreams_detector": "the database's automatic detector (Devuyst et al. 2011)",
    "yasa": "YASA spindles_detect, default settings, whole excerpt",
    "yasa_nrem": "YASA spindles_detect, default settings, expert-staged N1-N3 only",
    "expert2": "expert 2 (inter-rater agreement)",
}

#: YASA's default broad band's upper edge (Hz): a slower signal is upsampled before detection.
YASA_BROAD_BAND_HIGH = 30.0
#: The rate (Hz) a signal too slow for YASA's broad band is upsampled to (at least).
YASA_MIN_SFREQ = 100.0
#: YASA's hypnogram code for unscored samples (neurofm labels them -1).
_YASA_UNSCORED = -2


def _yasa() -> Any:
    try:
        return importlib.import_module("yasa")
    except ImportError as error:
        raise ImportError(f"spindle scoring needs 'yasa': {_INSTALL}") from error


# --------------------------------------------------------------------------- events, matching


def as_events(events: Any, what: str = "events") -> np.ndarray:
    """``events`` (pairs of start and end in seconds) as a float array ``[n, 2]`` sorted by start.

    Raises:
        ValueError: naming ``what`` and the first bad event, for a shape that is not pairs, a
            non-finite time or an event that does not end after it starts.
    """
    array = np.asarray(events, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{what}: expected (start, end) pairs in seconds, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1) | (array[:, 1] <= array[:, 0]))
    if bad.size:
        start, end = array[bad[0]]
        raise ValueError(f"{what}: event {bad[0]} ({start:g}, {end:g}) s must be finite and end "
                         "after it starts")
    return array[np.argsort(array[:, 0], kind="stable")]


def starting_within(events: np.ndarray, start: float, end: float) -> np.ndarray:
    """The events whose start lies in ``[start, end)`` seconds."""
    return events[(events[:, 0] >= start) & (events[:, 0] < end)]


@dataclass(frozen=True)
class OverlapCriterion:
    """When a detection and a reference spindle may pair: a positive overlap, and an
    intersection over union of at least ``iou_threshold`` (0 = any overlap; 0 to 1)."""

    iou_threshold: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.iou_threshold) and 0.0 <= self.iou_threshold <= 1.0):
            raise ConfigError(f"iou_threshold={self.iou_threshold!r} must be a number from 0 (any "
                              "overlap) to 1 (identical events)")

    @property
    def name(self) -> str:
        """``"any overlap"`` or ``"IoU >= 0.2"``."""
        return "any overlap" if self.iou_threshold == 0 else f"IoU >= {self.iou_threshold:g}"


#: Devuyst et al. 2011's by-event rule: a detection that overlaps a reference spindle.
ANY_OVERLAP = OverlapCriterion(0.0)
#: Warby et al. 2014's criterion (YASA's default): intersection over union at least 0.2.
IOU_02 = OverlapCriterion(0.2)


@dataclass(frozen=True)
class EventCounts:
    """True positives, false positives and false negatives of one comparison."""

    tp: int
    fp: int
    fn: int

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def n_detections(self) -> int:
        return self.tp + self.fp

    @property
    def n_references(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP); ``None`` without detections."""
        return self.tp / self.n_detections if self.n_detections else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN); ``None`` without reference spindles."""
        return self.tp / self.n_references if self.n_references else None

    @property
    def f1(self) -> float | None:
        """2 TP / (2 TP + FP + FN); ``None`` with neither detections nor references."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "n_detections": self.n_detections,
                "n_references": self.n_references, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


def _compare(detections: np.ndarray, references: np.ndarray,
             criterion: OverlapCriterion) -> dict[str, Any]:
    detections = as_events(detections, "detections")
    references = as_events(references, "references")
    return dict(_yasa().compare_detection(detections, references, method="intersection",
                                          iou_threshold=criterion.iou_threshold))


def match_events(detections: Any, references: Any,
                 criterion: OverlapCriterion = ANY_OVERLAP) -> EventCounts:
    """Score ``detections`` against ``references`` (events in seconds) under ``criterion``,
    with YASA's one-to-one matching (module docstring)."""
    result = _compare(detections, references, criterion)
    return EventCounts(len(result["tp"]), len(result["fp"]), len(result["fn"]))


def expert_union(first: Any, second: Any, criterion: OverlapCriterion = ANY_OVERLAP) -> np.ndarray:
    """Spindles either expert marked: all of ``first``'s, and those of ``second`` that match none
    of ``first``'s under ``criterion`` (each spindle once, with its own expert's times)."""
    first = as_events(first, "first expert")
    unmatched = np.asarray(_compare(second, first, criterion)["fp"]).reshape(-1, 2)
    return as_events(np.concatenate([first, unmatched]), "union")


def expert_consensus(first: Any, second: Any,
                     criterion: OverlapCriterion = ANY_OVERLAP) -> np.ndarray:
    """Spindles both experts marked: ``first``'s events that match one of ``second``'s under
    ``criterion``, with ``first``'s times (expert 2's durations are a fixed 1 s)."""
    return as_events(np.asarray(_compare(first, second, criterion)["tp"]).reshape(-1, 2), "both")


# --------------------------------------------------------------------------- the excerpts


def spindle_events(recording: Recording, scoring: str) -> np.ndarray:
    """One scoring's spindles (:data:`SCORINGS`) in a DREAMS spindles recording, in seconds.

    Raises:
        ConfigError: for a scoring name not in :data:`SCORINGS`.
        RecordingError: naming the file, when the recording holds no such scoring.
    """
    if scoring not in SCORINGS:
        raise ConfigError(f"unknown spindle scoring {scoring!r}; known: {', '.join(SCORINGS)}")
    description = SCORINGS[scoring]
    if description not in recording.meta.get("spindle_scorings", {}):
        raise RecordingError(
            f"{recording.source}: no {scoring} spindle scoring was read with this excerpt "
            "(expert 2 scored excerpts 1-6 only); read it with "
            "neurofm.data.layouts.read_dreams_spindles_excerpt and its scoring files")
    return as_events([(a.onset, a.onset + a.duration) for a in recording.annotations
                      if a.description == description], f"{recording.source} {scoring}")


def has_scoring(recording: Recording, scoring: str) -> bool:
    """Whether ``recording`` holds the spindle scoring named ``scoring``."""
    return SCORINGS[scoring] in recording.meta.get("spindle_scorings", {})


def load_dreams_spindle_excerpts(dataset_dir: str | Path | None = None) -> dict[str, Recording]:
    """The DREAMS Sleep Spindles text excerpts present (``{"excerpt1": Recording, ...}``), read
    through the registry from ``dataset_dir`` or, without it, the verified local copy."""
    from neurofm.datasets.registry import READ_DREAMS_SPINDLES_EXCERPT, get_dataset

    spec = get_dataset("dreams_spindles")
    sources = [s for s in spec.sources(dataset_dir) if s.reader == READ_DREAMS_SPINDLES_EXCERPT]
    if not sources:
        where = dataset_dir if dataset_dir is not None else "the local mirror or cache"
        raise RecordingError(f"{where}: no DREAMS spindles excerpt with all its files; run "
                             "`neurofm datasets fetch dreams_spindles`")
    return {str(s.subject): s.load() for s in sources}


def _yasa_input(recording: Recording, channel: int) -> tuple[np.ndarray, float, np.ndarray | None,
                                                                 str | None]:
    """The channel in µV at a rate YASA's broad band fits, the per-sample stages, and a note."""
    try:
        to_uv = scale_factor(recording.unit, "uV")
    except KeyError:
        raise RecordingError(f"{recording.source}: YASA needs a physical unit (µV), the signal "
                             f"is in {recording.unit!r}") from None
    if not 0 <= channel < recording.n_channels:
        raise ConfigError(f"{recording.source}: channel {channel} out of range "
                          f"({recording.n_channels} channels)")
    signal = recording.signal[channel].astype(np.float64) * to_uv
    labels = recording.labels
    sfreq = recording.sfreq
    if sfreq > 2 * YASA_BROAD_BAND_HIGH:
        return signal, sfreq, labels, None
    from scipy.signal import resample_poly

    factor = math.ceil(YASA_MIN_SFREQ / sfreq)
    note = (f"{recording.source}: {sfreq:g} Hz is too slow for YASA's 1-30 Hz broad band; "
            f"upsampled x{factor} to {sfreq * factor:g} Hz (scipy resample_poly)")
    upsampled = None if labels is None else np.repeat(labels, factor)
    return resample_poly(signal, factor, 1), sfreq * factor, upsampled, note


def yasa_spindles(recording: Recording, *, nrem_only: bool = False,
                  channel: int = 0) -> tuple[np.ndarray, list[str]]:
    """YASA's ``spindles_detect`` (default settings) on one channel: ``(events, notes)``.

    The signal goes in µV at its rate; a rate at or below 60 Hz (excerpt 3: 50 Hz) is upsampled
    by an integer factor to at least 100 Hz first, since YASA band-passes 1-30 Hz. With
    ``nrem_only`` the recording's per-sample stages (``labels``) restrict detection to N1-N3
    (YASA's ``include=(1, 2, 3)``; neurofm's stage indices are YASA's codes). ``notes`` hold the
    resampling and YASA's distinct warnings.
    """
    yasa = _yasa()
    signal, sfreq, labels, note = _yasa_input(recording, channel)
    notes = [note] if note else []
    hypno = None
    if nrem_only:
        if labels is None:
            raise RecordingError(f"{recording.source}: no hypnogram was read with this excerpt, "
                                 "so detection cannot be restricted to N1-N3")
        hypno = np.where(labels < 0, _YASA_UNSCORED, labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = yasa.spindles_detect(signal, sfreq, hypno=hypno, include=(1, 2, 3))
    notes += sorted({f"{recording.source}: yasa: {w.message}" for w in caught})
    if found is None:
        return np.zeros((0, 2)), notes
    summary = found.summary()
    events = summary[["Start", "End"]].to_numpy(dtype=np.float64)
    return as_events(events, f"{recording.source} yasa"), notes


# --------------------------------------------------------------------------- evaluation


@dataclass
class Comparison:
    """One system against one reference: counts per excerpt and pooled."""

    system: str
    reference: str
    per_excerpt: dict[str, EventCounts]

    @property
    def pooled(self) -> EventCounts:
        return sum(self.per_excerpt.values(), EventCounts(0, 0, 0))

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "reference": self.reference,
                "excerpts": list(self.per_excerpt), "pooled": self.pooled.as_dict(),
                "per_excerpt": {k: v.as_dict() for k, v in self.per_excerpt.items()}}


@dataclass
class SpindleEvaluation:
    """Every system against every reference under one criterion, with the events compared."""

    criterion: OverlapCriterion
    excerpts: list[str]
    comparisons: list[Comparison]
    #: system or reference name -> excerpt -> events (whole excerpt, seconds).
    events: dict[str, dict[str, np.ndarray]] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def comparison(self, system: str, reference: str) -> Comparison:
        for item in self.comparisons:
            if (item.system, item.reference) == (system, reference):
                return item
        raise KeyError(f"no comparison of {system!r} with {reference!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the criterion, the definitions, the counts and metrics, the notes."""
        return {
            "criterion": {"name": self.criterion.name, "iou_threshold": self.criterion.iou_threshold,
                          "matching": "yasa.compare_detection(method='intersection'), one-to-one"},
            "yasa_version": _yasa().__version__,
            "expert1_scored_seconds": EXPERT1_SCORED_SECONDS,
            "excerpts": self.excerpts,
            "systems": {k: SYSTEMS[k] for k in dict.fromkeys(c.system for c in self.comparisons)},
            "references": REFERENCES,
            "comparisons": [c.as_dict() for c in self.comparisons],
            "notes": self.notes,
        }

    def markdown(self) -> str:
        """Two Markdown tables: pooled counts and metrics, then F1 per excerpt."""
        def number(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        header = ("| System | Reference | Excerpts | Reference spindles | Detections | TP | FP | FN "
                  "| Precision | Recall | F1 |")
        intro = (f"Criterion: {self.criterion.name} (one-to-one matching, YASA compare_detection); "
                 "pooled = TP, FP, FN summed over the excerpts.")
        lines = [intro, "", header, "|---|---|---|---|---|---|---|---|---|---|---|"]
        for item in self.comparisons:
            p = item.pooled
            lines.append(f"| {item.system} | {REFERENCES[item.reference]} | {len(item.per_excerpt)} "
                         f"| {p.n_references} | {p.n_detections} | {p.tp} | {p.fp} | {p.fn} "
                         f"| {number(p.precision)} | {number(p.recall)} | {number(p.f1)} |")
        lines += ["", "| System | Reference | " + " | ".join(self.excerpts) + " | pooled |",
                  "|---|---|" + "---|" * (len(self.excerpts) + 1)]
        for item in self.comparisons:
            cells = [number(item.per_excerpt[e].f1) if e in item.per_excerpt else "—"
                     for e in self.excerpts]
            lines.append(f"| {item.system} | {item.reference} | " + " | ".join(cells)
                         + f" | {number(item.pooled.f1)} |")
        return "\n".join(lines) + "\n"


def _span(reference: str, recording: Recording) -> tuple[float, float]:
    return (0.0, recording.duration) if reference == "expert2" else (0.0, EXPERT1_SCORED_SECONDS)


def evaluate_spindles(
    recordings: Mapping[str, Recording] | None = None,
    *,
    criterion: OverlapCriterion = ANY_OVERLAP,
    systems: Sequence[str] = tuple(SYSTEMS),
    dataset_dir: str | Path | None = None,
) -> SpindleEvaluation:
    """Score ``systems`` (:data:`SYSTEMS`) against each reference (:data:`REFERENCES`) under
    ``criterion`` on the DREAMS spindles excerpts (``recordings``, by excerpt name; read with
    :func:`load_dreams_spindle_excerpts` from ``dataset_dir`` when omitted).

    An excerpt without a scoring that a comparison needs (expert 2 for excerpts 7-8) is left out
    of that comparison and said in the notes. Expert 2 is compared with expert 1 only (it is part
    of the other references). Returns the counts per excerpt and pooled, the events, the notes.
    """
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ConfigError(f"unknown spindle system(s) {unknown}; known: {', '.join(SYSTEMS)}")
    if recordings is None:
        recordings = load_dreams_spindle_excerpts(dataset_dir)
    if not recordings:
        raise ConfigError("no excerpts to score")
    notes: list[str] = []
    events: dict[str, dict[str, np.ndarray]] = {}
    needed = [s for s in SCORINGS if s != "dreams_detector" or s in systems]
    for name, recording in recordings.items():
        for scoring in needed:
            if has_scoring(recording, scoring):
                events.setdefault(scoring, {})[name] = spindle_events(recording, scoring)
            else:
                notes.append(f"{name}: no {scoring} scoring; left out of its comparisons")
        for system, nrem_only in (("yasa", False), ("yasa_nrem", True)):
            if system in systems:
                found, yasa_notes = yasa_spindles(recording, nrem_only=nrem_only)
                events.setdefault(system, {})[name] = found
                notes += [n for n in yasa_notes if n not in notes]
        if name in events.get("expert1", {}) and name in events.get("expert2", {}):
            first = starting_within(events["expert1"][name], 0.0, EXPERT1_SCORED_SECONDS)
            second = starting_within(events["expert2"][name], 0.0, EXPERT1_SCORED_SECONDS)
            events.setdefault("union", {})[name] = expert_union(first, second, criterion)
            events.setdefault("both", {})[name] = expert_consensus(first, second, criterion)
    comparisons = []
    for system in systems:
        for reference in REFERENCES:
            if system == "expert2" and reference != "expert1":
                continue
            per_excerpt = {}
            for name, recording in recordings.items():
                if name not in events.get(system, {}) or name not in events.get(reference, {}):
                    continue
                start, end = _span(reference, recording)
                per_excerpt[name] = match_events(
                    starting_within(events[system][name], start, end),
                    starting_within(events[reference][name], start, end), criterion)
            comparisons.append(Comparison(system, reference, per_excerpt))
    return SpindleEvaluation(criterion, list(recordings), comparisons, events, notes)


# --------------------------------------------------------------------------- figure


def busiest_stretch(events: Sequence[np.ndarray], seconds: float = 60.0,
                    end: float = EXPERT1_SCORED_SECONDS, step: float = 10.0) -> float:
    """The start (a multiple of ``step``, the stretch inside ``[0, end]``) of the ``seconds``-long
    stretch where the most of ``events`` start; the earliest such stretch on a tie."""
    starts = np.concatenate([e[:, 0] for e in events]) if events else np.zeros(0)
    grid = np.arange(0.0, max(end - seconds, 0.0) + step / 2, step)
    counts = [int(np.sum((starts >= g) & (starts < g + seconds))) for g in grid]
    return float(grid[int(np.argmax(counts))])


def plot_spindle_stretch(recording: Recording, rows: Mapping[str, np.ndarray], path: str | Path,
                         *, start: float, seconds: float = 60.0) -> Path:
    """A PNG of ``seconds`` of the first channel from ``start`` (µV, and its 11-16 Hz sigma band)
    with one row of event bars per entry of ``rows`` (label -> events in seconds) beneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import butter, sosfiltfilt

    from neurofm.tasks.reports import _save_figure

    if not 0 <= start < recording.duration:
        raise ConfigError(f"start={start:g} s is outside {recording.source} "
                          f"({recording.duration:g} s)")
    sfreq = recording.sfreq
    first, last = int(round(start * sfreq)), min(recording.n_samples,
                                                 int(round((start + seconds) * sfreq)))
    signal = recording.signal[0].astype(np.float64) * scale_factor(recording.unit, "uV")
    sigma = sosfiltfilt(butter(4, (11.0, min(16.0, 0.45 * sfreq)), "bandpass", fs=sfreq,
                               output="sos"), signal)
    time = np.arange(first, last) / sfreq
    figure: plt.Figure
    figure, (top, middle, bottom) = plt.subplots(
        3, 1, sharex=True, figsize=(12, 4.8), gridspec_kw={"height_ratios": [3, 1.5, 2]})
    top.plot(time, signal[first:last], lw=0.5, color="black")
    top.set_ylabel(f"{recording.ch_names[0]} (µV)")
    middle.plot(time, sigma[first:last], lw=0.5, color="tab:blue")
    middle.set_ylabel("11-16 Hz")
    for row, events in enumerate(rows.values()):
        shown = events[(events[:, 1] > start) & (events[:, 0] < start + seconds)]
        bars = [(s, e - s) for s, e in shown]
        bottom.broken_barh(bars, (row - 0.35, 0.7), color=f"C{row}")
    bottom.set_yticks(range(len(rows)), list(rows))
    bottom.set_ylim(len(rows) - 0.5, -0.5)
    bottom.set_xlim(start, start + seconds)
    bottom.set_xlabel("time from excerpt start (s)")
    top.set_title(f"{Path(str(recording.source)).name}: {seconds:g} s from {start:g} s")
    return _save_figure(figure, Path(path))
