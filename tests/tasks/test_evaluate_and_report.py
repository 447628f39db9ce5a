"""Scoring predictions against a split, saving results, and rendering reports (in-memory data)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from neurofm.data.splits import Split
from neurofm.errors import ConfigError
from neurofm.tasks.definitions import get_task
from neurofm.tasks.evaluate import EvaluationResult, Predictions, evaluate_predictions
from neurofm.tasks.reports import write_report


def _folds(task_name: str, subjects: list[str]) -> list[Split]:
    return get_task(task_name).split.folds({s: [f"{s}_night"] for s in subjects})


def _predictions(task_name: str, folds: list[Split], seed: int, skill: float) -> Predictions:
    """Noisy predictions for 12 windows per test subject, better than chance by ``skill``."""
    task = get_task(task_name)
    rng = np.random.default_rng(seed)
    parts = []
    for index, fold in enumerate(folds):
        for subject in fold.groups["test"]:
            y_true = rng.integers(0, task.n_classes, 12)
            logits = rng.normal(0, 1, (12, task.n_classes)) + skill * np.eye(task.n_classes)[y_true]
            y_prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            parts.append(Predictions(y_true, y_prob, np.full(12, index), [subject] * 12,
                                     [f"{subject}_night"] * 12, 30.0 * np.arange(12)))
    return Predictions.concatenate(parts)


def test_evaluation_scores_every_fold_and_subject_and_round_trips_through_json(tmp_path):
    task = get_task("eegmat")
    folds = _folds("eegmat", [f"S{i:02d}" for i in range(12)])
    predictions = _predictions("eegmat", folds, seed=0, skill=2.0)
    result = evaluate_predictions(task, "toy", predictions, folds, {"note": "synthetic"},
                                  n_resamples=50)
    assert len(result.fold_metrics) == len(folds) == 8
    assert sorted(result.subject_metrics) == [f"S{i:02d}" for i in range(12)]
    for name, interval in result.over_subjects.items():
        assert 0.0 <= interval.estimate <= 1.0 or name == "cohen_kappa"
        assert interval.low <= interval.estimate <= interval.high
    assert result.over_folds["auroc"].n == 8
    loaded = EvaluationResult.load(result.save(tmp_path / "result.json"))
    assert loaded.folds == result.folds
    assert loaded.pooled == pytest.approx(result.pooled)
    assert np.allclose(loaded.predictions.y_prob, result.predictions.y_prob, atol=1e-6)
    assert loaded.config["note"] == "synthetic"


def test_predictions_of_a_subject_outside_its_folds_test_partition_are_refused():
    task = get_task("eegmat")
    folds = _folds("eegmat", [f"S{i:02d}" for i in range(12)])
    predictions = _predictions("eegmat", folds, seed=0, skill=1.0)
    predictions.fold[:] = 0  # every window claims fold 0
    with pytest.raises(ConfigError, match="not in that fold's test partition"):
        evaluate_predictions(task, "leaky", predictions, folds, n_resamples=10)


def test_predictions_with_the_wrong_number_of_classes_are_refused():
    folds = _folds("eegmat", [f"S{i:02d}" for i in range(12)])
    predictions = _predictions("myo_gestures", folds, seed=0, skill=1.0)
    with pytest.raises(ConfigError, match="class columns"):
        evaluate_predictions(get_task("eegmat"), "wrong", predictions, folds)


def test_a_file_that_is_not_a_result_is_refused_by_name(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match=r"other.json"):
        EvaluationResult.load(path)


def test_report_compares_systems_in_markdown_and_html_with_plots(tmp_path):
    task = get_task("eegmat")
    folds = _folds("eegmat", [f"S{i:02d}" for i in range(12)])
    history = tmp_path / "metrics.csv"
    with open(history, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "epoch", "split", "name", "value", "wall_time"])
        for step in range(1, 6):
            writer.writerow([step, 0, "train", "loss", 1.0 / step, 0.0])
            writer.writerow([step, 0, "val", "auroc", 0.5 + 0.05 * step, 0.0])
    strong = evaluate_predictions(task, "pretrained", _predictions("eegmat", folds, 1, 3.0), folds,
                                  n_resamples=20, history_csv=str(history))
    weak = evaluate_predictions(task, "baseline", _predictions("eegmat", folds, 2, 0.5), folds,
                                n_resamples=20)
    files = write_report([strong, weak], tmp_path / "report")
    markdown = files.markdown.read_text()
    page = files.html.read_text()
    for text in (markdown, page):
        assert "pretrained" in text and "baseline" in text and "AUROC" in text
        assert "S00" in text  # the split lists the subjects
    names = sorted(p.name for p in files.figures)
    assert names == ["confusion_baseline.png", "confusion_pretrained.png",
                     "learning_curves_pretrained.png", "per_subject_auroc.png"]
    for figure in files.figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({figure.name})" in markdown and f'src="{figure.name}"' in page


def test_sleep_report_draws_a_hypnogram_per_recording(tmp_path):
    task = get_task("dreams_sleep")
    folds = _folds("dreams_sleep", ["excerpt1", "excerpt2", "excerpt3", "excerpt4"])
    result = evaluate_predictions(task, "toy", _predictions("dreams_sleep", folds, 0, 2.0), folds,
                                  n_resamples=20)
    files = write_report([result], tmp_path)
    hypnograms = [p.name for p in files.figures if p.name.startswith("hypnogram_")]
    assert len(hypnograms) == 4


def test_report_refuses_results_of_different_tasks(tmp_path):
    eegmat = get_task("eegmat")
    folds = _folds("eegmat", [f"S{i:02d}" for i in range(12)])
    first = evaluate_predictions(eegmat, "a", _predictions("eegmat", folds, 0, 1.0), folds,
                                 n_resamples=10)
    sleep = get_task("dreams_sleep")
    sleep_folds = _folds("dreams_sleep", ["e1", "e2", "e3", "e4"])
    second = evaluate_predictions(sleep, "b", _predictions("dreams_sleep", sleep_folds, 0, 1.0),
                                  sleep_folds, n_resamples=10)
    with pytest.raises(ConfigError, match="several tasks"):
        write_report([first, second], tmp_path)


def test_report_command_compares_saved_results(tmp_path, capsys):
    from neurofm.cli import main

    task = get_task("eegmat")
    folds = _folds("eegmat", [f"S{i:02d}" for i in range(12)])
    paths = []
    for system, skill in (("scratch", 0.5), ("pretrained", 2.0)):
        result = evaluate_predictions(task, system, _predictions("eegmat", folds, 3, skill), folds,
                                      n_resamples=10)
        paths.append(str(result.save(tmp_path / f"{system}.json")))
    assert main(["report", *paths, "--out", str(tmp_path / "report")]) == 0
    assert "report.md" in capsys.readouterr().out
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.index("| scratch |") < markdown.index("| pretrained |")
