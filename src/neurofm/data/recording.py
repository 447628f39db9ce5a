"""`Recording`: the one object every reader returns and preprocessing transforms.

Units are data, not comments: ``unit`` says what one unit of ``signal`` is. Readers return
microvolts (``"uV"``) for EEG/EMG with a physical unit and ``"device"`` for raw device counts
(the Myo armband); preprocessing returns ``"100uV"`` (LaBraM's model input) or ``"zscore"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

#: Units a ``Recording.signal`` may be in.
KNOWN_UNITS = ("uV", "100uV", "V", "device", "zscore")


@dataclass(frozen=True)
class Annotation:
    """An event or labelled span: onset and duration in seconds from the recording start."""

    onset: float
    duration: float
    description: str


@dataclass
class Recording:
    """A multichannel signal with everything needed to interpret it.

    Attributes:
        signal: float32 array ``[C, T]`` in ``unit``.
        ch_names: C channel labels as the source wrote them (or normalised, after preprocessing).
        ch_types: C channel types in MNE's vocabulary (``"eeg"``, ``"emg"``, ``"eog"``, ``"ecg"``,
            ``"stim"``, ``"misc"``...).
        sfreq: sampling rate in Hz.
        unit: one of :data:`KNOWN_UNITS`.
        annotations: events and labelled spans.
        source: the file the signal came from.
        subject, session: identifiers used for splits (``None`` when unknown).
        labels: optional per-sample integer labels ``[T]`` (``-1`` = unlabelled).
        meta: anything else worth keeping (mains frequency, reader, original unit...).
    """

    signal: np.ndarray
    ch_names: list[str]
    ch_types: list[str]
    sfreq: float
    unit: str
    annotations: list[Annotation] = field(default_factory=list)
    source: Path | None = None
    subject: str | None = None
    session: str | None = None
    labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.signal.ndim != 2:
            raise ValueError(f"signal must be [C, T], got shape {self.signal.shape}")
        n_channels, n_samples = self.signal.shape
        if len(self.ch_names) != n_channels or len(self.ch_types) != n_channels:
            raise ValueError(
                f"{n_channels} signal rows but {len(self.ch_names)} names and "
                f"{len(self.ch_types)} types"
            )
        if self.unit not in KNOWN_UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; expected one of {KNOWN_UNITS}")
        if self.labels is not None and len(self.labels) != n_samples:
            raise ValueError(f"{len(self.labels)} labels for {n_samples} samples")

    @property
    def n_channels(self) -> int:
        return self.signal.shape[0]

    @property
    def n_samples(self) -> int:
        return self.signal.shape[1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sfreq

    def replace(self, **changes: Any) -> Recording:
        """A copy with some fields changed (the dataclass ``replace``)."""
        return replace(self, **changes)
