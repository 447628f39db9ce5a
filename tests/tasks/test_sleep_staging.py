"""Sleep staging on DREAMS Sleep Spindles excerpts: labels, bad input, features, baseline, YASA.

Most tests run on SYNTHETIC excerpts written here in the database's text layout (made-up noise
and hypnograms, never real data): they exercise the majority labelling, the bad-input handling
of preparation and a class absent from training. The last tests run on the real excerpts 1-6 of
the mirror.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layout_writers import write_dreams_hypnogram, write_dreams_signal
from neurofm.data.layouts import read_dreams_spindles_excerpt
from neurofm.data.windows import majority_label
from neurofm.datasets.registry import DREAMS_SPINDLES_EXCERPTS
from neurofm.errors import RecordingError
from neurofm.tasks.baselines import evaluate_baseline
from neurofm.tasks.data import TaskWindows, load_task_windows, prepare_task_corpus, task_folds
from neurofm.tasks.definitions import get_task
from neurofm.tasks.metrics import per_class_metrics
from neurofm.tasks.reports import class_coverage, write_report

W, REM, S1, S2, S3, S4 = 5, 4, 3, 2, 1, 0  # R&K codes of the DREAMS hypnograms


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_majority_label_takes_the_most_common_and_refuses_ties_and_unscored() -> None:
    assert majority_label(np.array([2, 2, 2, 2, 1, 3])) == (2, None)
    assert majority_label(np.array([2, 2, 1, 1, 3, 3])) == (None, "tied")
    assert majority_label(np.array([-1, -1, -1, -1, 2, 2])) == (None, "unscored")
    assert majority_label(np.array([2, 2, -1, 1, 0, 3])) == (2, None)  # plurality of six


def _excerpt(folder: Path, number: int, codes: list[int], seed: int) -> None:
    sfreq, derivation = DREAMS_SPINDLES_EXCERPTS[number]
    signal = np.random.default_rng(seed).normal(0, 20, int(1800 * sfreq))
    write_dreams_signal(folder / f"excerpt{number}.txt", derivation, signal)
    write_dreams_hypnogram(folder / f"Hypnogram_excerpt{number}.txt", codes, header="Hypnogram")
    for kind in ("Visual_scoring1", "Visual_scoring2"):
        (folder / f"{kind}_excerpt{number}.txt").write_text(
            f"[{kind.replace('Visual_scoring', 'vis')}_Spindles/{derivation}]\n100.0 1.0\n")
    (folder / f"Automatic_detection_excerpt{number}.txt").write_text(
        f"[Spindles/{derivation}]\n200.0 0.8\n")


def _stages(blocks: list[tuple[int, int]]) -> list[int]:
    """(R&K code, number of 30-s epochs) blocks -> one code per 5 s."""
    return [code for code, epochs in blocks for _ in range(6 * epochs)]


@pytest.fixture(scope="module")
def synthetic_excerpts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Excerpts 1, 2, 4 well formed (N3 only in excerpt 1, no REM anywhere), one tied and one
    unscored epoch in excerpt 2; excerpts 5-7 each broken in one documented way."""
    folder = tmp_path_factory.mktemp("dreams_spindles")
    tied = [W, W, W, S1, S1, S1]
    _excerpt(folder, 1, _stages([(W, 10), (S2, 30), (S3, 10), (S4, 10)]), 1)
    _excerpt(folder, 2, _stages([(W, 20), (S1, 10)]) + tied + [-1] * 6 + _stages([(S2, 28)]), 2)
    _excerpt(folder, 4, _stages([(W, 15), (S1, 15), (S2, 30)]), 4)
    unknown = _stages([(S2, 60)])
    unknown[8] = 7
    _excerpt(folder, 5, unknown, 5)
    _excerpt(folder, 6, _stages([(S2, 60)]), 6)
    lines = (folder / "excerpt6.txt").read_text().splitlines()
    lines[41] = "12.5e"
    (folder / "excerpt6.txt").write_text("\n".join(lines) + "\n")
    _excerpt(folder, 7, _stages([(S2, 59)]), 7)  # 29.5 min of stages for 30 min of signal
    return folder


def test_bad_excerpts_fail_naming_file_and_line_and_the_others_prepare(
        synthetic_excerpts: Path, tmp_path: Path) -> None:
    task = get_task("dreams_sleep_staging")
    corpus, report = prepare_task_corpus(task, tmp_path / "corpora",
                                         dataset_dir=synthetic_excerpts, progress=False)

    assert sorted(corpus.ids) == [f"dreams_spindles/excerpt{n}" for n in (1, 2, 4)]
    failed = {o.id.rsplit("/", 1)[1]: o.message for o in report.failed}
    assert sorted(failed) == ["excerpt5", "excerpt6", "excerpt7"]
    assert "Hypnogram_excerpt5.txt, line 10: unknown stage code 7" in failed["excerpt5"]
    assert "excerpt6.txt, line 42: '12.5e' is not a number" in failed["excerpt6"]
    assert "Hypnogram_excerpt7.txt: 354 stages of 5 s" in failed["excerpt7"]
    assert "lengths disagree" in failed["excerpt7"]


def test_an_excerpt_whose_rate_is_unknown_is_refused_naming_it(synthetic_excerpts: Path) -> None:
    with pytest.raises(RecordingError, match=r"excerpt1.txt: sampling rate unknown.*100 Hz"):
        read_dreams_spindles_excerpt(synthetic_excerpts / "excerpt1.txt")


@pytest.fixture(scope="module")
def synthetic_task(synthetic_excerpts: Path, tmp_path_factory: pytest.TempPathFactory):
    task = get_task("dreams_sleep_staging")
    corpus, _ = prepare_task_corpus(task, tmp_path_factory.mktemp("corpora"),
                                    dataset_dir=synthetic_excerpts, progress=False)
    return task, corpus, load_task_windows(task, corpus)


def test_30s_epochs_take_the_majority_and_count_the_dropped(synthetic_task) -> None:
    task, _, windows = synthetic_task
    assert windows.signal.shape == (178, 1, 6000) and windows.sfreq == 200.0
    assert windows.channels == ("CZ",)  # excerpt 1's C3-A1 presented as the task's one channel
    assert windows.dropped == {"unscored": 1, "tied": 1, "unmapped": 0}
    names = list(task.class_names)
    counts = {names[c]: int((windows.label == c).sum()) for c in range(len(names))}
    assert counts == {"W": 45, "N1": 25, "N2": 88, "N3": 20, "REM": 0}
    excerpt2 = windows.recording == "dreams_spindles/excerpt2"
    assert 900.0 not in windows.onset[excerpt2] and 930.0 not in windows.onset[excerpt2]


def test_the_5s_variant_has_one_window_per_expert_stage(synthetic_excerpts: Path,
                                                        tmp_path: Path) -> None:
    task = get_task("dreams_sleep_staging_5s")
    corpus, _ = prepare_task_corpus(task, tmp_path / "corpora", dataset_dir=synthetic_excerpts,
                                    progress=False)
    windows = load_task_windows(task, corpus)
    # 3 x 360 stages, less the 6 unscored ones; a 5-s window has one stage, so nothing ties.
    assert windows.signal.shape == (1074, 1, 1000)
    assert windows.dropped == {"unscored": 6, "tied": 0, "unmapped": 0}


def test_absent_classes_are_reported_and_the_baseline_and_report_do_not_crash(
        synthetic_task, tmp_path: Path) -> None:
    pytest.importorskip("antropy")
    task, corpus, windows = synthetic_task
    folds = task_folds(task, corpus)
    result = evaluate_baseline(task, windows, folds, progress=False, n_resamples=20)

    assert result.predictions.y_prob.shape == (178, 5)
    np.testing.assert_allclose(result.predictions.y_prob.sum(axis=1), 1.0)
    assert np.all(result.predictions.y_prob[:, task.class_names.index("REM")] == 0)
    coverage = class_coverage(result)
    assert coverage[0].startswith("REM: no window in the data")
    n3_fold = next(f for f in folds if f.groups["test"] == ("excerpt1",))
    assert any(line.startswith(f"fold {n3_fold.name}: N3 in its test windows but absent from "
                               "its training excerpts") for line in coverage)
    report = write_report([result], tmp_path / "report")
    text = report.markdown.read_text()
    assert "| sleep_spectral | REM | 0 | 0 | n/a | n/a | n/a |" in text
    assert "windows dropped by the labelling: unscored 1, tied 1, unmapped 0" in text
    assert sum(p.name.startswith("hypnogram_") for p in report.figures) == 3


def test_per_class_metrics_leave_undefined_values_undefined() -> None:
    rows = per_class_metrics(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 2]),
                             ["W", "N1", "N2", "REM"])
    by_class = {row["class"]: row for row in rows}
    assert by_class["W"] == {"class": "W", "support": 2, "predicted": 1, "recall": 0.5,
                             "precision": 1.0, "f1": pytest.approx(2 / 3)}
    assert by_class["N2"]["support"] == 0 and np.isnan(by_class["N2"]["recall"])
    assert by_class["N2"]["precision"] == 0.0
    assert np.isnan(by_class["REM"]["f1"]) and by_class["REM"]["predicted"] == 0


def test_sleep_features_see_spindle_and_delta_bands() -> None:
    sleep = pytest.importorskip("neurofm.tasks.sleep")
    pytest.importorskip("antropy")
    sfreq = 200.0
    t = np.arange(6000) / sfreq
    noise = np.random.default_rng(0).normal(0, 1, (2, 6000))
    windows = np.stack([10 * np.sin(2 * np.pi * 13 * t), 10 * np.sin(2 * np.pi * 2 * t)])
    features = sleep.sleep_epoch_features((windows + noise)[:, None], sfreq)
    names = list(sleep.EPOCH_FEATURES)
    rel = [f"rel_{name}" for *_, name in sleep.SLEEP_BANDS]
    sigma_epoch = dict(zip(names, features[0]))
    delta_epoch = dict(zip(names, features[1]))
    assert max(rel, key=sigma_epoch.get) == "rel_sigma" and sigma_epoch["rel_sigma"] > 0.8
    assert max(rel, key=delta_epoch.get) == "rel_fdelta" and delta_epoch["rel_fdelta"] > 0.8
    assert sum(sigma_epoch[r] for r in rel) == pytest.approx(1.0, abs=1e-3)  # of 0.4-30 Hz
    assert delta_epoch["log_delta_sigma"] > 2 > -2 > sigma_epoch["log_delta_sigma"]


def test_night_context_means_skip_dropped_epochs_and_stay_in_their_night() -> None:
    sleep = pytest.importorskip("neurofm.tasks.sleep")
    values = np.arange(6, dtype=float)[:, None]
    present = np.array([True, True, False, True, True, True])
    trailing = sleep._weighted_mean_on_grid(values, present, np.ones(3), 2)
    np.testing.assert_allclose(trailing[:, 0], [0, 0.5, 0.5, 2, 3.5, 4])
    centred = sleep._weighted_mean_on_grid(values, present, np.array([0.5, 1, 0.5]), 1)
    np.testing.assert_allclose(centred[[1, 4], 0], [(0.5 * 0 + 1) / 1.5, (1.5 + 4 + 2.5) / 2])

    # Two nights, each 20 epochs of a feature rising with time: the context never mixes them.
    onset = np.tile(np.arange(20) * 30.0, 2)
    recording = np.repeat(["a", "b"], 20)
    feature = np.concatenate([np.arange(20.0), 100 + np.arange(20.0)])[:, None]
    windows = TaskWindows(np.zeros((40, 1, 6000), np.float32), np.zeros(40, int),
                          recording, recording, onset, 200.0, "100uV", ("CZ",))
    context = sleep.night_context(feature, windows)
    assert context.shape == (40, 3)
    np.testing.assert_allclose(context[:20, 1:], context[20:, 1:])  # scaled within each night
    np.testing.assert_array_equal(context[:, 0], feature[:, 0])


# --------------------------------------------------------------------------- real excerpts


@pytest.fixture(scope="module")
def real_task(mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    task = get_task("dreams_sleep_staging")
    corpus, report = prepare_task_corpus(task, tmp_path_factory.mktemp("corpora"),
                                         mirror=mirror_dir, progress=False)
    return task, corpus, report


def test_real_excerpts_give_the_documented_30s_epochs(real_task) -> None:
    task, corpus, report = real_task
    assert not report.failed
    assert sorted(corpus.ids) == [f"dreams_spindles/excerpt{n}" for n in range(1, 7)]
    windows = load_task_windows(task, corpus)
    names = list(task.class_names)
    # The count of excerpts 1-6: W 42, N1 35, N2 206, N3 77, no REM; nothing tied.
    assert {names[c]: int((windows.label == c).sum()) for c in range(5)} == {
        "W": 42, "N1": 35, "N2": 206, "N3": 77, "REM": 0}
    assert windows.dropped == {"unscored": 0, "tied": 0, "unmapped": 0}
    folds = task_folds(task, corpus)
    assert len(folds) == 6 and all(len(f.groups["val"]) == 1 for f in folds)


def test_yasa_reference_scores_every_real_epoch_in_its_fold(real_task) -> None:
    sleep = pytest.importorskip("neurofm.tasks.sleep")
    pytest.importorskip("yasa")
    task, corpus, _ = real_task
    windows = load_task_windows(task, corpus)
    folds = task_folds(task, corpus)
    result = sleep.evaluate_yasa(task, windows, folds, corpus, progress=False, n_resamples=20)

    assert result.system == "yasa_pretrained" and len(result.predictions.y_true) == 360
    np.testing.assert_allclose(result.predictions.y_prob.sum(axis=1), 1.0, atol=1e-6)
    for index, fold in enumerate(folds):
        tested = set(result.predictions.subject[result.predictions.fold == index].tolist())
        assert tested == set(fold.groups["test"])
    # Measured for issue 17 with YASA 0.8.1 on the raw excerpts: kappa 0.540, accuracy 0.703.
    assert 0.45 < result.pooled["cohen_kappa"] < 0.65
