"""Quality checks run on a recording before preprocessing, and the policy for what they find.

Policy (also in ``docs/units-and-preprocessing.md``):

- **fatal** — the recording cannot be used and :func:`neurofm.data.preprocess.preprocess` raises
  :class:`~neurofm.errors.RecordingError` naming the file: NaN or infinite samples (they would
  poison every filter output and reach the model), no channels, a recording shorter than
  ``config.min_duration``, or no channel left after channel-level drops.
- **drop_channel** — the channel is removed and the reason recorded in ``meta["quality"]``:
  empty channel names, repeated channel names (the first keeps its place), all-flat channels,
  mostly-flat channels (more than ``config.max_flat_fraction`` of the 1-s segments flat), and
  channels saturated for more than ``config.max_clipped_fraction`` of the samples.
- **warning** — recorded in ``meta["quality"]`` but nothing is removed: brief clipping.

Thresholds are in the recording's own unit (µV for EEG read by :mod:`neurofm.data.readers`,
device counts for the Myo armband) and come from :class:`~neurofm.data.preprocess.PreprocessConfig`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofm.data.recording import Recording
from neurofm.errors import RecordingError

if TYPE_CHECKING:
    from neurofm.data.preprocess import PreprocessConfig


@dataclass(frozen=True)
class QualityProblem:
    """One finding: which check, how bad, which channel (``None`` = whole recording), and why."""

    check: str
    severity: str
    channel: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "channel": self.channel,
            "message": self.message,
        }


@dataclass
class QualityReport:
    """Everything :func:`check_recording` found in one recording.

    ``dropped_positions`` are the row indices (into the checked signal) of channels to remove.
    """

    source: str
    problems: list[QualityProblem] = field(default_factory=list)
    dropped_positions: list[int] = field(default_factory=list)

    @property
    def fatal(self) -> list[QualityProblem]:
        return [p for p in self.problems if p.severity == "fatal"]

    @property
    def ok(self) -> bool:
        """True when nothing fatal was found (channels may still be dropped)."""
        return not self.fatal

    def raise_if_fatal(self) -> None:
        """Raise :class:`RecordingError` listing every fatal problem, naming the file."""
        if self.fatal:
            reasons = "; ".join(p.message for p in self.fatal)
            raise RecordingError(f"{self.source}: unusable recording: {reasons}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "problems": [p.to_dict() for p in self.problems],
            "dropped_channels": sorted({p.channel for p in self.problems
                                        if p.severity == "drop_channel" and p.channel is not None}),
        }


def _clipped_fraction(signal: np.ndarray, run_length: int) -> np.ndarray:
    """Per channel, the share of samples in runs of >= ``run_length`` at the channel's max or min.

    A saturated amplifier or ADC holds its rail value; genuine signals rarely repeat their exact
    extreme for many consecutive samples.
    """
    n_channels, n_samples = signal.shape
    fractions = np.zeros(n_channels)
    if n_samples < run_length:
        return fractions
    at_rail = (signal == signal.max(axis=1, keepdims=True)) | (
        signal == signal.min(axis=1, keepdims=True)
    )
    padded = np.zeros((n_channels, n_samples + 2), dtype=np.int8)
    padded[:, 1:-1] = at_rail
    edges = np.diff(padded, axis=1)
    for channel in range(n_channels):
        starts = np.flatnonzero(edges[channel] == 1)
        stops = np.flatnonzero(edges[channel] == -1)
        lengths = stops - starts
        fractions[channel] = lengths[lengths >= run_length].sum() / n_samples
    return fractions


def _flat_fraction(signal: np.ndarray, sfreq: float, threshold: float) -> np.ndarray:
    """Per channel, the share of 1-s segments whose peak-to-peak amplitude is <= ``threshold``."""
    n_channels, n_samples = signal.shape
    segment = max(1, int(round(sfreq)))
    n_segments = n_samples // segment
    if n_segments == 0:
        ptp = np.ptp(signal, axis=1)
        return (ptp <= threshold).astype(float)
    body = signal[:, : n_segments * segment].reshape(n_channels, n_segments, segment)
    ptp = body.max(axis=2) - body.min(axis=2)
    return (ptp <= threshold).mean(axis=1)


def check_recording(recording: Recording, config: PreprocessConfig) -> QualityReport:
    """Run every quality check on ``recording`` (``[C, T]``, its own unit) and report the findings.

    Checks: NaN/Inf samples, duration below ``config.min_duration``, empty and repeated channel
    names, all-flat and mostly-flat channels (peak-to-peak per 1-s segment at most
    ``config.flat_threshold``), and saturation (runs of at least ``config.clip_run_length``
    samples at the channel's extreme value). Nothing is modified; the caller applies the report
    (see the module docstring for the policy).
    """
    source = str(recording.source) if recording.source is not None else "<recording in memory>"
    report = QualityReport(source=source)
    signal = recording.signal
    names = recording.ch_names

    def add(check: str, severity: str, channel: str | None, message: str) -> None:
        report.problems.append(QualityProblem(check, severity, channel, message))

    if recording.n_channels == 0:
        add("no_channels", "fatal", None, "no channels to process")
        return report
    if recording.duration < config.min_duration:
        add(
            "too_short",
            "fatal",
            None,
            f"{recording.duration:.3f} s long, shorter than the minimum {config.min_duration} s "
            "(min_duration); drop it or lower min_duration",
        )

    finite = np.isfinite(signal)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        n_bad = int((~finite).sum())
        listed = ", ".join(repr(names[i]) for i in bad_rows[:5])
        add(
            "non_finite",
            "fatal",
            None,
            f"{n_bad} NaN/Inf sample(s) in channel(s) {listed}"
            f"{' and more' if len(bad_rows) > 5 else ''}; repair or exclude these samples in "
            "the source file (NaN/Inf never reach the model)",
        )
        return report

    dropped: set[int] = set()
    seen: Counter[str] = Counter()
    for position, name in enumerate(names):
        if not name.strip():
            add("empty_name", "drop_channel", name, f"channel {position} has an empty name")
            dropped.add(position)
            continue
        seen[name] += 1
        if seen[name] > 1:
            add(
                "duplicate_name",
                "drop_channel",
                name,
                f"channel {position} repeats the name {name!r}; the first channel of that name "
                "is kept; rename the channels in the source to keep both",
            )
            dropped.add(position)

    flat = _flat_fraction(signal, recording.sfreq, config.flat_threshold)
    for position in np.flatnonzero(flat > 0).tolist():
        name = names[position]
        if flat[position] >= 1.0:
            add(
                "flat",
                "drop_channel",
                name,
                f"channel {name!r} is flat (peak-to-peak <= {config.flat_threshold} "
                f"{recording.unit} throughout): a disconnected or unused electrode",
            )
            dropped.add(int(position))
        elif flat[position] > config.max_flat_fraction:
            add(
                "mostly_flat",
                "drop_channel",
                name,
                f"channel {name!r} is flat in {flat[position]:.0%} of its 1-s segments "
                f"(limit {config.max_flat_fraction:.0%}, max_flat_fraction)",
            )
            dropped.add(int(position))

    clipped = _clipped_fraction(signal, config.clip_run_length)
    for position in np.flatnonzero(clipped > 0).tolist():
        name = names[position]
        if position in dropped:
            continue
        share = clipped[position]
        if share > config.max_clipped_fraction:
            add(
                "clipped",
                "drop_channel",
                name,
                f"channel {name!r} is saturated for {share:.1%} of its samples (runs of >= "
                f"{config.clip_run_length} samples at its extreme value; limit "
                f"{config.max_clipped_fraction:.1%}, max_clipped_fraction)",
            )
            dropped.add(int(position))
        else:
            add(
                "clipped",
                "warning",
                name,
                f"channel {name!r} is saturated for {share:.2%} of its samples (kept: below "
                f"max_clipped_fraction {config.max_clipped_fraction:.1%})",
            )

    report.dropped_positions = sorted(dropped)
    if len(dropped) == recording.n_channels:
        reasons = "; ".join(p.message for p in report.problems if p.severity == "drop_channel")
        add("no_channels", "fatal", None, f"every channel failed a quality check: {reasons}")
    return report
