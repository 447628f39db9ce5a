"""Tasks end to end: registry files -> corpus -> windows -> subject-wise folds -> baseline -> result.

eegmat and myo_gestures run on the real recordings of the mirror. The sleep-staging task runs on
a SYNTHETIC test fixture written here in the DREAMS Subjects layout (subjectN.edf +
HypnogramAASM_subjectN.txt): made-up signals, never real data, only to exercise the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edfio import Edf, EdfSignal

from neurofm.cli import main
from neurofm.data.corpus import Corpus
from neurofm.data.splits import Split
from neurofm.errors import ConfigError, DatasetError
from neurofm.tasks.baselines import evaluate_baseline
from neurofm.tasks.data import (
    load_task_windows,
    prepare_task_corpus,
    task_channels,
    task_folds,
)
from neurofm.tasks.definitions import Task, get_task, list_tasks
from neurofm.tasks.evaluate import EvaluationResult
from neurofm.tasks.reports import write_report

BOUNDED_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "auroc", "auc_pr")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Checksums of mirror files are cached per test session, outside the user's home.
    monkeypatch.setenv("NEUROFM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _assert_subject_wise(folds: list[Split], subjects: set[str]) -> None:
    tested = []
    for fold in folds:
        train, val, test = (set(fold.groups[p]) for p in ("train", "val", "test"))
        assert not (train & val or train & test or val & test), fold.name
        assert train | val | test == subjects
        assert not set(fold.train) & set(fold.test)
        tested += fold.groups["test"]
    assert sorted(tested) == sorted(subjects)  # every subject tested exactly once


def _assert_metrics_valid(result: EvaluationResult) -> None:
    for name in BOUNDED_METRICS:
        assert 0.0 <= result.pooled[name] <= 1.0, name
        interval = result.over_subjects[name]
        assert interval.low <= interval.estimate <= interval.high, name
    assert -1.0 <= result.pooled["cohen_kappa"] <= 1.0


def _run_baseline(task: Task, corpus, n_resamples: int) -> EvaluationResult:
    windows = load_task_windows(task, corpus)
    folds = task_folds(task, corpus)
    return evaluate_baseline(task, windows, folds, progress=False, n_resamples=n_resamples)


def test_the_tasks_are_defined_with_their_selection_metric():
    assert list_tasks() == ["eegmat", "dreams_sleep", "dreams_sleep_staging",
                            "dreams_sleep_staging_5s", "myo_gestures", "bi2012_p300", "graz_mi"]
    assert get_task("eegmat").primary_metric == "auroc"
    assert get_task("dreams_sleep").primary_metric == "cohen_kappa"
    assert get_task("myo_gestures").n_classes == 8
    assert get_task("bi2012_p300").class_names == ("nontarget", "target")
    assert get_task("graz_mi").window.event_offset_seconds == 0.5


def test_task_channel_selection_keeps_its_channels_or_one_derivation():
    graz = get_task("graz_mi")
    # BCI IV 2b has C3, Cz, C4 and EOG; 2a has 22 EEG channels: both give the same three.
    montages = {"graz_mi/B0101T": ["EOG1", "C3", "CZ", "C4"],
                "graz_mi/A01T": ["FZ", "C4", "CZ", "C3", "PZ"]}
    assert task_channels(graz, montages) == ("C3", "CZ", "C4")
    with pytest.raises(ConfigError, match=r"graz_mi/X.*lacks channel\(s\) \['CZ'\]"):
        task_channels(graz, {**montages, "graz_mi/X": ["C3", "C4"]})
    sleep = get_task("dreams_sleep")
    # CZ is missing from one night, so every night uses the next choice they all have.
    nights = {"n1": ["FP1", "CZ", "C3"], "n2": ["C3", "O1"]}
    assert task_channels(sleep, nights) == ("C3",)
    with pytest.raises(ConfigError, match="each is missing somewhere"):
        task_channels(sleep, {"n1": ["CZ"], "n2": ["O1"]})
    eegmat = get_task("eegmat")
    assert task_channels(eegmat, {"a": ["FP1", "FP2"], "b": ["FP1", "FP2"]}) == ("FP1", "FP2")
    with pytest.raises(ConfigError, match="one montage"):
        task_channels(eegmat, {"a": ["FP1", "FP2"], "b": ["FP2", "FP1"]})


def test_a_task_without_local_data_says_so_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match=r"bi2012_p300.*not available locally.*fetch"):
        prepare_task_corpus(get_task("bi2012_p300"), tmp_path, mirror=tmp_path / "empty",
                            progress=False)


def test_evaluate_command_on_a_task_without_data_exits_with_the_fetch_command(tmp_path, capsys):
    status = main(["evaluate", "--task", "graz_mi", "--mirror", str(tmp_path / "empty"),
                   "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 2
    error = capsys.readouterr().err
    assert "graz_mi" in error and "neurofm datasets fetch graz_mi" in error
    assert not (tmp_path / "out").exists()


def test_eegmat_baseline_on_all_32_mirror_subjects_through_the_cli(mirror_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["evaluate", "--task", "eegmat", "--baseline", "--corpus", str(tmp_path / "corpus"),
                   "--out", str(out), "--mirror", str(mirror_dir), "--bootstrap", "100", "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "64 prepared" in printed and "auroc" in printed
    result = EvaluationResult.load(out / "bandpower_logreg.json")
    subjects = {f"Subject{i:02d}" for i in range(32)}
    _assert_subject_wise(result.folds, subjects)
    assert set(result.subject_metrics) == subjects
    # Both files of a subject (rest _1 and arithmetic _2) sit in the same partition.
    for fold in result.folds:
        for subject in fold.groups["test"]:
            assert {f"eegmat/{subject}_1", f"eegmat/{subject}_2"} <= set(fold.test)
    # Non-overlapping 5-s windows (1000 samples at 200 Hz) tile each file: ~36 per rest file,
    # 12 per arithmetic file.
    expected = {"0": 0, "1": 0}
    for entry in Corpus(result.config["corpus"]):
        expected["0" if entry.label == "rest" else "1"] += entry.n_samples // 1000
    assert result.config["data"]["windows_per_class"] == expected
    assert expected["1"] == 32 * 12
    _assert_metrics_valid(result)
    # The split is saved beside the result, identical to the one inside it.
    saved_folds = [Split.from_dict(f) for f in json.loads((out / "folds.json").read_text())]
    assert saved_folds == result.folds
    for name in ("report.md", "report.html", "confusion_bandpower_logreg.png",
                 "per_subject_auroc.png"):
        assert (out / name).is_file(), name


def test_myo_gestures_baseline_is_cross_participant(mirror_dir, tmp_path):
    task = get_task("myo_gestures")
    corpus, report = prepare_task_corpus(task, tmp_path / "corpus", mirror=mirror_dir,
                                         progress=False)
    assert len(report.failed) == 0
    windows = load_task_windows(task, corpus)
    assert windows.signal.shape[1:] == (8, 200) and windows.unit == "device"
    result = _run_baseline(task, corpus, n_resamples=10)
    participants = {"12345", "45612", "21547", "78945", "54321",
                    "10000", "22222", "32185", "40052", "66666"}
    _assert_subject_wise(result.folds, participants)
    # Both sessions of a participant stay together.
    for fold in result.folds:
        sessions = {rid.split("/")[1] for rid in fold.test}
        assert {s.split("-")[0] for s in sessions} == set(fold.groups["test"])
    _assert_metrics_valid(result)
    assert set(result.predictions.y_true.tolist()) == set(range(8))


# --------------------------------------------------------------------------- sleep (synthetic)

# AASM hypnogram codes of the DREAMS layout: 5 W, 4 REM, 3 N1, 2 N2, 1 N3; -2 is unscored.
_CODES = {"W": 5, "N1": 3, "N2": 2, "N3": 1, "REM": 4}
# A made-up dominant rhythm per stage, so the band-power baseline has something to find.
_RHYTHM_HZ = {"W": 10.0, "N1": 6.0, "N2": 13.0, "N3": 1.5, "REM": 20.0}


def _write_synthetic_dreams_night(folder: Path, number: int, rng: np.random.Generator) -> None:
    sfreq = 200.0
    stages = [s for s in ("W", "N1", "N2", "N3", "N2", "REM") for _ in range(3)]
    codes: list[int] = []
    pieces = []
    time = np.arange(int(30 * sfreq)) / sfreq
    for stage in stages:
        codes += [_CODES[stage]] * 6  # six 5-s scores per 30-s epoch
        pieces.append(40 * np.sin(2 * np.pi * _RHYTHM_HZ[stage] * time + rng.uniform(0, 6)))
    codes += [-2] * 6  # one unscored epoch at the end
    pieces.append(np.zeros_like(time))
    eeg = np.concatenate(pieces) + rng.normal(0, 5, len(pieces) * len(time))
    other = rng.normal(0, 20, eeg.size)
    Edf([
        EdfSignal(eeg, sfreq, label="CZ-A1", physical_dimension="uV", physical_range=(-500, 500)),
        EdfSignal(other, sfreq, label="FP1-A2", physical_dimension="uV", physical_range=(-500, 500)),
    ]).write(folder / f"subject{number}.edf")
    (folder / f"HypnogramAASM_subject{number}.txt").write_text(
        "[HypnogramAASM]\n" + "\n".join(map(str, codes)) + "\n")


def test_sleep_staging_end_to_end_on_a_synthetic_dreams_layout(tmp_path):
    dataset_dir = tmp_path / "dreams_sleep"
    dataset_dir.mkdir()
    rng = np.random.default_rng(0)
    for number in range(1, 5):
        _write_synthetic_dreams_night(dataset_dir, number, rng)
    task = get_task("dreams_sleep")
    corpus, report = prepare_task_corpus(task, tmp_path / "corpus", dataset_dir=dataset_dir,
                                         progress=False)
    assert len(report.failed) == 0, report.summary()
    windows = load_task_windows(task, corpus)
    # 30-s epochs of one derivation; the unscored epoch is left out.
    assert windows.signal.shape == (4 * 18, 1, 6000) and windows.channels == ("CZ",)
    assert np.bincount(windows.label).tolist() == [12, 12, 24, 12, 12]
    result = _run_baseline(task, corpus, n_resamples=20)
    _assert_subject_wise(result.folds, {f"subject{n}" for n in range(1, 5)})
    _assert_metrics_valid(result)
    assert result.pooled["accuracy"] > 0.8  # the synthetic rhythms are easy to tell apart
    files = write_report([result], tmp_path / "report")
    hypnograms = sorted(p.name for p in files.figures if p.name.startswith("hypnogram_"))
    assert hypnograms == [f"hypnogram_bandpower_logreg_dreams_sleep_subject{n}.png"
                          for n in range(1, 5)]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in files.figures)
