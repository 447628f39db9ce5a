"""Writers for the documented layouts of datasets that are not in the mirror (test helpers).

DREAMS text excerpts, Brain Invaders 2012 NPZ, BCI Competition IV GDF and a Sleep-EDF-style PSG
EDF. Tests fill them with seeded random numbers: synthetic files, never presented as real data.
"""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np


def write_dreams_signal(path: Path, name: str, values: np.ndarray) -> None:
    """DREAMS signal text: '[name]' then one value per line."""
    path.write_text(f"[{name}]\n" + "\n".join(f"{v:.4f}" for v in values) + "\n")


def write_dreams_hypnogram(path: Path, codes: list[int], header: str = "hypnogram") -> None:
    """DREAMS hypnogram text: '[hypnogram]' then one integer stage code per 5 s."""
    path.write_text(f"[{header}]\n" + "\n".join(str(c) for c in codes) + "\n")


def write_bi2012_npz(path: Path, eeg: np.ndarray, stim: np.ndarray, unit: str = "uV") -> list[str]:
    """The NPZ layout read_bi2012 documents, with the 17 channel names of the release."""
    names = ["F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4",
             "P8", "O1", "O2"][: eeg.shape[0]]
    np.savez(path, eeg=eeg, ch_names=np.array(names), sfreq=np.float64(128.0),
             unit=np.array(unit), stim=stim, subject=np.array("01"), session=np.array("training"))
    return names


def write_gdf1(path: Path, signal_uv: np.ndarray, ch_names: list[str], sfreq: float,
               events: list[tuple[int, int]]) -> None:
    """A minimal GDF 1.25 file (int16 samples at 0.1 µV, event table mode 1), as BCI IV uses."""
    n_channels, n_samples = signal_uv.shape
    record_samples = int(sfreq)
    n_records = n_samples // record_samples
    fixed = b"GDF 1.25" + b"P01 test".ljust(80) + b"R01".ljust(80) + b"2008060112000000"
    fixed += np.int64(256 * (n_channels + 1)).tobytes() + bytes(24) + bytes(20)
    fixed += np.int64(n_records).tobytes() + np.array([1, 1], np.uint32).tobytes()
    fixed += np.uint32(n_channels).tobytes()
    channels = b"".join(n.encode().ljust(16) for n in ch_names) + bytes(80 * n_channels)
    channels += b"".join(b"uV".ljust(8) for _ in ch_names)
    channels += np.full(n_channels, -3276.8).tobytes() + np.full(n_channels, 3276.7).tobytes()
    channels += np.full(n_channels, -32768, np.int64).tobytes()
    channels += np.full(n_channels, 32767, np.int64).tobytes()
    channels += bytes(80 * n_channels) + np.full(n_channels, record_samples, np.int32).tobytes()
    channels += np.full(n_channels, 3, np.int32).tobytes() + bytes(32 * n_channels)  # 3 = int16
    digital = np.round(signal_uv[:, : n_records * record_samples] * 10).astype("<i2")
    data = digital.reshape(n_channels, n_records, record_samples).transpose(1, 0, 2).tobytes()
    table = bytes([1]) + int(sfreq).to_bytes(3, "little") + np.uint32(len(events)).tobytes()
    table += (np.array([p for p, _ in events], np.uint32) + 1).tobytes()  # 1-based positions
    table += np.array([t for _, t in events], np.uint16).tobytes()
    path.write_bytes(fixed + channels + data + table)


def write_psg_edf(path: Path, seconds: int, sfreq: float = 1.0) -> None:
    """A synthetic 2-channel PSG EDF (the Sleep-EDF channel names), for pairing with a hypnogram."""
    info = mne.create_info(["EEG Fpz-Cz", "EOG horizontal"], sfreq, "eeg")
    signal = np.random.default_rng(0).normal(0, 20e-6, (2, int(seconds * sfreq)))
    raw = mne.io.RawArray(signal, info, verbose="error")
    mne.export.export_raw(path, raw, fmt="edf", physical_range=(-500e-6, 500e-6),
                          overwrite=True, verbose="error")


def write_bi2012_mat(path: Path, eeg_uv: np.ndarray, nontarget: np.ndarray,
                     target: np.ndarray) -> None:
    """The release's MATLAB layout: variable named after the run, [T, 20] = time stamp,
    17 EEG channels (µV), non-target flag (1) and target flag (2) columns."""
    from scipy.io import savemat

    n_samples = eeg_uv.shape[1]
    table = np.column_stack([np.arange(n_samples) / 128.0, eeg_uv.T, nontarget, target])
    savemat(path, {path.stem: table})
