"""``neurofm evaluate --reference yasa``: YASA's pretrained stager beside the baseline, on the
real DREAMS excerpts, and the refusals (not a sleep task, YASA not installed, 5-s epochs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from neurofm.cli import main
from neurofm.tasks.evaluate import EvaluationResult


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFM_CACHE", str(tmp_path / "cache"))


def _evaluate(task: str, tmp_path: Path, mirror: Path, *extra: str) -> int:
    return main(["evaluate", "--task", task, "--corpus", str(tmp_path / "corpora"), "--mirror",
                 str(mirror), "--bootstrap", "20", "--quiet", "--out", str(tmp_path / "out"),
                 *extra])


def test_the_yasa_reference_joins_the_baseline_on_the_same_epochs_and_folds(
        mirror_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("yasa")
    assert _evaluate("dreams_sleep_staging", tmp_path, mirror_dir, "--reference", "yasa",
                     "--max-folds", "2") == 0
    out = tmp_path / "out"
    baseline = EvaluationResult.load(out / "sleep_spectral.json")
    yasa = EvaluationResult.load(out / "yasa_pretrained.json")
    assert yasa.predictions.y_true.tolist() == baseline.predictions.y_true.tolist()
    assert yasa.predictions.onset.tolist() == baseline.predictions.onset.tolist()
    assert [f.to_dict() for f in yasa.folds] == json.loads((out / "folds.json").read_text())
    assert "YASA SleepStaging" in yasa.config["system"]
    report = (out / "report.md").read_text()
    assert "sleep_spectral" in report and "yasa_pretrained" in report
    printed = capsys.readouterr().out
    assert "dreams_sleep_staging / sleep_spectral" in printed
    assert "dreams_sleep_staging / yasa_pretrained" in printed


def test_yasa_on_a_task_that_is_not_sleep_staging_is_refused_before_any_work(
        mirror_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _evaluate("eegmat", tmp_path, mirror_dir, "--reference", "yasa") == 2
    assert "not a sleep-staging task" in capsys.readouterr().err
    assert not (tmp_path / "corpora").exists() and not (tmp_path / "out").exists()


def test_yasa_not_installed_is_refused_with_how_to_install_it(
        mirror_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "yasa" else find_spec(name, *a))
    assert _evaluate("dreams_sleep_staging", tmp_path, mirror_dir, "--reference", "yasa") == 2
    error = capsys.readouterr().err
    assert "--reference yasa needs yasa, which is not installed" in error
    assert "pip install 'neurofm[sleep]'" in error
    assert not (tmp_path / "corpora").exists()


def test_yasa_on_5s_epochs_is_refused_before_the_baseline_runs(
        mirror_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("yasa")
    assert _evaluate("dreams_sleep_staging_5s", tmp_path, mirror_dir, "--reference", "yasa") == 2
    assert "YASA stages 30-s epochs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
