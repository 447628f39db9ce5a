"""Readers for dataset layouts that are not a single MNE-readable file.

Each returns a :class:`~neurofm.data.recording.Recording` with its unit and sampling rate stated:

- :func:`read_myo_gesture_file` — Myo armband CSV text, one file per gesture (``myo_gestures``).
- :func:`read_dreams_excerpt` — DREAMS: signal text file(s) or a Subjects-database EDF, plus the
  5-s hypnogram text.
- :func:`read_dreams_spindles_excerpt` — DREAMS Sleep Spindles: one 30-min derivation as text at
  a rate the caller states, with its hypnogram and spindle scorings.
- :func:`read_sleep_edf` — Sleep-EDF: PSG EDF + hypnogram EDF (R&K stages mapped to AASM).
- :func:`read_bi2012` — Brain Invaders 2012 P300: neurofm's documented NPZ layout or the
  release's MATLAB files.
- :func:`read_bci_iv_mi` — BCI Competition IV 2a/2b motor imagery GDF files.

Sleep recordings carry per-sample ``labels`` indexing :data:`SLEEP_STAGES` (``-1`` = unscored) and
one annotation per run of equal stages. Annotations outside a recording are dropped with a line
in ``meta["warnings"]``; label files that disagree with the signal raise
:class:`~neurofm.errors.RecordingError` naming the files.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.data.readers import (
    SUPPORTED_EXTENSIONS,
    infer_channel_type,
    keep_annotations_inside,
    read_annotations_file,
    read_raw,
    read_recording,
    recording_from_raw,
)
from neurofm.data.recording import Annotation, Recording
from neurofm.errors import RecordingError

#: AASM sleep stages; per-sample sleep labels are indices into this tuple.
SLEEP_STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")

#: Sleep-EDF hypnogram descriptions (R&K) -> AASM stage; "Sleep stage ?" and "Movement time"
#: are unscored and absent here.
SLEEP_EDF_TO_AASM: dict[str, str] = {
    "Sleep stage W": "W",
    "Sleep stage 1": "N1",
    "Sleep stage 2": "N2",
    "Sleep stage 3": "N3",
    "Sleep stage 4": "N3",
    "Sleep stage R": "REM",
}

#: DREAMS R&K hypnogram codes (one per 5 s) -> AASM: 5 wake, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4.
#: -1 (movement) and -2/-3 (unknown) are unscored (:data:`DREAMS_RK_UNSCORED`).
DREAMS_RK_TO_AASM: dict[int, str] = {5: "W", 4: "REM", 3: "N1", 2: "N2", 1: "N3", 0: "N3"}
#: DREAMS R&K codes that score no stage; any code outside these and :data:`DREAMS_RK_TO_AASM`
#: is refused.
DREAMS_RK_UNSCORED: frozenset[int] = frozenset({-1, -2, -3})

#: DREAMS AASM hypnogram codes (files headed ``[HypnogramAASM]``): 5 wake, 4 REM, 3 N1, 2 N2,
#: 1 N3; zero and negative codes are unscored, codes above 5 are refused.
DREAMS_AASM_CODES: dict[int, str] = {5: "W", 4: "REM", 3: "N1", 2: "N2", 1: "N3"}

#: Seconds per DREAMS hypnogram value.
DREAMS_EPOCH_SECONDS = 5.0

#: Myo gesture labels (the 9th column of every line).
MYO_GESTURES: tuple[str, ...] = (
    "rest", "flexion", "extension", "radial_deviation", "ulnar_deviation",
    "pronation", "supination", "fist",
)
#: The Myo armband's nominal rate; the CSV layout has no timestamps, so this is not measured.
MYO_NOMINAL_SFREQ = 200.0

#: Brain Invaders 2012 per-sample stimulus codes (MOABB BI2012: NonTarget 1, Target 2).
BI2012_STIMULUS_CODES: dict[int, str] = {1: "nontarget", 2: "target"}

#: BCI Competition IV 2a/2b cue event types -> class names (2b uses 769/770 only).
BCI_IV_CUES: dict[str, str] = {
    "769": "left_hand", "770": "right_hand", "771": "feet", "772": "tongue",
}


# --------------------------------------------------------------------------- sleep stages


def _labels_from_stage_spans(
    spans: Sequence[Annotation], n_samples: int, sfreq: float
) -> np.ndarray:
    """Per-sample stage indices (``-1`` = unscored) from AASM stage annotations."""
    labels = np.full(n_samples, -1, dtype=np.int64)
    index = {stage: i for i, stage in enumerate(SLEEP_STAGES)}
    for span in spans:
        start = int(round(span.onset * sfreq))
        stop = min(n_samples, int(round((span.onset + span.duration) * sfreq)))
        labels[start:stop] = index[span.description]
    return labels


def _merge_epochs(stages: Sequence[str | None], epoch_seconds: float) -> list[Annotation]:
    """One annotation per run of equal scored stages; unscored epochs produce none."""
    spans: list[Annotation] = []
    start = 0
    for i in range(1, len(stages) + 1):
        if i == len(stages) or stages[i] != stages[start]:
            stage = stages[start]
            if stage is not None:
                spans.append(Annotation(start * epoch_seconds, (i - start) * epoch_seconds, stage))
            start = i
    return spans


# --------------------------------------------------------------------------- Myo armband


def _myo_bad_line(path: Path, n_columns: int = 9) -> RecordingError:
    """Find the first malformed line to name it in the error (only run once parsing failed)."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            values = text.split(",")
            if len(values) != n_columns:
                return RecordingError(
                    f"{path}, line {number}: {len(values)} values, expected {n_columns} (8 EMG "
                    "values and the gesture label); the label column disagrees with the signal: "
                    "repair or re-download the file"
                )
            try:
                [int(v) for v in values]
            except ValueError:
                return RecordingError(
                    f"{path}, line {number}: non-numeric value in {text[:60]!r}; every line must "
                    "hold 8 integer EMG values and an integer label: repair or re-download the file"
                )
    return RecordingError(f"{path}: cannot be parsed as Myo gesture CSV; re-download the file")


def read_myo_gesture_file(
    path: str | Path, participant: str | None = None, session: str | None = None
) -> Recording:
    """Read one Myo armband gesture file (``<participant>-<session>/<label>.txt``).

    Each line holds 8 comma-separated EMG values (signed 8-bit device counts) and the gesture
    label of that sample (0-7, see :data:`MYO_GESTURES`). Returns 8 ``emg`` channels
    ``EMG1..EMG8`` as float32 ``[8, T]`` in ``unit="device"``, ``sfreq=200.0`` (the device's
    nominal rate; the file has no timestamps, recorded in ``meta["sfreq_note"]``) and per-sample
    ``labels`` ``[T]``. Participant and session come from the folder name when not given.

    Raises:
        RecordingError: naming the file and line, for lines without exactly 9 integer values or
            labels outside 0-7.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such Myo gesture file; check the path")
    folder = re.fullmatch(r"(?P<participant>[^-]+)-(?P<session>[^-]+)", path.parent.name)
    if folder is not None:
        participant = participant if participant is not None else folder["participant"]
        session = session if session is not None else folder["session"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an empty file or ragged line must not pass silently
            table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, UserWarning):
        raise _myo_bad_line(path) from None
    if table.shape[0] == 0:
        raise RecordingError(f"{path}: holds no samples; re-download the file")
    if table.shape[1] != 9:
        raise _myo_bad_line(path)
    labels = table[:, 8]
    bad = np.flatnonzero((labels < 0) | (labels >= len(MYO_GESTURES)))
    if bad.size:
        raise RecordingError(
            f"{path}, line {bad[0] + 1}: gesture label {labels[bad[0]]} is outside 0-7; "
            "repair or re-download the file"
        )
    return Recording(
        signal=np.ascontiguousarray(table[:, :8].T, dtype=np.float32),
        ch_names=[f"EMG{i}" for i in range(1, 9)],
        ch_types=["emg"] * 8,
        sfreq=MYO_NOMINAL_SFREQ,
        unit="device",
        source=path,
        subject=participant,
        session=session,
        labels=labels.astype(np.int64),
        meta={
            "reader": "neurofm.data.layouts.read_myo_gesture_file",
            "original_units": "Myo signed 8-bit counts (no physical unit)",
            "sfreq_note": "nominal 200 Hz of the Myo armband; the file holds no timestamps",
            "label_names": list(MYO_GESTURES),
            "mains_freq": None,
            "warnings": [],
        },
    )


# --------------------------------------------------------------------------- DREAMS


def _first_non_numeric_line(path: Path, skip: int) -> tuple[int, str] | None:
    """The first line after ``skip`` header lines that is not one number: (1-based number, text)."""
    with path.open("r", encoding="latin-1") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skip or not line.strip():
                continue
            try:
                float(line)
            except ValueError:
                return number, line.strip()
    return None


def _read_dreams_text(path: Path) -> tuple[str | None, np.ndarray]:
    """A DREAMS text file: an optional ``[name]`` first line, then one number per line."""
    if not path.is_file():
        raise RecordingError(f"{path}: no such DREAMS text file; check the path")
    with path.open("r", encoding="latin-1") as handle:
        first = handle.readline().strip()
    header = first[1:-1].strip() if first.startswith("[") and first.endswith("]") else None
    skip = 1 if header is not None else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.loadtxt(path, skiprows=skip, ndmin=1, encoding="latin-1")
    except (ValueError, UserWarning) as error:
        bad = _first_non_numeric_line(path, skip)
        where = (f"line {bad[0]}: {bad[1][:60]!r} is not a number" if bad is not None
                 else str(error))
        raise RecordingError(
            f"{path}, {where}; a DREAMS text file holds an optional '[name]' line, then one "
            "number per line: repair or re-download the file"
        ) from None
    if values.ndim != 1:
        raise RecordingError(
            f"{path}: {values.shape[1]} columns per line; the DREAMS layout has one value per line"
        )
    return header, values


def _read_dreams_signal_texts(paths: list[Path]) -> tuple[list[str], np.ndarray]:
    """Channel names and ``[C, T]`` samples (µV) of DREAMS signal text files, one channel each."""
    names: list[str] = []
    rows: list[np.ndarray] = []
    for path in paths:
        header, values = _read_dreams_text(path)
        if rows and len(values) != len(rows[0]):
            raise RecordingError(
                f"{path}: {len(values)} samples but {paths[0]} has {len(rows[0])}; the signal "
                "files of one excerpt must have equal lengths"
            )
        names.append(header or path.stem)
        rows.append(values)
    return names, np.vstack(rows).astype(np.float32)


@dataclass(frozen=True)
class _DreamsStages:
    """A DREAMS hypnogram read and checked against its signal: stage spans and the rule set."""

    spans: list[Annotation]
    scoring: str


def _dreams_rate_from_hypnogram(signal_path: Path, hypnogram_path: Path, n_samples: int) -> float:
    """The sampling rate implied by a signal length and its 5-s hypnogram (a whole number of Hz)."""
    _, codes = _read_dreams_text(hypnogram_path)
    if len(codes) == 0:
        raise RecordingError(f"{hypnogram_path}: the hypnogram holds no stages")
    derived = n_samples / (len(codes) * DREAMS_EPOCH_SECONDS)
    if abs(derived - round(derived)) > 1e-9 or round(derived) <= 0:
        raise RecordingError(
            f"{signal_path} and {hypnogram_path}: {n_samples} samples for {len(codes)} 5-s stages "
            f"gives {derived:.4f} Hz, not a whole sampling rate; the files do not belong "
            "together or the hypnogram is incomplete: pass sfreq explicitly to check"
        )
    return float(round(derived))


def _read_dreams_hypnogram(
    hypnogram_path: Path, signal_path: Path, n_samples: int, sfreq: float
) -> _DreamsStages:
    """Stage spans of a DREAMS hypnogram whose length must fit ``n_samples`` at ``sfreq`` Hz.

    ``[HypnogramAASM]`` files use :data:`DREAMS_AASM_CODES`, any other header R&K codes
    (:data:`DREAMS_RK_TO_AASM`); one stage per 5 s, and the stage count must be the signal's
    length in 5-s steps, rounded either way.
    """
    header, codes_float = _read_dreams_text(hypnogram_path)
    first_line = 2 if header is not None else 1  # file line of the first stage
    fractional = np.flatnonzero(codes_float != np.round(codes_float))
    if fractional.size:
        raise RecordingError(
            f"{hypnogram_path}, line {fractional[0] + first_line}: stage code "
            f"{codes_float[fractional[0]]:g} is not an integer; hypnogram codes are integers")
    codes = codes_float.astype(np.int64)
    if len(codes) == 0:
        raise RecordingError(f"{hypnogram_path}: the hypnogram holds no stages")
    is_aasm = header is not None and "AASM" in header.upper()
    code_map = DREAMS_AASM_CODES if is_aasm else DREAMS_RK_TO_AASM
    unknown = np.flatnonzero(codes > 5) if is_aasm else np.flatnonzero(
        ~np.isin(codes, [*DREAMS_RK_TO_AASM, *DREAMS_RK_UNSCORED]))
    if unknown.size:
        known = ("1-5 (N3, N2, N1, REM, W), <= 0 unscored" if is_aasm else
                 "0-5 (S4, S3, S2, S1, REM, W), -1 movement, -2/-3 unscored")
        raise RecordingError(
            f"{hypnogram_path}, line {unknown[0] + first_line}: unknown stage code "
            f"{codes[unknown[0]]} ({unknown.size} such line(s)); a DREAMS "
            f"{'AASM' if is_aasm else 'R&K'} hypnogram uses {known}")
    expected_epochs = n_samples / (sfreq * DREAMS_EPOCH_SECONDS)
    if not np.floor(expected_epochs) <= len(codes) <= np.ceil(expected_epochs):
        raise RecordingError(
            f"{hypnogram_path}: {len(codes)} stages of 5 s ({len(codes) * 5:g} s) but the signal "
            f"{signal_path} lasts {n_samples / sfreq:g} s at {sfreq:g} Hz; the hypnogram and "
            "signal lengths disagree: check that they belong together and the sampling rate"
        )
    stages = [code_map.get(int(c)) for c in codes]
    return _DreamsStages(_merge_epochs(stages, DREAMS_EPOCH_SECONDS), "AASM" if is_aasm else "R&K")


def read_dreams_excerpt(
    signal_path: str | Path | Sequence[str | Path],
    hypnogram_path: str | Path,
    sfreq: float | None = None,
) -> Recording:
    """Read a DREAMS recording: signal text file(s) or one EDF, and a 5-s-step hypnogram.

    Layout (DREAMS databases, University of Mons): each signal file starts with the channel
    name in brackets (``[C3-A1]``) followed by one sample per line in microvolts; several files
    (one channel each, equal lengths) form one multichannel recording. The hypnogram starts with
    ``[hypnogram]`` (R&K codes, :data:`DREAMS_RK_TO_AASM`) or ``[HypnogramAASM]``
    (:data:`DREAMS_AASM_CODES`), then one integer per 5 s. The text files do not state the
    sampling rate: pass ``sfreq``, or leave it ``None`` to derive it from the two lengths
    (samples / (5 s x stages)), which must then be a whole number of Hz. A single signal path in
    a format MNE reads (the DREAMS Subjects database's ``subjectN.edf``) is read with
    :func:`~neurofm.data.readers.read_recording`, keeping its channels, types and rate.

    Returns float32 ``[C, T]`` in ``"uV"``, per-sample ``labels`` indexing :data:`SLEEP_STAGES`
    (``-1`` = unscored) and one annotation per run of equal stages.

    Raises:
        RecordingError: naming the files, when signal files differ in length or the hypnogram's
            length disagrees with the signal's.
    """
    paths = [Path(signal_path)] if isinstance(signal_path, (str, Path)) else [
        Path(p) for p in signal_path
    ]
    if not paths:
        raise RecordingError("read_dreams_excerpt: no signal file given")
    hypnogram_path = Path(hypnogram_path)
    signal_recording: Recording | None = None
    if len(paths) == 1 and paths[0].name.lower().endswith(SUPPORTED_EXTENSIONS):
        # The DREAMS Subjects database ships each night as one EDF beside its text hypnogram.
        signal_recording = read_recording(paths[0])
        sfreq = signal_recording.sfreq if sfreq is None else sfreq
        signal = signal_recording.signal
    else:
        names, signal = _read_dreams_signal_texts(paths)
    n_samples = signal.shape[1]
    if sfreq is None:
        sfreq = _dreams_rate_from_hypnogram(paths[0], hypnogram_path, n_samples)
    stages = _read_dreams_hypnogram(hypnogram_path, paths[0], n_samples, sfreq)
    warnings_out: list[str] = []
    spans = keep_annotations_inside(stages.spans, n_samples / sfreq, hypnogram_path, warnings_out)
    if signal_recording is None:
        signal_recording = Recording(
            signal=signal,
            ch_names=names,
            ch_types=[infer_channel_type(name, "eeg") for name in names],
            sfreq=float(sfreq),
            unit="uV",
            source=paths[0],
            meta={"original_units": "uV", "warnings": []},
        )
    return signal_recording.replace(
        sfreq=float(sfreq),
        annotations=[*signal_recording.annotations, *spans],
        labels=_labels_from_stage_spans(spans, n_samples, sfreq),
        meta={
            **signal_recording.meta,
            "reader": "neurofm.data.layouts.read_dreams_excerpt",
            "signal_files": [str(p) for p in paths],
            "hypnogram": str(hypnogram_path),
            "hypnogram_scoring": stages.scoring,
            "label_names": list(SLEEP_STAGES),
            "mains_freq": 50.0,
            "warnings": [*signal_recording.meta.get("warnings", []), *warnings_out],
        },
    )


#: Length of every DREAMS Sleep Spindles excerpt, in seconds (30 min).
DREAMS_SPINDLES_EXCERPT_SECONDS = 1800.0

#: DREAMS Sleep Spindles scoring files, by the first part of their header line
#: (``[vis1_Spindles/C3-A1]``) -> annotation description of each scored spindle.
DREAMS_SPINDLE_SCORINGS: dict[str, str] = {
    "vis1_spindles": "spindle_expert1",
    "vis2_spindles": "spindle_expert2",
    "spindles": "spindle_automatic",
}


def _dreams_excerpt_length_check(path: Path, n_samples: int, sfreq: float) -> str | None:
    """Refuse a DREAMS spindles excerpt whose length is not 30 min at ``sfreq``.

    Up to one second more than 30 min is accepted (excerpt6 holds 140 samples more at 200 Hz)
    and kept; the returned line says so for ``meta["warnings"]``.
    """
    expected = int(round(DREAMS_SPINDLES_EXCERPT_SECONDS * sfreq))
    if expected <= n_samples < expected + sfreq:
        extra = n_samples - expected
        if not extra:
            return None
        return (
            f"{path}: {extra} samples ({extra / sfreq:g} s) beyond 30 min, kept; the hypnogram "
            "leaves them unscored"
        )
    raise RecordingError(
        f"{path}: {n_samples} samples at {sfreq:g} Hz last {n_samples / sfreq:g} s, but a DREAMS "
        f"spindles excerpt lasts 30 min ({expected} samples at {sfreq:g} Hz, at most one second "
        "more). The sampling rate is not in the file: check the rate given for this excerpt "
        "(excerpt1 100 Hz, excerpt3 50 Hz, the others 200 Hz), or re-download a truncated file"
    )


def _read_dreams_spindle_scoring(path: Path, description: str) -> list[Annotation]:
    """One annotation per line (onset and duration in seconds) of a DREAMS spindle scoring."""
    with path.open("r", encoding="latin-1") as handle:
        lines = [line.strip() for line in handle]
    annotations = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split()
        try:
            onset, duration = (float(v) for v in fields)
        except ValueError:
            raise RecordingError(
                f"{path}, line {number}: {line[:60]!r} is not two numbers (spindle onset and "
                "duration in seconds); repair or re-download the file"
            ) from None
        annotations.append(Annotation(onset, duration, description))
    return annotations


def _dreams_file_header(path: Path) -> str:
    if not path.is_file():
        raise RecordingError(f"{path}: no such DREAMS file; check the path")
    with path.open("r", encoding="latin-1") as handle:
        first = handle.readline().strip()
    if not (first.startswith("[") and first.endswith("]")):
        raise RecordingError(
            f"{path}: first line {first[:60]!r} is not a DREAMS '[name]' header line"
        )
    return first[1:-1].strip()


def read_dreams_spindles_excerpt(
    signal_path: str | Path,
    *annotation_paths: str | Path,
    sfreq: float | None = None,
    derivation: str | None = None,
) -> Recording:
    """Read a DREAMS Sleep Spindles excerpt (``excerptN.txt``) with its hypnogram and scorings.

    The signal file holds a ``[C3-A1]``-style header naming the derivation, then one value per
    line in microvolts: 30 min of one EEG derivation. The file does not state its sampling rate,
    so ``sfreq`` (Hz) is required (``None`` raises, naming the file); the sample count must be
    30 min at that rate, up to one second more, which is kept (excerpt6 is 140 samples, 0.7 s,
    longer; the extra samples are noted in ``meta["warnings"]`` and stay unscored).
    ``derivation``, when given, is compared with the header; a difference is noted in
    ``meta["warnings"]``.

    ``annotation_paths`` are recognised by their header: ``[Hypnogram]`` (R&K stage every 5 s,
    mapped to AASM per-sample ``labels`` and stage annotations, as :func:`read_dreams_excerpt`),
    ``[vis1_Spindles/...]``, ``[vis2_Spindles/...]`` and ``[Spindles/...]`` (one spindle per
    line, onset and duration in seconds) -> annotations named by :data:`DREAMS_SPINDLE_SCORINGS`.

    Returns one ``eeg`` channel, float32 ``[1, T]`` in ``"uV"``.

    Raises:
        RecordingError: naming the file, for an unknown rate, a length that does not fit 30 min
            at ``sfreq``, a hypnogram that does not fit the signal, an unknown stage code or a
            malformed line (naming the line), or an unknown header.
    """
    path = Path(signal_path)
    if sfreq is None:
        raise RecordingError(
            f"{path}: sampling rate unknown; the DREAMS text file holds none, so pass the rate "
            "the database documents for this excerpt (excerpt1 100 Hz, excerpt3 50 Hz, the "
            "others 200 Hz; neurofm.datasets.registry.DREAMS_SPINDLES_EXCERPTS)")
    if not sfreq > 0:
        raise RecordingError(f"{path}: sfreq={sfreq} must be the excerpt's positive rate in Hz")
    names, signal = _read_dreams_signal_texts([path])
    n_samples = signal.shape[1]
    warnings_out: list[str] = []
    length_note = _dreams_excerpt_length_check(path, n_samples, sfreq)
    if length_note:
        warnings_out.append(length_note)
    if derivation is not None and names[0].upper() != derivation.upper():
        warnings_out.append(f"{path}: header names {names[0]!r}, documented as {derivation!r}")
    annotations: list[Annotation] = []
    labels = None
    meta: dict[str, Any] = {}
    for extra in map(Path, annotation_paths):
        header = _dreams_file_header(extra)
        kind = header.split("/")[0].strip().lower()
        if kind == "hypnogram":
            stages = _read_dreams_hypnogram(extra, path, n_samples, sfreq)
            spans = keep_annotations_inside(stages.spans, n_samples / sfreq, extra, warnings_out)
            annotations += spans
            labels = _labels_from_stage_spans(spans, n_samples, sfreq)
            meta |= {"hypnogram": str(extra), "hypnogram_scoring": stages.scoring,
                     "label_names": list(SLEEP_STAGES)}
        elif kind in DREAMS_SPINDLE_SCORINGS:
            spindles = _read_dreams_spindle_scoring(extra, DREAMS_SPINDLE_SCORINGS[kind])
            annotations += keep_annotations_inside(spindles, n_samples / sfreq, extra, warnings_out)
            meta.setdefault("spindle_scorings", {})[DREAMS_SPINDLE_SCORINGS[kind]] = str(extra)
        else:
            raise RecordingError(
                f"{extra}: header [{header}] is neither a hypnogram nor a spindle scoring "
                f"({', '.join(sorted(DREAMS_SPINDLE_SCORINGS))}); pass only the excerpt's files"
            )
    return Recording(
        signal=signal,
        ch_names=names,
        ch_types=["eeg"],
        sfreq=float(sfreq),
        unit="uV",
        annotations=annotations,
        source=path,
        labels=labels,
        meta={
            "reader": "neurofm.data.layouts.read_dreams_spindles_excerpt",
            "original_units": "uV",
            "sfreq_note": "given by the database description; the text file holds no rate",
            "mains_freq": 50.0,
            **meta,
            "warnings": warnings_out,
        },
    )


# --------------------------------------------------------------------------- Sleep-EDF


#: Sleep-EDF hypnogram descriptions that score no stage: labelled ``-1`` and counted in
#: ``meta["unscored_seconds"]``.
SLEEP_EDF_UNSCORED: tuple[str, ...] = ("Sleep stage ?", "Movement time")


def _edf_signal_rates(path: Path) -> dict[str, float]:
    """Each signal's own sampling rate (Hz) from an EDF header (MNE reads all at the highest)."""
    import edfio

    header = edfio.read_edf(path, lazy_load_data=True)
    return {signal.label: float(signal.sampling_frequency) for signal in header.signals}


def read_sleep_edf(psg_path: str | Path, hypnogram_path: str | Path) -> Recording:
    """Read a Sleep-EDF night: the PSG EDF plus its ``*-Hypnogram.edf`` (annotations only).

    R&K stages are mapped to AASM with :data:`SLEEP_EDF_TO_AASM` (W, 1->N1, 2->N2, 3 and 4->N3,
    R->REM). "Sleep stage ?" and "Movement time" (:data:`SLEEP_EDF_UNSCORED`) stay unscored
    (label ``-1``, never windowed by a staging task) and their seconds are counted in
    ``meta["unscored_seconds"]``; ``meta["stage_seconds"]`` counts the scored ones. The PSG comes
    from :func:`~neurofm.data.readers.read_recording` (µV, label-inferred types) at the rate of
    its fastest signal (100 Hz in both studies): MNE repeats the samples of slower signals (the
    cassette study's 1-Hz EMG envelope, respiration and temperature), which
    ``meta["signal_rates_hz"]`` records and ``meta["warnings"]`` states. Stage annotations are
    added to the PSG's own, and ``labels`` index :data:`SLEEP_STAGES` per sample. Subject and
    night come from the ``SC4ssN``/``ST7ssN`` file name when it has one. Stages past the end of
    the PSG are cut or dropped with a line in ``meta["warnings"]``.

    Raises:
        RecordingError: naming the hypnogram, for a description that is neither a stage nor one
            of the unscored ones.
    """
    psg_path, hypnogram_path = Path(psg_path), Path(hypnogram_path)
    recording = read_recording(psg_path)
    annotations = read_annotations_file(hypnogram_path)
    known = set(SLEEP_EDF_TO_AASM) | set(SLEEP_EDF_UNSCORED)
    unknown = sorted({a.description for a in annotations} - known)
    if unknown:
        raise RecordingError(
            f"{hypnogram_path}: unknown hypnogram description(s) {unknown}; a Sleep-EDF "
            f"hypnogram uses {sorted(known)}"
        )
    spans = [
        Annotation(a.onset, a.duration, SLEEP_EDF_TO_AASM[a.description])
        for a in annotations
        if a.description in SLEEP_EDF_TO_AASM
    ]
    warnings_out = list(recording.meta.get("warnings", []))
    spans = keep_annotations_inside(spans, recording.duration, hypnogram_path, warnings_out)
    labels = _labels_from_stage_spans(spans, recording.n_samples, recording.sfreq)
    rates = _edf_signal_rates(psg_path) if psg_path.suffix.lower() == ".edf" else {}
    slower = {name: rate for name, rate in rates.items() if rate < recording.sfreq}
    if slower:
        warnings_out.append(
            f"{psg_path}: {', '.join(f'{n} ({r:g} Hz)' for n, r in slower.items())} recorded "
            f"below {recording.sfreq:g} Hz; their samples are repeated to {recording.sfreq:g} Hz"
        )
    unscored = dict.fromkeys(SLEEP_EDF_UNSCORED, 0.0)
    for annotation in annotations:
        if annotation.description in unscored:
            unscored[annotation.description] += annotation.duration
    name = re.match(r"S[CT]\d(?P<subject>\d\d)(?P<night>\d)", psg_path.name)
    meta: dict[str, Any] = {
        **recording.meta,
        "reader": "neurofm.data.layouts.read_sleep_edf",
        "hypnogram": str(hypnogram_path),
        "hypnogram_scoring": "R&K mapped to AASM",
        "label_names": list(SLEEP_STAGES),
        "stage_seconds": {stage: float((labels == i).sum() / recording.sfreq)
                          for i, stage in enumerate(SLEEP_STAGES)},
        "unscored_seconds": unscored,
        "signal_rates_hz": rates,
        "warnings": warnings_out,
    }
    return recording.replace(
        annotations=[*recording.annotations, *spans],
        labels=labels,
        subject=name["subject"] if name else recording.subject,
        session=name["night"] if name else recording.session,
        meta=meta,
    )


# --------------------------------------------------------------------------- Brain Invaders 2012


#: Channel order of the Brain Invaders 2012 release's MATLAB files (rows 1-17; Fz is the ground).
BI2012_CHANNELS: tuple[str, ...] = (
    "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8",
    "O1", "O2",
)
#: Sampling rate of the Brain Invaders 2012 release.
BI2012_SFREQ = 128.0


def _load_bi2012_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            content = {key: archive[key] for key in archive.files}
    except Exception as error:  # zip/format errors of many types all mean "damaged file"
        raise RecordingError(
            f"{path}: cannot be read as an NPZ archive without pickle ({type(error).__name__}: "
            f"{error}); re-create it in the documented layout (see read_bi2012)"
        ) from error
    missing = sorted({"eeg", "ch_names", "sfreq", "unit", "stim"} - set(content))
    if missing:
        raise RecordingError(
            f"{path}: missing key(s) {missing}; the layout needs eeg, ch_names, sfreq, unit, stim"
        )
    return content


def _load_bi2012_mat(path: Path) -> dict[str, Any]:
    """The release's MATLAB file: ``training``/``online`` = ``[T, 20]`` (time, 17 EEG, 2 flags)."""
    from scipy.io import loadmat

    try:
        variables = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    except Exception as error:  # scipy raises several types for damaged MAT files
        raise RecordingError(
            f"{path}: cannot be read as a MATLAB file ({type(error).__name__}: {error}); "
            "download it again from zenodo 10.5281/zenodo.2649006"
        ) from error
    table = variables.get(path.stem)
    if table is None and len(variables) == 1:
        table = next(iter(variables.values()))
    if table is None or table.ndim != 2 or table.shape[1] != 20:
        raise RecordingError(
            f"{path}: expected one [T, 20] array named {path.stem!r} (time stamp, 17 EEG channels, "
            f"2 stimulus flags), found {sorted(variables)}; download it again"
        )
    return {
        "eeg": table[:, 1:18].T,
        "ch_names": np.array(BI2012_CHANNELS),
        "sfreq": BI2012_SFREQ,
        "unit": "uV",
        # As MOABB reads the release: the two flag columns add up to the stimulus code.
        "stim": table[:, 18] + table[:, 19],
    }


def read_bi2012(npz_path: str | Path) -> Recording:
    """Read a Brain Invaders 2012 P300 run: neurofm's NPZ layout, or the release's MATLAB file.

    NPZ layout (read without pickle):

    - ``eeg``: float ``[C, T]`` in ``unit`` (the release has 17 channels, F7 F3 Fz F4 F8 T7 C3 Cz
      C4 T8 P7 P3 Pz P4 P8 O1 O2, Fz being the ground);
    - ``ch_names``: ``[C]`` strings; ``sfreq``: scalar (128 Hz); ``unit``: ``"uV"`` or ``"V"``;
    - ``stim``: int ``[T]`` per-sample stimulus code, 0 = no flash, 1 = non-target flash,
      2 = target flash (MOABB's BI2012 codes);
    - optional ``subject`` and ``session`` strings.

    A ``.mat`` file from the public release (zenodo 10.5281/zenodo.2649006, ``training.mat`` /
    ``online.mat``: ``[T, 20]`` = time stamp, 17 EEG channels in µV, two stimulus flags) is
    read into the same fields, the flags summed into ``stim`` as MOABB does.

    Each flash (a sample where the code becomes non-zero) becomes an annotation ``"target"`` or
    ``"nontarget"`` with zero duration. Returns float32 ``[C, T]`` in ``"uV"``.

    Raises:
        RecordingError: naming the file, for missing keys, a ``stim`` length that disagrees with
            ``eeg``, or unknown stimulus codes.
    """
    path = Path(npz_path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such Brain Invaders file; check the path")
    content = _load_bi2012_mat(path) if path.suffix.lower() == ".mat" else _load_bi2012_npz(path)
    eeg = np.asarray(content["eeg"])
    stim_values = np.asarray(content["stim"]).ravel()
    names = [str(n) for n in np.asarray(content["ch_names"]).ravel()]
    unit = str(content["unit"])
    sfreq = float(content["sfreq"])
    if eeg.ndim != 2 or eeg.shape[0] != len(names):
        raise RecordingError(
            f"{path}: eeg has shape {eeg.shape} but {len(names)} channel names; eeg must be [C, T]"
        )
    if len(stim_values) != eeg.shape[1]:
        raise RecordingError(
            f"{path}: stim has {len(stim_values)} samples but eeg has {eeg.shape[1]}; the "
            "stimulus channel disagrees with the signal length: re-export the run"
        )
    if unit not in ("uV", "V"):
        raise RecordingError(f"{path}: unit {unit!r} must be 'uV' or 'V'")
    stim = np.round(stim_values).astype(np.int64)
    unknown = sorted(set(np.unique(stim).tolist()) - {0, *BI2012_STIMULUS_CODES})
    if unknown:
        raise RecordingError(
            f"{path}: unknown stimulus code(s) {unknown}; BI2012 uses 0 (none), 1 (non-target), "
            "2 (target)"
        )
    onsets = np.flatnonzero((stim != 0) & (np.concatenate([[0], stim[:-1]]) != stim))
    annotations = [
        Annotation(float(i / sfreq), 0.0, BI2012_STIMULUS_CODES[int(stim[i])]) for i in onsets
    ]
    signal = eeg.astype(np.float64) * (1e6 if unit == "V" else 1.0)
    return Recording(
        signal=signal.astype(np.float32),
        ch_names=names,
        ch_types=[infer_channel_type(n, "eeg") for n in names],
        sfreq=sfreq,
        unit="uV",
        annotations=annotations,
        source=path,
        subject=str(content["subject"]) if "subject" in content else None,
        session=str(content["session"]) if "session" in content else None,
        meta={
            "reader": "neurofm.data.layouts.read_bi2012",
            "original_units": unit,
            "mains_freq": 50.0,
            "stimulus_codes": {str(k): v for k, v in BI2012_STIMULUS_CODES.items()},
            "warnings": [],
        },
    )


# --------------------------------------------------------------------------- BCI Competition IV


def read_bci_iv_mi(gdf_path: str | Path, cue_duration: float = 4.0) -> Recording:
    """Read a BCI Competition IV 2a/2b motor-imagery GDF file (through MNE's GDF reader).

    Cue events 769/770 (2a also 771/772) become annotations ``"left_hand"``/``"right_hand"``
    (``"feet"``/``"tongue"``) lasting ``cue_duration`` seconds (the imagery period after the
    cue); other events keep their GDF type code as description (e.g. ``"1023"`` marks a rejected
    trial). EOG channels (``EOG-left``, ``EOG:ch01``...) are typed ``eog``; EEG comes out in µV.
    """
    path = Path(gdf_path)
    if path.suffix.lower() != ".gdf":
        raise RecordingError(f"{path}: BCI Competition IV motor-imagery files are .gdf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = read_raw(path)
    recording = recording_from_raw(
        raw, path, "read_raw_gdf", [f"{path}: {str(w.message).strip()}" for w in caught]
    )
    annotations = [
        Annotation(a.onset, cue_duration, BCI_IV_CUES[a.description])
        if a.description in BCI_IV_CUES
        else a
        for a in recording.annotations
    ]
    warnings_out = list(recording.meta["warnings"])
    annotations = keep_annotations_inside(annotations, recording.duration, path, warnings_out)
    return recording.replace(
        annotations=annotations,
        meta={**recording.meta, "reader": "neurofm.data.layouts.read_bci_iv_mi",
              "cue_classes": dict(BCI_IV_CUES), "warnings": warnings_out},
    )
