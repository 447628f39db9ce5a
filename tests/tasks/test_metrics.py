"""Metric definitions on hand-computed examples, and their confidence intervals."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.tasks.metrics import (
    Interval,
    bootstrap_over_subjects,
    classification_metrics,
    cohen_kappa,
    primary_metric_for,
    t_interval,
)

# Binary: predictions [0, 1, 0, 1, 1] against truth [0, 0, 1, 1, 1].
BINARY_TRUE = np.array([0, 0, 1, 1, 1])
BINARY_POSITIVE = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
BINARY_PROB = np.stack([1 - BINARY_POSITIVE, BINARY_POSITIVE], axis=1)

# Three classes: predictions [0, 1, 1, 2] against truth [0, 1, 2, 2].
MULTI_TRUE = np.array([0, 1, 2, 2])
MULTI_PROB = np.array(
    [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]]
)


def test_binary_metrics_match_hand_computed_values():
    values = classification_metrics(BINARY_TRUE, BINARY_PROB)
    assert values["accuracy"] == pytest.approx(3 / 5)
    assert values["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # p_o = 0.6, p_e = 0.4 * 0.4 + 0.6 * 0.6 = 0.52.
    assert values["cohen_kappa"] == pytest.approx((0.6 - 0.52) / (1 - 0.52))
    assert values["f1_macro"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert values["f1_weighted"] == pytest.approx((2 * 1 / 2 + 3 * 2 / 3) / 5)
    # 5 of the 6 (negative, positive) pairs are ranked correctly.
    assert values["auroc"] == pytest.approx(5 / 6)
    # Recall steps of 1/3 at precisions 1, 1 and 3/4.
    assert values["auc_pr"] == pytest.approx(1 / 3 + 1 / 3 + 1 / 3 * 3 / 4)


def test_multiclass_metrics_match_hand_computed_values():
    values = classification_metrics(MULTI_TRUE, MULTI_PROB)
    assert values["accuracy"] == pytest.approx(3 / 4)
    assert values["balanced_accuracy"] == pytest.approx((1 + 1 + 1 / 2) / 3)
    # p_o = 12/16, p_e = 1/4 * 1/4 + 1/4 * 2/4 + 2/4 * 1/4 = 5/16.
    assert values["cohen_kappa"] == pytest.approx(7 / 11)
    assert values["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert values["f1_weighted"] == pytest.approx((1 + 2 / 3 + 2 * 2 / 3) / 4)
    # One-vs-rest AUROC: class 0 = 1, class 1 = 2/3, class 2 = 3.5/4 (one tie).
    assert values["auroc"] == pytest.approx((1 + 2 / 3 + 3.5 / 4) / 3)


def test_ranking_metrics_are_nan_when_only_one_class_is_present():
    values = classification_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert np.isnan(values["auroc"]) and np.isnan(values["auc_pr"])
    assert values["accuracy"] == pytest.approx(0.5)


def test_kappa_is_zero_when_truth_and_prediction_are_one_constant_class():
    assert cohen_kappa(np.array([0, 0, 0]), np.array([[0.9, 0.1]] * 3)) == 0.0


def test_bad_shapes_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        classification_metrics(BINARY_TRUE, BINARY_POSITIVE)
    with pytest.raises(ValueError, match="class ids"):
        classification_metrics(np.array([0, 3]), np.array([[0.5, 0.5], [0.5, 0.5]]))


def test_primary_metric_is_auroc_for_binary_and_kappa_for_multiclass():
    assert primary_metric_for(2) == "auroc"
    assert primary_metric_for(5) == "cohen_kappa"


def test_t_interval_over_folds_matches_student_t_formula():
    interval = t_interval([0.7, 0.8, 0.9])
    # t_{0.975, 2} = 4.302653; s = 0.1.
    half_width = 4.302653 * 0.1 / np.sqrt(3)
    assert interval.estimate == pytest.approx(0.8)
    assert interval.low == pytest.approx(0.8 - half_width, abs=1e-6)
    assert interval.high == pytest.approx(0.8 + half_width, abs=1e-6)
    assert interval.n == 3


def test_t_interval_skips_undefined_folds_and_needs_two_values():
    assert t_interval([0.5, float("nan"), 0.7]).n == 2
    single = t_interval([0.5])
    assert single.estimate == 0.5 and np.isnan(single.low) and np.isnan(single.high)


def _subject_predictions(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    subjects = np.repeat([f"s{i}" for i in range(8)], 30)
    y_true = rng.integers(0, 2, subjects.size)
    positive = np.clip(0.5 * y_true + rng.normal(0.25, 0.3, subjects.size), 0, 1)
    return y_true, np.stack([1 - positive, positive], axis=1), subjects


def test_bootstrap_over_subjects_is_seeded_and_contains_the_point_estimate():
    y_true, y_prob, subjects = _subject_predictions(0)
    first = bootstrap_over_subjects(y_true, y_prob, subjects, n_resamples=60, seed=3)
    again = bootstrap_over_subjects(y_true, y_prob, subjects, n_resamples=60, seed=3)
    other = bootstrap_over_subjects(y_true, y_prob, subjects, n_resamples=60, seed=4)
    assert first == again
    assert first["auroc"] != other["auroc"]
    point = classification_metrics(y_true, y_prob)
    for name, interval in first.items():
        assert interval.estimate == pytest.approx(point[name])
        assert interval.low <= interval.estimate <= interval.high, name
        assert interval.n == 8 and interval.method == "bootstrap over subjects"


def test_bootstrap_resamples_whole_subjects_not_windows():
    # Every subject has accuracy exactly 1/2 on an equal number of windows, so any resample of
    # subjects has accuracy 1/2; a window-level bootstrap would spread around it.
    subjects = np.repeat(["a", "b", "c", "d"], 4)
    y_true = np.tile([0, 1, 0, 1], 4)
    y_prob = np.tile([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.2, 0.8]], (4, 1))
    interval = bootstrap_over_subjects(y_true, y_prob, subjects, ["accuracy"], n_resamples=100)
    assert interval["accuracy"].low == interval["accuracy"].high == pytest.approx(0.5)


def test_interval_round_trips_through_a_dict():
    interval = Interval(0.8, 0.7, 0.9, 0.95, "t-interval over folds", 5)
    assert Interval.from_dict(interval.to_dict()) == interval
