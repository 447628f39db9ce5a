"""Spindle detection scored event by event: the overlap matching on hand-made events, YASA on a
synthetic signal with known spindles, and the real DREAMS excerpts 1-6 of the mirror."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurofm.data.recording import Annotation, Recording
from neurofm.errors import ConfigError, RecordingError

pytest.importorskip("yasa")

from neurofm.tasks.spindles import (
    ANY_OVERLAP,
    EXPERT1_SCORED_SECONDS,
    IOU_02,
    EventCounts,
    OverlapCriterion,
    as_events,
    busiest_stretch,
    evaluate_spindles,
    expert_consensus,
    expert_union,
    load_dreams_spindle_excerpts,
    match_events,
    plot_spindle_stretch,
    spindle_events,
    starting_within,
    yasa_spindles,
)

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- hand-made events


def test_a_detection_overlapping_two_references_is_one_true_positive() -> None:
    counts = match_events([(0.0, 3.0)], [(0.5, 1.0), (2.0, 2.5)])
    assert counts == EventCounts(tp=1, fp=0, fn=1)
    assert (counts.precision, counts.recall) == (1.0, 0.5)
    assert counts.f1 == pytest.approx(2 / 3)


def test_two_detections_on_one_reference_pair_once() -> None:
    assert match_events([(0.0, 1.0), (1.2, 2.0)], [(0.5, 1.5)]) == EventCounts(1, 1, 0)


def test_adjacent_events_that_do_not_overlap_never_match() -> None:
    counts = match_events([(0.0, 1.0), (5.0, 6.0)], [(1.0, 2.0), (4.0, 5.0)])
    assert counts == EventCounts(tp=0, fp=2, fn=2)
    assert counts.f1 == 0.0


def test_the_iou_threshold_decides_a_small_overlap() -> None:
    detection, reference = [(0.0, 1.0)], [(0.9, 2.0)]  # overlap 0.1 s over a 2-s union: IoU 0.05
    assert match_events(detection, reference, ANY_OVERLAP) == EventCounts(1, 0, 0)
    assert match_events(detection, reference, IOU_02) == EventCounts(0, 1, 1)
    assert match_events([(0.0, 1.0)], [(0.5, 1.5)], OverlapCriterion(1 / 3)).tp == 1  # IoU 1/3
    assert match_events([(0.0, 1.0)], [(0.5, 1.5)], OverlapCriterion(0.34)).tp == 0


def test_empty_sets_give_the_documented_metrics_not_a_crash() -> None:
    no_detections = match_events([], [(1.0, 2.0), (3.0, 4.0)])
    assert no_detections == EventCounts(0, 0, 2)
    assert (no_detections.precision, no_detections.recall, no_detections.f1) == (None, 0.0, 0.0)
    no_references = match_events(np.zeros((0, 2)), [])
    assert (no_references.precision, no_references.recall, no_references.f1) == (None, None, None)
    only_detections = match_events([(1.0, 2.0)], [])
    assert (only_detections.precision, only_detections.recall, only_detections.f1) == (0.0, None, 0.0)


def test_pooled_counts_are_sums_and_f1_is_the_harmonic_mean() -> None:
    pooled = EventCounts(3, 1, 2) + EventCounts(1, 0, 0)
    assert pooled == EventCounts(4, 1, 2)
    precision, recall = 4 / 5, 4 / 6
    assert pooled.f1 == pytest.approx(2 * precision * recall / (precision + recall))
    assert pooled.as_dict()["n_references"] == 6 and pooled.as_dict()["n_detections"] == 5


def test_events_are_sorted_and_bad_events_are_refused_naming_them() -> None:
    assert as_events([(5.0, 6.0), (1.0, 2.0)]).tolist() == [[1.0, 2.0], [5.0, 6.0]]
    with pytest.raises(ValueError, match=r"expert: event 1 \(3, 3\) s must be finite and end after"):
        as_events([(1.0, 2.0), (3.0, 3.0)], "expert")
    with pytest.raises(ValueError, match="expected \\(start, end\\) pairs"):
        as_events([1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="from 0 \\(any overlap\\) to 1"):
        OverlapCriterion(1.5)


def test_scored_span_keeps_events_that_start_inside_it() -> None:
    events = as_events([(10.0, 11.0), (999.5, 1000.5), (1000.0, 1001.0)])
    assert starting_within(events, 0.0, 1000.0).tolist() == [[10.0, 11.0], [999.5, 1000.5]]


def test_union_counts_each_spindle_once_and_both_keeps_the_first_experts_times() -> None:
    first = [(1.0, 1.5), (10.0, 11.0)]
    second = [(1.2, 2.2), (20.0, 21.0)]
    assert expert_union(first, second).tolist() == [[1.0, 1.5], [10.0, 11.0], [20.0, 21.0]]
    assert expert_consensus(first, second).tolist() == [[1.0, 1.5]]
    # Under IoU >= 0.2 the first pair (overlap 0.3 s over 1.2 s: 0.25) still matches; at 0.3 not.
    assert expert_consensus(first, second, OverlapCriterion(0.3)).size == 0
    assert len(expert_union(first, second, OverlapCriterion(0.3))) == 4


# --------------------------------------------------------------------------- synthetic recordings


def _recording(sfreq: float, seconds: float = 120.0, *, scorings: tuple[str, ...] = (),
               labels: np.ndarray | None = None) -> tuple[Recording, list[tuple[float, float]]]:
    """Brownian-like background plus nine 1-s, 13-Hz bursts of 30 µV at known times."""
    rng = np.random.default_rng(0)
    n = int(seconds * sfreq)
    time = np.arange(n) / sfreq
    walk = np.cumsum(rng.normal(0, 1, n))
    signal = 2 * (walk - np.convolve(walk, np.ones(int(sfreq)) / sfreq, "same"))
    truth = [(10.0 + 12 * i, 11.0 + 12 * i) for i in range(9)]
    for start, end in truth:
        inside = (time >= start) & (time < end)
        signal[inside] += 30 * np.hanning(inside.sum()) * np.sin(2 * np.pi * 13 * time[inside])
    names = {"expert1": "spindle_expert1", "expert2": "spindle_expert2",
             "dreams_detector": "spindle_automatic"}
    annotations = [Annotation(s, e - s, names[k]) for k in scorings for s, e in truth]
    recording = Recording(
        signal=signal[None].astype(np.float32), ch_names=["C3-A1"], ch_types=["eeg"], sfreq=sfreq,
        unit="uV", annotations=annotations, source=Path(f"synthetic{sfreq:g}.txt"),
        labels=labels, meta={"spindle_scorings": {names[k]: "made up" for k in scorings}})
    return recording, truth


@pytest.mark.parametrize("sfreq", [50.0, 200.0])
def test_yasa_finds_synthetic_spindles_at_their_rate_and_upsamples_a_slow_one(sfreq: float) -> None:
    recording, truth = _recording(sfreq)
    found, notes = yasa_spindles(recording)
    assert match_events(found, truth, IOU_02) == EventCounts(9, 0, 0)
    assert bool(notes) == (sfreq == 50.0)
    if notes:
        assert "upsampled x2 to 100 Hz" in notes[0]


def test_yasa_restricted_to_nrem_skips_the_wake_stretch_and_needs_a_hypnogram() -> None:
    recording, truth = _recording(200.0)
    with pytest.raises(RecordingError, match=r"synthetic200\.txt: no hypnogram"):
        yasa_spindles(recording, nrem_only=True)
    staged = recording.replace(labels=np.where(np.arange(recording.n_samples) < 60 * 200, 0, 2))
    found, _ = yasa_spindles(staged, nrem_only=True)
    assert match_events(found, truth) == EventCounts(4, 0, 5)  # the five bursts in W are skipped
    with pytest.raises(RecordingError, match="physical unit"):
        yasa_spindles(recording.replace(unit="zscore"))


def test_an_excerpt_without_expert_2_is_left_out_of_those_comparisons_and_said() -> None:
    with_both, _ = _recording(200.0, scorings=("expert1", "expert2", "dreams_detector"))
    without, _ = _recording(200.0, scorings=("expert1", "dreams_detector"))
    result = evaluate_spindles({"excerpt1": with_both, "excerpt7": without},
                               systems=("dreams_detector", "expert2"))
    assert result.comparison("dreams_detector", "expert1").pooled == EventCounts(18, 0, 0)
    assert list(result.comparison("dreams_detector", "expert2").per_excerpt) == ["excerpt1"]
    assert list(result.comparison("expert2", "expert1").per_excerpt) == ["excerpt1"]
    assert "excerpt7: no expert2 scoring; left out of its comparisons" in result.notes
    assert "| expert2 | expert1 | 1.000 | — | 1.000 |" in result.markdown()
    with pytest.raises(RecordingError, match=r"synthetic200\.txt: no expert2 spindle scoring"):
        spindle_events(without, "expert2")
    with pytest.raises(ConfigError, match="unknown spindle system"):
        evaluate_spindles({"excerpt1": with_both}, systems=("expert3",))


def test_busiest_stretch_picks_the_earliest_window_with_the_most_events() -> None:
    events = [as_events([(5.0, 6.0), (125.0, 126.0), (130.0, 131.0)]),
              as_events([(128.0, 129.0)])]
    assert busiest_stretch(events, seconds=60.0, end=300.0) == 80.0  # 80-140 s holds all three


# --------------------------------------------------------------------------- the real excerpts


@pytest.fixture(scope="module")
def excerpts(mirror_dir: Path) -> dict[str, Recording]:
    folder = mirror_dir / "dreams_spindles"
    if not (folder / "excerpt1.txt").is_file():
        pytest.skip(f"DREAMS spindles excerpts not in {folder}")
    return load_dreams_spindle_excerpts(folder)


def _scoring_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="latin-1").splitlines()[1:] if line.strip())


def test_real_scorings_hold_every_line_of_their_files(excerpts: dict[str, Recording],
                                                      mirror_dir: Path) -> None:
    assert list(excerpts) == [f"excerpt{n}" for n in range(1, 7)]
    folder = mirror_dir / "dreams_spindles"
    for name, recording in excerpts.items():
        for scoring, prefix in (("expert1", "Visual_scoring1"), ("expert2", "Visual_scoring2"),
                                ("dreams_detector", "Automatic_detection")):
            events = spindle_events(recording, scoring)
            assert len(events) == _scoring_lines(folder / f"{prefix}_{name}.txt"), (name, scoring)
        # Expert 1 scored the first 1000 s only.
        assert spindle_events(recording, "expert1")[:, 0].max() < EXPERT1_SCORED_SECONDS
    assert len(spindle_events(excerpts["excerpt1"], "expert1")) == 52


def test_an_expert_against_itself_scores_one(excerpts: dict[str, Recording]) -> None:
    for recording in excerpts.values():
        for scoring in ("expert1", "expert2"):
            events = spindle_events(recording, scoring)
            counts = match_events(events, events, IOU_02)
            assert counts == EventCounts(len(events), 0, 0) and counts.f1 == 1.0


def test_real_reference_rows(excerpts: dict[str, Recording]) -> None:
    result = evaluate_spindles(excerpts, systems=("dreams_detector", "expert2"))
    detector = result.comparison("dreams_detector", "expert1").pooled
    assert detector.n_references == 289  # 52 + 60 + 5 + 44 + 56 + 72, all in the first 1000 s
    assert 0.0 < detector.f1 < 1.0
    agreement = result.comparison("expert2", "expert1").pooled
    assert 0.0 < agreement.f1 < 1.0
    union = result.comparison("dreams_detector", "union").pooled.n_references
    both = result.comparison("dreams_detector", "both").pooled.n_references
    assert both == agreement.tp and union == 289 + agreement.fp
    json.dumps(result.as_dict())


def test_yasa_runs_on_the_50_hz_real_excerpt(excerpts: dict[str, Recording]) -> None:
    found, notes = yasa_spindles(excerpts["excerpt3"])
    assert len(found) > 0 and "upsampled x2 to 100 Hz" in notes[0]
    assert found[:, 1].max() <= excerpts["excerpt3"].duration


def test_the_figure_is_written(excerpts: dict[str, Recording], tmp_path: Path) -> None:
    recording = excerpts["excerpt3"]
    rows = {"expert 1": spindle_events(recording, "expert1"),
            "expert 2": spindle_events(recording, "expert2")}
    path = plot_spindle_stretch(recording, rows, tmp_path / "stretch.png", start=120.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="outside"):
        plot_spindle_stretch(recording, rows, tmp_path / "late.png", start=5000.0)


def test_the_benchmark_script_writes_its_report(mirror_dir: Path, tmp_path: Path) -> None:
    folder = mirror_dir / "dreams_spindles"
    if not (folder / "excerpt1.txt").is_file():
        pytest.skip(f"DREAMS spindles excerpts not in {folder}")
    out = tmp_path / "report"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "spindles.py"), "--out", str(out),
                    "--dataset-dir", str(folder), "--iou", "0", "--figure-excerpt", "excerpt3"],
                   check=True, capture_output=True, text=True)
    report = (out / "report.md").read_text()
    assert "## any overlap" in report and "| expert2 | expert1 |" in report
    assert (out / "spindles_excerpt3.png").is_file()
    saved = json.loads((out / "spindles.json").read_text())
    assert saved[0]["criterion"]["iou_threshold"] == 0.0
