"""Writers for the Sleep-EDF Expanded layout (test helpers): a PSG EDF and a hypnogram EDF.

The PSG follows the sleep-cassette study's signals (EEG Fpz-Cz and Pz-Oz and horizontal EOG at
100 Hz, submental EMG at 1 Hz, as PhysioNet's files have them), filled with seeded random numbers;
the hypnogram is an EDF+ file holding only R&K stage annotations. Synthetic files, never presented
as real data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import edfio
import numpy as np

#: (label, rate in Hz, standard deviation in µV) of the synthetic PSG's signals.
SLEEP_EDF_SIGNALS: tuple[tuple[str, float, float], ...] = (
    ("EEG Fpz-Cz", 100.0, 25.0),
    ("EEG Pz-Oz", 100.0, 15.0),
    ("EOG horizontal", 100.0, 40.0),
    ("EMG submental", 1.0, 5.0),
)


def write_sleep_edf_psg(path: Path, seconds: int, seed: int = 0) -> None:
    """A PSG EDF of ``seconds`` (a multiple of 30) with :data:`SLEEP_EDF_SIGNALS`, in µV."""
    rng = np.random.default_rng(seed)
    signals = [
        edfio.EdfSignal(rng.normal(0.0, std, int(seconds * rate)), rate, label=label,
                        physical_dimension="uV", physical_range=(-2000.0, 2000.0))
        for label, rate, std in SLEEP_EDF_SIGNALS
    ]
    edfio.Edf(signals, data_record_duration=30.0).write(path)


def write_sleep_edf_hypnogram(path: Path, stages: Sequence[tuple[float, float, str]]) -> None:
    """A hypnogram EDF+ holding only ``(onset s, duration s, description)`` annotations, e.g.
    ``(0, 60, "Sleep stage W")``."""
    annotations = [edfio.EdfAnnotation(onset, duration, text) for onset, duration, text in stages]
    edfio.Edf([], annotations=annotations).write(path)
