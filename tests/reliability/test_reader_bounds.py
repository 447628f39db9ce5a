"""Header bounds of the readers: a record duration of 0 or absurd, a sampling rate or size above
the configured bound (refused from the header, before a sample is read), mixed rates reported."""

from __future__ import annotations

import time
from pathlib import Path

import mne
import numpy as np
import pytest
from edfio import Edf, EdfSignal
from test_bad_recordings import assert_refused, copy_from_mirror, damage

from neurofm.cli import main
from neurofm.data.readers import ReaderLimits, read_recording
from neurofm.errors import ConfigError

RECORD_DURATION = slice(244, 252)


@pytest.fixture
def eegmat_copy(mirror_dir: Path, tmp_path: Path) -> Path:
    return copy_from_mirror(mirror_dir, "eegmat/Subject00_2.edf", tmp_path)


def set_record_duration(path: Path, text: str) -> None:
    damage(path, RECORD_DURATION.start, text.encode("ascii").ljust(8))


def forbid_reading_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to read the samples fail the test (the refusal must come first)."""

    def load_data(self, *args, **kwargs):
        raise AssertionError("samples were read before the header was refused")

    monkeypatch.setattr(mne.io.BaseRaw, "load_data", load_data)


@pytest.mark.parametrize("duration", ["0", "-1", "nan", "0.0"])
def test_edf_record_duration_not_positive_is_refused(eegmat_copy, monkeypatch, duration):
    set_record_duration(eegmat_copy, duration)
    forbid_reading_samples(monkeypatch)
    assert_refused(eegmat_copy, "data-record duration", "cannot be derived", "MNE would assume 1 s")


def test_edf_absurd_record_duration_is_refused(eegmat_copy, monkeypatch):
    set_record_duration(eegmat_copy, "1e6")
    forbid_reading_samples(monkeypatch)
    assert_refused(eegmat_copy, "1e+06 s", "bound of 3600 s", "NEUROFM_MAX_RECORD_SECONDS")


def test_bdf_record_duration_zero_is_refused(mirror_dir, tmp_path, monkeypatch):
    bdf = copy_from_mirror(mirror_dir, "formats/bdf/test_bdf_stim_channel.bdf", tmp_path)
    set_record_duration(bdf, "0")
    forbid_reading_samples(monkeypatch)
    assert_refused(bdf, "BDF header gives a data-record duration of 0 s")


def test_annotation_only_edf_read_as_a_recording_points_to_the_annotation_reader(mirror_dir):
    # Sleep-EDF hypnograms are EDF+ files of annotations only, with a record duration of 0.
    hypnogram = mirror_dir / "formats/edf/SC4001EC-Hypnogram.edf"
    assert_refused(hypnogram, "duration of 0 s", "read_annotations_file")


def test_rate_above_the_bound_is_refused_from_the_header(eegmat_copy, monkeypatch):
    # 500 samples per record over 0.002 s: the header claims 250 kHz.
    set_record_duration(eegmat_copy, "0.002")
    forbid_reading_samples(monkeypatch)
    start = time.perf_counter()
    assert_refused(eegmat_copy, "250000 Hz", "bound of 20000 Hz", "NEUROFM_MAX_SFREQ")
    assert time.perf_counter() - start < 1.0


def test_raised_rate_bound_reads_the_file(eegmat_copy, monkeypatch):
    set_record_duration(eegmat_copy, "0.002")
    monkeypatch.setenv("NEUROFM_MAX_SFREQ", "300000")
    assert read_recording(eegmat_copy).sfreq == 250_000.0


def test_limits_argument_bounds_any_format(mirror_dir, monkeypatch):
    fif = mirror_dir / "formats/fif/bv_dig_raw.fif"  # 5 kHz
    forbid_reading_samples(monkeypatch)
    assert_refused(fif, "sampled at 5000 Hz", "bound of 1000 Hz",
                   limits=ReaderLimits(max_sfreq=1000))


def test_size_above_the_bound_is_refused_before_reading(mirror_dir, monkeypatch):
    eegmat = mirror_dir / "eegmat/Subject00_2.edf"
    forbid_reading_samples(monkeypatch)
    assert_refused(eegmat, "GB to read", "bound of 0.001 GB", "NEUROFM_MAX_RECORDING_GB",
                   limits=ReaderLimits(max_gigabytes=0.001))


@pytest.mark.parametrize("value", ["abc", "-5", "inf", "0"])
def test_bad_limit_in_the_environment_names_the_variable(mirror_dir, monkeypatch, value):
    monkeypatch.setenv("NEUROFM_MAX_SFREQ", value)
    with pytest.raises(ConfigError, match=f"NEUROFM_MAX_SFREQ={value!r}"):
        read_recording(mirror_dir / "eegmat/Subject00_2.edf")


@pytest.mark.parametrize("field", ["max_sfreq", "max_record_seconds", "max_gigabytes"])
def test_bad_limit_argument_is_refused(field):
    with pytest.raises(ConfigError, match=field):
        ReaderLimits(**{field: float("nan")})


def write_mixed_rate_edf(path: Path) -> Path:
    rng = np.random.default_rng(0)
    seconds = 4
    signals = [EdfSignal(rng.normal(0, 20, rate * seconds), sampling_frequency=rate, label=label,
                         physical_dimension="uV", physical_range=(-500, 500))
               for label, rate in (("EEG Fz", 256), ("EEG Cz", 256), ("EEG Pz", 128),
                                   ("Resp", 16))]
    Edf(signals).write(path)
    return path


def test_mixed_rates_are_reported_not_silent(tmp_path, caplog):
    path = write_mixed_rate_edf(tmp_path / "mixed.edf")
    with caplog.at_level("WARNING", logger="neurofm.data.readers"):
        recording = read_recording(path)
    assert recording.sfreq == 256.0
    notes = [w for w in recording.meta["warnings"] if "different sampling rates" in w]
    assert len(notes) == 1
    assert str(path) in notes[0] and "128 Hz: EEG Pz" in notes[0] and "16 Hz: Resp" in notes[0]
    assert "Fz" not in notes[0]
    assert any("different sampling rates" in r.getMessage() for r in caplog.records)


def test_one_rate_gives_no_mixed_rate_note(mirror_dir):
    recording = read_recording(mirror_dir / "eegmat/Subject00_2.edf")
    assert not [w for w in recording.meta["warnings"] if "different sampling rates" in w]


def test_mixed_rate_note_reaches_the_corpus_manifest(tmp_path):
    from neurofm.data.corpus import Corpus

    write_mixed_rate_edf(tmp_path / "mixed.edf")
    assert main(["prepare", str(tmp_path / "mixed.edf"), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    corpus = Corpus(next(p for p in (tmp_path / "out").iterdir() if p.is_dir()))
    (entry,) = corpus.entries
    assert any("128 Hz: EEG Pz" in q for q in entry.quality)


def test_prepare_strict_refuses_a_250_khz_file_on_one_line(eegmat_copy, tmp_path, capsys,
                                                           monkeypatch):
    set_record_duration(eegmat_copy, "0.002")
    forbid_reading_samples(monkeypatch)
    code = main(["prepare", str(eegmat_copy), "--out", str(tmp_path / "out"), "--strict",
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert str(eegmat_copy) in err and "250000 Hz" in err and "NEUROFM_MAX_SFREQ" in err
