"""Read any recording MNE understands into a :class:`~neurofm.data.recording.Recording`.

One entry point, :func:`read_recording`, dispatches on the file extension to MNE's
``read_raw_*`` reader and converts the result into neurofm's units and conventions:

- channels whose MNE unit is volts come out in microvolts (``unit="uV"``), float32; channels
  without a physical unit (stim, misc counters) keep their values and are listed in
  ``meta["channel_units"]``;
- channel types come from MNE, except that formats which call every channel ``eeg`` (EDF, BDF,
  GDF...) are corrected from the labels (``ECG ECG`` -> ``ecg``, ``EOG ..`` -> ``eog``,
  ``Status`` -> ``stim``), and each correction is recorded in ``meta["inferred_types"]``;
- annotations keep their onset and duration in seconds from the first sample; those outside the
  recording are dropped (or cut at its end) with a line in ``meta["warnings"]``, which also
  collects the warnings MNE raised while reading.

Every failure (unknown extension, unreadable, truncated or corrupted file) raises
:class:`~neurofm.errors.RecordingError` naming the file, the problem and what to do.

Before any sample is read, the header is checked against :class:`ReaderLimits` (sampling rate,
EDF/BDF record duration, size in memory; raise them with ``NEUROFM_MAX_SFREQ``,
``NEUROFM_MAX_RECORD_SECONDS``, ``NEUROFM_MAX_RECORDING_GB``). An EDF/BDF file whose signals
have different rates is read as MNE reads it (the slower signals resampled to the fastest rate),
and the resampled signals are named, with their own rates, in ``meta["warnings"]`` and the log.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mne
import numpy as np

from neurofm.data.recording import Annotation, Recording
from neurofm.errors import ConfigError, RecordingError

logger = logging.getLogger(__name__)

# Extension (lower case) -> (name of the MNE reader, default keyword arguments).
_MNE_READERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".edf": ("read_raw_edf", {}),
    ".bdf": ("read_raw_bdf", {}),
    ".gdf": ("read_raw_gdf", {}),
    ".fif": ("read_raw_fif", {}),
    ".fif.gz": ("read_raw_fif", {}),
    ".vhdr": ("read_raw_brainvision", {}),
    ".set": ("read_raw_eeglab", {}),
    ".cnt": ("read_raw_cnt", {}),
    ".eeg": ("read_raw_nihon", {}),
    ".lay": ("read_raw_persyst", {}),
}

# Channels converted per step from MNE's float64 buffer to the float32 signal.
_CHANNELS_PER_COPY = 8

#: File extensions :func:`read_recording` accepts.
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_MNE_READERS)

# ReaderLimits field -> the environment variable that sets it.
_LIMIT_VARIABLES = {"max_sfreq": "NEUROFM_MAX_SFREQ",
                    "max_record_seconds": "NEUROFM_MAX_RECORD_SECONDS",
                    "max_gigabytes": "NEUROFM_MAX_RECORDING_GB"}

# Bytes per sample and channel while reading: MNE's float64 buffer plus neurofm's float32 copy.
_BYTES_PER_SAMPLE_READ = 12


@dataclass(frozen=True)
class ReaderLimits:
    """Bounds a recording's header must respect before its samples are read.

    Attributes:
        max_sfreq: highest sampling rate accepted, Hz (EEG and surface EMG stay far below 20 kHz;
            a header claiming more is damaged, or the file is not EEG/EMG).
        max_record_seconds: longest EDF/BDF data record accepted, s (files use 0.1 to 60 s).
        max_gigabytes: largest recording accepted, as the memory reading it takes (12 bytes per
            sample and channel), GB.
    """

    max_sfreq: float = 20_000.0
    max_record_seconds: float = 3600.0
    max_gigabytes: float = 16.0

    def __post_init__(self) -> None:
        for name in _LIMIT_VARIABLES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ConfigError(f"reader limit {name}={value!r} must be a finite number > 0")

    @classmethod
    def from_environment(cls) -> ReaderLimits:
        """The defaults, each replaced by its environment variable (:data:`_LIMIT_VARIABLES`)."""
        values: dict[str, float] = {}
        for name, variable in _LIMIT_VARIABLES.items():
            text = os.environ.get(variable, "").strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"environment variable {variable}={text!r} must be a finite "
                                  "number > 0")
            values[name] = value
        return cls(**values)

    def how_to_raise(self, name: str) -> str:
        return (f"if the file is right, raise the bound with the environment variable "
                f"{_LIMIT_VARIABLES[name]} (or ReaderLimits({name}=...))")


# European Data Format family: the header states how many bytes the data must take, so a
# truncated file can be recognised before MNE reads zeros or garbage past its end.
_EDF_SAMPLE_BYTES = {".edf": 2, ".bdf": 3}

# First label token (after an optional "POL"/"EEG" prefix, digits stripped) -> channel type.
# Applied only to channels MNE typed "eeg", because EDF-like formats carry no type field.
_TYPE_BY_LABEL_TOKEN: dict[str, str] = {
    "ECG": "ecg", "EKG": "ecg",
    "EOG": "eog", "HEOG": "eog", "VEOG": "eog", "LOC": "eog", "ROC": "eog",
    "EMG": "emg", "CHIN": "emg",
    "STATUS": "stim", "TRIGGER": "stim", "TRIG": "stim", "STI": "stim", "STIM": "stim",
    "RESP": "misc", "SPO2": "misc", "SAO2": "misc", "TEMP": "misc", "PLETH": "misc",
    "PULSE": "misc", "POSITION": "misc", "EVENT": "misc", "ERGO": "misc",
}
_LABEL_TOKENS = re.compile(r"[\s\-_:.()]+")


def infer_channel_type(label: str, mne_type: str) -> str:
    """The channel type a label denotes, correcting MNE's blanket ``eeg`` for EDF-like files.

    Only channels MNE typed ``eeg`` are reconsidered: a label whose first word (after a ``POL``
    prefix, trailing digits ignored) names another modality (``ECG``, ``EKG``, ``EOG``, ``EMG``,
    ``Status``, ``Resp``...) gets that modality's type. A label starting with ``EEG`` stays EEG.
    """
    if mne_type != "eeg":
        return mne_type
    tokens = [t for t in _LABEL_TOKENS.split(label.strip().upper()) if t]
    if tokens and tokens[0] == "POL":
        tokens = tokens[1:]
    if not tokens or tokens[0] == "EEG":
        return mne_type
    return _TYPE_BY_LABEL_TOKEN.get(tokens[0].rstrip("0123456789"), mne_type)


def keep_annotations_inside(
    annotations: Sequence[Annotation], duration: float, source: Path | str, warnings_out: list[str]
) -> list[Annotation]:
    """Drop annotations outside ``[0, duration]`` seconds and cut those running past the end.

    Every dropped or shortened annotation is reported by one line appended to ``warnings_out``
    (which readers store as ``recording.meta["warnings"]``), so nothing disappears silently.
    """
    kept: list[Annotation] = []
    n_outside = 0
    n_cut = 0
    for annotation in annotations:
        end = annotation.onset + annotation.duration
        if annotation.onset < 0 or annotation.onset >= duration:
            n_outside += 1
            continue
        if end > duration + 1e-9:
            n_cut += 1
            annotation = Annotation(
                annotation.onset, duration - annotation.onset, annotation.description
            )
        kept.append(annotation)
    if n_outside:
        warnings_out.append(
            f"{source}: dropped {n_outside} annotation(s) starting outside the recording "
            f"(0 to {duration:.3f} s)"
        )
    if n_cut:
        warnings_out.append(
            f"{source}: cut {n_cut} annotation(s) that ran past the end of the recording "
            f"({duration:.3f} s)"
        )
    return kept


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def _edf_header_error(path: Path, extension: str, problem: str) -> RecordingError:
    return RecordingError(
        f"{path}: corrupted {extension.upper().lstrip('.')} header: {problem}; the file is damaged "
        "or not in this format: download or export it again"
    )


def _check_edf_header(path: Path, extension: str, limits: ReaderLimits) -> dict[str, float]:
    """Validate an EDF/BDF header; return each data signal's sampling rate (Hz) by label.

    Refuses a file that holds less data than it promises, a record duration that is not a
    positive number up to ``limits.max_record_seconds`` (MNE would assume 1 s for 0 and derive
    wrong rates), and a signal faster than ``limits.max_sfreq``. MNE reads some damaged headers
    without complaint (a garbled physical range silently rescales the signal), so the fields that
    determine the numbers are checked here first.
    """
    sample_bytes = _EDF_SAMPLE_BYTES[extension]
    with path.open("rb") as handle:
        fixed = handle.read(256)
        if len(fixed) < 256:
            raise RecordingError(
                f"{path}: truncated {extension.upper().lstrip('.')} header ({len(fixed)} of 256 "
                "bytes); the file was cut off during copying: download or export it again"
            )
        version_ok = fixed[:8] == b"\xffBIOSEMI" if extension == ".bdf" else fixed[:1] == b"0"
        if not version_ok:
            raise _edf_header_error(path, extension, f"version field {fixed[:8]!r}")
        try:
            header_bytes = int(fixed[184:192].decode("ascii").strip())
            n_records = int(fixed[236:244].decode("ascii").strip())
            record_seconds = float(fixed[244:252].decode("ascii").strip())
            n_signals = int(fixed[252:256].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise _edf_header_error(
                path, extension, "header size, number of data records, record duration or number "
                "of signals is not a number"
            ) from None
        if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
            raise _edf_header_error(
                path, extension, f"{n_signals} signals but a {header_bytes}-byte header"
            )
        signal_header = handle.read(256 * n_signals)
    if len(signal_header) < 256 * n_signals:
        raise RecordingError(
            f"{path}: truncated {extension.upper().lstrip('.')} header (signal descriptions cut "
            "off); the file was cut off during copying: download or export it again"
        )

    def numbers(field_offset: int, name: str, cast: type) -> list:
        start = field_offset * n_signals
        try:
            return [
                cast(signal_header[start + i * 8 : start + (i + 1) * 8].decode("ascii").strip())
                for i in range(n_signals)
            ]
        except (UnicodeDecodeError, ValueError):
            raise _edf_header_error(path, extension, f"{name} is not a number") from None

    physical_min = numbers(104, "physical minimum", float)
    physical_max = numbers(112, "physical maximum", float)
    digital_min = numbers(120, "digital minimum", int)
    digital_max = numbers(128, "digital maximum", int)
    samples_per_record = numbers(216, "samples per data record", int)
    labels = [signal_header[i * 16 : (i + 1) * 16].decode("latin-1").strip()
              for i in range(n_signals)]
    for i in range(n_signals):
        if digital_max[i] <= digital_min[i] or physical_max[i] == physical_min[i]:
            raise _edf_header_error(
                path, extension, f"signal {i} ({labels[i]!r}) has an empty digital or physical range"
            )
    rates = _edf_rates(path, extension, record_seconds, labels, samples_per_record, limits)
    if n_records < 0:
        # -1 means "unknown" in EDF (a recording still being written); MNE derives it from the size.
        return rates
    expected = header_bytes + n_records * sum(samples_per_record) * sample_bytes
    actual = path.stat().st_size
    if actual < expected:
        raise RecordingError(
            f"{path}: truncated {extension.upper().lstrip('.')} file: its header promises "
            f"{n_records} data records ({expected} bytes) but the file has {actual} bytes; it "
            "was cut off during copying or recording: download or export it again"
        )
    return rates


def _edf_rates(path: Path, extension: str, record_seconds: float, labels: list[str],
               samples_per_record: list[int], limits: ReaderLimits) -> dict[str, float]:
    """The data signals' rates (annotation signals left out), checked against ``limits``."""
    name = extension.upper().lstrip(".")
    if not math.isfinite(record_seconds) or record_seconds <= 0:
        raise RecordingError(
            f"{path}: the {name} header gives a data-record duration of {record_seconds:g} s, so "
            "the sampling rates cannot be derived (MNE would assume 1 s); the header is damaged "
            "or the file holds only annotations (read it with read_annotations_file): export it "
            "again with its real record duration"
        )
    if record_seconds > limits.max_record_seconds:
        raise RecordingError(
            f"{path}: the {name} header gives a data-record duration of {record_seconds:g} s, "
            f"above the bound of {limits.max_record_seconds:g} s (files use 0.1 to 60 s); the "
            f"header is probably damaged: export the file again; "
            + limits.how_to_raise("max_record_seconds")
        )
    rates = {
        label: count / record_seconds
        for label, count in zip(labels, samples_per_record)
        if label not in ("EDF Annotations", "BDF Annotations")
    }
    if rates and max(rates.values()) > limits.max_sfreq:
        label, rate = max(rates.items(), key=lambda item: item[1])
        raise RecordingError(
            f"{path}: signal {label!r} is sampled at {rate:g} Hz ({name} header), above the bound "
            f"of {limits.max_sfreq:g} Hz for EEG/EMG; reading it would take memory and time out "
            "of proportion, and such a rate usually means a damaged header; resample the file "
            "below the bound first, or " + limits.how_to_raise("max_sfreq")
        )
    return rates


def _mixed_rate_warning(path: Path, rates: dict[str, float]) -> str | None:
    """One line naming the signals MNE resamples to the fastest rate, or ``None``."""
    if len(set(rates.values())) <= 1:
        return None
    fastest = max(rates.values())
    slower: dict[float, list[str]] = {}
    for label, rate in rates.items():
        if rate != fastest:
            slower.setdefault(rate, []).append(label)
    groups = "; ".join(f"{rate:g} Hz: {', '.join(labels)}" for rate, labels in sorted(slower.items()))
    return (f"{path}: signals at different sampling rates; these were resampled by MNE to "
            f"{fastest:g} Hz, their content is limited to half their own rate ({groups})")


# Neuroscan CNT: the header stores where the event table (after the samples) starts.
_CNT_EVENT_TABLE_OFFSET = 886


def _check_cnt_size(path: Path) -> None:
    """Refuse a CNT file cut off before its event table (MNE would read past its end)."""
    with path.open("rb") as handle:
        handle.seek(_CNT_EVENT_TABLE_OFFSET)
        field = handle.read(4)
    size = path.stat().st_size
    if len(field) < 4:
        raise RecordingError(
            f"{path}: truncated Neuroscan CNT header ({size} bytes); the file was cut off "
            "during copying: download or export it again"
        )
    event_table = int(np.frombuffer(field, dtype="<i4")[0])
    if event_table > size:
        raise RecordingError(
            f"{path}: truncated Neuroscan CNT file: its header places the event table at byte "
            f"{event_table} but the file has {size} bytes; it was cut off during copying or "
            "recording: download or export it again"
        )


def _mne_reader(path: Path) -> tuple[str, Callable[..., mne.io.BaseRaw], dict[str, Any]]:
    extension = _extension(path)
    if extension not in _MNE_READERS:
        raise RecordingError(
            f"{path}: unsupported file type {extension or '(no extension)'!r}; neurofm reads "
            f"{', '.join(SUPPORTED_EXTENSIONS)} (through MNE); convert the file to one of these "
            "(e.g. EDF) or use a layout reader from neurofm.data.layouts"
        )
    name, defaults = _MNE_READERS[extension]
    return name, getattr(mne.io, name), dict(defaults)


def _explain_mne_failure(path: Path, reader_name: str, error: Exception) -> RecordingError:
    message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    if "number of samples (according to header) is 0" in str(error):
        return RecordingError(
            f"{path}: the Neuroscan CNT header says the file holds 0 samples, so the sample width "
            "cannot be inferred; pass it explicitly, e.g. read_recording(path, "
            "data_format='int16') (or 'int32'), as MNE's read_raw_cnt documents"
        )
    return RecordingError(
        f"{path}: cannot be read by mne.io.{reader_name} ({type(error).__name__}: {message}); "
        "the file is damaged, truncated or not in the format its extension says: check that it "
        "opens in its acquisition software, or download or export it again"
    )


def read_raw(path: str | Path, *, limits: ReaderLimits | None = None, **kwargs: Any) -> mne.io.BaseRaw:
    """Open ``path`` with the MNE reader for its extension, preloaded; errors become RecordingError.

    The header is checked against ``limits`` (default :meth:`ReaderLimits.from_environment`)
    before any sample is read. An EDF/BDF file with signals at different rates is read as MNE
    does (resampled to the fastest) with a :class:`UserWarning` naming the resampled signals.
    ``kwargs`` go to the MNE reader (e.g. ``data_format="int16"`` for a CNT file whose header
    does not give the number of samples).
    """
    path = Path(path)
    limits = limits if limits is not None else ReaderLimits.from_environment()
    if not path.is_file():
        raise RecordingError(f"{path}: no such file; check the path (and the dataset mirror)")
    reader_name, reader, options = _mne_reader(path)
    extension = _extension(path)
    rates: dict[str, float] = {}
    if extension in _EDF_SAMPLE_BYTES:
        rates = _check_edf_header(path, extension, limits)
    elif extension == ".cnt":
        _check_cnt_size(path)
    options.update(kwargs)
    try:
        raw = reader(path, preload=False, verbose="warning", **options)
    except Exception as error:  # MNE raises many types for damaged files; all mean "unreadable"
        raise _explain_mne_failure(path, reader_name, error) from error
    _check_raw_header(path, raw, limits)
    try:
        raw.load_data(verbose="warning")
    except MemoryError:
        raise  # a recording too large for this machine is not a damaged file
    except Exception as error:
        raise _explain_mne_failure(path, reader_name, error) from error
    mixed = _mixed_rate_warning(path, rates)
    if mixed is not None:
        logger.warning(mixed)
        warnings.warn(mixed.removeprefix(f"{path}: "), UserWarning, stacklevel=2)
    if raw.n_times == 0 or len(raw.ch_names) == 0:
        raise RecordingError(
            f"{path}: holds no samples ({len(raw.ch_names)} channels, {raw.n_times} samples); "
            "the file is empty or its header is wrong: download or export it again"
        )
    return raw


def _check_raw_header(path: Path, raw: mne.io.BaseRaw, limits: ReaderLimits) -> None:
    """Refuse, from what MNE read of the header, a rate or size beyond ``limits``."""
    sfreq = float(raw.info["sfreq"])
    if not math.isfinite(sfreq) or sfreq <= 0:
        raise RecordingError(f"{path}: the header gives a sampling rate of {sfreq:g} Hz; the "
                             "header is damaged: export the file again")
    if sfreq > limits.max_sfreq:
        raise RecordingError(
            f"{path}: sampled at {sfreq:g} Hz, above the bound of {limits.max_sfreq:g} Hz for "
            "EEG/EMG; reading it would take memory and time out of proportion, and such a rate "
            "usually means a damaged header; resample the file below the bound first, or "
            + limits.how_to_raise("max_sfreq")
        )
    gigabytes = raw.n_times * len(raw.ch_names) * _BYTES_PER_SAMPLE_READ / 1e9
    if gigabytes > limits.max_gigabytes:
        raise RecordingError(
            f"{path}: {len(raw.ch_names)} channels x {raw.n_times} samples would take "
            f"{gigabytes:.1f} GB to read, above the bound of {limits.max_gigabytes:g} GB; split "
            "the recording into shorter files, or " + limits.how_to_raise("max_gigabytes")
        )


def _annotations_from_mne(raw: mne.io.BaseRaw) -> list[Annotation]:
    annotations = raw.annotations
    # With orig_time set, MNE counts onsets from the measurement start, not from the first sample.
    shift = raw.first_time if annotations.orig_time is not None else 0.0
    return [
        Annotation(float(onset - shift), float(duration), str(description))
        for onset, duration, description in zip(
            annotations.onset, annotations.duration, annotations.description
        )
    ]


def _subject_from_info(raw: mne.io.BaseRaw) -> str | None:
    subject_info = raw.info.get("subject_info") or {}
    his_id = str(subject_info.get("his_id", "") or "").strip()
    # EDF+ writes "X" for an unknown patient code.
    return his_id if his_id and his_id != "X" else None


def recording_from_raw(
    raw: mne.io.BaseRaw, source: Path, reader_name: str, warnings_out: list[str] | None = None
) -> Recording:
    """Convert a preloaded MNE ``Raw`` into a :class:`Recording`: float32 ``[C, T]`` in µV."""
    warnings_out = list(warnings_out or [])
    is_volts = np.array([ch["unit"] == mne.io.constants.FIFF.FIFF_UNIT_V for ch in raw.info["chs"]])
    scale = np.where(is_volts, 1e6, 1.0)
    signal = np.empty((len(raw.ch_names), raw.n_times), dtype=np.float32)
    # A few channels at a time: the float64 copy get_data makes stays small on whole nights.
    for start in range(0, len(raw.ch_names), _CHANNELS_PER_COPY):
        stop = min(start + _CHANNELS_PER_COPY, len(raw.ch_names))
        signal[start:stop] = raw.get_data(picks=np.arange(start, stop)) * scale[start:stop, None]

    mne_types = raw.get_channel_types()
    ch_types = [infer_channel_type(name, t) for name, t in zip(raw.ch_names, mne_types)]
    inferred = {
        name: new for name, old, new in zip(raw.ch_names, mne_types, ch_types) if new != old
    }
    orig_units = dict(getattr(raw, "_orig_units", None) or {})
    if not orig_units:
        orig_units = {
            name: ("V" if volts else "n/a") for name, volts in zip(raw.ch_names, is_volts)
        }

    duration = raw.n_times / raw.info["sfreq"]
    annotations = keep_annotations_inside(
        _annotations_from_mne(raw), duration, source, warnings_out
    )
    meas_date = raw.info.get("meas_date")
    meta: dict[str, Any] = {
        "reader": f"mne.io.{reader_name}",
        "original_units": orig_units,
        "channel_units": ["uV" if volts else "n/a" for volts in is_volts],
        "mains_freq": raw.info.get("line_freq"),
        "meas_date": meas_date.isoformat() if meas_date is not None else None,
        "inferred_types": inferred,
        "warnings": warnings_out,
    }
    return Recording(
        signal=signal,
        ch_names=list(raw.ch_names),
        ch_types=ch_types,
        sfreq=float(raw.info["sfreq"]),
        unit="uV" if is_volts.any() else "device",
        annotations=annotations,
        source=source,
        subject=_subject_from_info(raw),
        session=None,
        meta=meta,
    )


def read_recording(path: str | Path, *, limits: ReaderLimits | None = None, **kwargs: Any) -> Recording:
    """Read one recording in any format MNE reads (chosen by extension) into a :class:`Recording`.

    Extensions: ``.edf`` (EDF/EDF+), ``.bdf``, ``.gdf``, ``.fif``, ``.vhdr`` (BrainVision),
    ``.set`` (EEGLAB), ``.cnt`` (Neuroscan), ``.eeg`` (Nihon Kohden), ``.lay`` (Persyst).
    ``kwargs`` are passed to the MNE reader (``data_format="int16"`` for a CNT file whose
    header claims 0 samples); ``limits`` bound the header (:class:`ReaderLimits`, default from
    the environment). Returns a float32 ``[C, T]`` signal in microvolts for channels
    with a volt unit (``unit="uV"``), MNE's channel types corrected from the labels, the
    file's annotations, and ``meta`` with ``reader``, ``original_units``, ``channel_units``,
    ``mains_freq`` (``None`` when the file does not say), ``inferred_types`` and ``warnings``.

    Raises:
        RecordingError: unknown extension, missing, unreadable, truncated or corrupted file, or
            a header beyond ``limits``.
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = read_raw(path, limits=limits, **kwargs)
    reader_name = _MNE_READERS[_extension(path)][0]
    mne_warnings = [f"{path}: {str(w.message).strip()}" for w in caught]
    return recording_from_raw(raw, path, reader_name, mne_warnings)


def read_annotations_file(path: str | Path) -> list[Annotation]:
    """Read a file that holds only annotations (e.g. a Sleep-EDF ``*-Hypnogram.edf``).

    Returns the annotations in file order with onsets and durations in seconds from the start of
    the recording they describe. Raises :class:`RecordingError` naming the file when MNE cannot
    read it or it holds no annotations.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such annotation file; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            annotations = mne.read_annotations(path)
    except Exception as error:  # damaged files raise many exception types inside MNE
        raise RecordingError(
            f"{path}: cannot be read as an annotation file by mne.read_annotations "
            f"({type(error).__name__}: {error}); the file is damaged or not an annotation file "
            "(EDF+ annotations, BrainVision .vmrk, EEGLAB .set, FIF, CSV/TXT): download it again"
        ) from error
    if len(annotations) == 0:
        raise RecordingError(
            f"{path}: holds no annotations; check that this is the hypnogram/events file and not "
            "the signal file"
        )
    return [
        Annotation(float(onset), float(duration), str(description))
        for onset, duration, description in zip(
            annotations.onset, annotations.duration, annotations.description
        )
    ]
