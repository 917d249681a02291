"""Classification metrics against hand-computed figures, subject-grouped splits, threshold curves."""
from __future__ import annotations

import numpy as np
import pytest

from serieslabeler.errors import PipelineError
from serieslabeler.loop import (
    curve_at,
    precision_coverage_curve,
    threshold_for_precision,
    tune_thresholds,
)
from serieslabeler.metrics import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    in_stage_order,
    top_k_accuracy,
)
from serieslabeler.models import grouped_folds, grouped_split, make_split, random_split

TRUE = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "b", "a", "b", "c", "c"]


def test_confusion_matrix_and_per_class_scores_by_hand():
    report = classification_report(TRUE, PRED, ["a", "b", "c"])
    assert report.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    scores = {s.label: s for s in report.per_class}
    # a: 2 of 2 predicted a are a; 2 of 3 true a found
    assert (scores["a"].precision, scores["a"].recall, scores["a"].support) == (1.0, pytest.approx(2 / 3), 3)
    assert scores["a"].f1 == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert (scores["b"].precision, scores["b"].recall, scores["b"].f1) == (0.5, 0.5, 0.5)
    assert (scores["c"].precision, scores["c"].recall) == (0.5, 1.0)
    assert scores["c"].f1 == pytest.approx(2 / 3)
    assert report.macro.AP == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert report.macro.AR == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert report.macro.F == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report.weighted.AP == pytest.approx((3 * 1 + 2 * 0.5 + 1 * 0.5) / 6)
    assert report.weighted.AR == pytest.approx(4 / 6)  # weighted recall is accuracy
    assert report.top1 == pytest.approx(4 / 6)
    assert report.top3 is None
    assert ClassificationReport.from_dict(report.to_dict()) == report
    assert "macro" in report.format()


def test_never_predicted_class_has_precision_zero_and_unknown_labels_are_ignored():
    report = classification_report(["a", "b", "b"], ["a", "a", "a"], ["a", "b"])
    b = report.per_class[1]
    assert (b.precision, b.recall, b.f1, b.support) == (0.0, 0.0, 0.0, 2)
    assert report.macro.AP == pytest.approx((1 / 3 + 0) / 2)
    assert confusion_matrix(["a", "x"], ["a", "a"], ["a"]).tolist() == [[1]]


def test_matches_scikit_learn_on_random_labels():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y, p = rng.choice(list("wxyz"), 300), rng.choice(list("wxyz"), 300)
    report = classification_report(y, p)
    for average, ours in (("macro", report.macro), ("weighted", report.weighted)):
        precision, recall, f1, _ = precision_recall_fscore_support(y, p, average=average, zero_division=0)
        assert (ours.AP, ours.AR, ours.F) == pytest.approx((precision, recall, f1))


def test_top_k_accuracy_by_hand():
    proba = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    classes = ["a", "b", "c", "d"]
    truth = ["a", "a", "d"]
    assert top_k_accuracy(truth, proba, classes, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(truth, proba, classes, 3) == pytest.approx(1 / 3)  # row 2: a is 4th; row 3: d is 4th
    assert top_k_accuracy(truth, proba, classes, 4) == 1.0
    report = classification_report(truth, ["a", "d", "a"], classes, proba)
    assert report.top3 == pytest.approx(1 / 3)


# --- splits ------------------------------------------------------------------------------------
def test_grouped_split_never_shares_a_subject():
    groups = np.repeat(np.arange(11), 20)
    for seed in range(5):
        split = grouped_split(groups, 0.3, seed)
        assert not set(groups[split.train]) & set(groups[split.test])
        assert len(split.train) + len(split.test) == len(groups)
        assert len(set(groups[split.test])) == 3 and not split.optimistic
    again = grouped_split(groups, 0.3, 4)
    assert np.array_equal(again.test, grouped_split(groups, 0.3, 4).test)


def test_grouped_folds_cover_every_image_once_without_sharing_subjects():
    groups = np.array(list("aabbbccddeeeffg"))
    folds = grouped_folds(groups, n_splits=4, seed=1)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(len(groups)))
    for fold in folds:
        assert not set(groups[fold.train]) & set(groups[fold.test])
    assert len(grouped_folds(groups[:5], n_splits=5)) == 2  # 2 subjects: leave-one-subject-out


def test_random_split_only_on_request_and_marked_optimistic():
    groups = np.repeat(np.arange(4), 5)
    assert not make_split(groups, 0.25, 0).optimistic
    split = make_split(groups, 0.25, 0, random=True)
    assert split.optimistic and "optimistic" in split.kind and split.describe(groups)["optimistic"]
    assert len(random_split(20, 0.25, 0).test) == 5
    with pytest.raises(PipelineError, match="at least 2 subjects"):
        grouped_split(np.zeros(10), 0.3)


# --- threshold curves --------------------------------------------------------------------------
def test_precision_coverage_curve_by_hand():
    correct = [True, True, False, True, False]
    confidence = [0.9, 0.8, 0.7, 0.6, 0.5]
    curve = precision_coverage_curve(correct, confidence)
    assert curve.thresholds.tolist() == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert curve.precision.tolist() == pytest.approx([3 / 5, 3 / 4, 2 / 3, 1.0, 1.0])
    assert curve.coverage.tolist() == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert curve_at(curve, 0.65) == (pytest.approx(2 / 3), pytest.approx(0.6))
    assert curve_at(curve, 0.95) == (None, 0.0)
    choice = threshold_for_precision(curve, 0.95)
    assert (choice.threshold, choice.precision, choice.coverage) == (0.8, 1.0, pytest.approx(0.4))
    assert threshold_for_precision(curve, 0.7).threshold == 0.6
    assert threshold_for_precision(precision_coverage_curve([False], [0.99]), 0.5).threshold is None


def test_curves_are_monotone_in_coverage_and_per_class_thresholds_reach_the_target():
    rng = np.random.default_rng(3)
    truth = rng.choice(list("abc"), 400)
    confidence = rng.uniform(0.34, 1.0, 400)
    right = rng.uniform(size=400) < confidence  # calibrated: higher confidence, more often right
    predicted = np.where(right, truth, np.roll(truth, 1))
    tuning = tune_thresholds(truth, predicted, confidence, target=0.9)
    assert np.all(np.diff(tuning.overall.coverage) <= 0)
    assert tuning.overall.precision[0] == pytest.approx(np.mean(truth == predicted))
    assert set(tuning.per_class) == set(predicted)
    for label, choice in tuning.per_class_choice.items():
        curve = tuning.per_class[label]
        assert choice.threshold is not None and choice.precision >= 0.9
        lower = curve.thresholds < choice.threshold
        assert np.all(curve.precision[lower] < 0.9), "a lower threshold with the target precision was missed"
    assert set(tuning.per_class_thresholds()) == set("abc")
    assert "threshold" in tuning.format()


def test_a_report_in_stage_order_moves_classes_rows_and_confusion_cells_together():
    truth = ["U", "U", "R", "R", "V", "O", "stake"]
    predicted = ["U", "R", "R", "V", "V", "O", "stake"]
    report = classification_report(truth, predicted).to_dict()
    assert report["classes"] == ["O", "R", "U", "V", "stake"]
    ordered = in_stage_order(report, ["U", "R", "V", "O"])
    assert ordered["classes"] == ["U", "R", "V", "O", "stake"]
    assert [row["label"] for row in ordered["per_class"]] == ordered["classes"]
    # rows truth, columns predicted: one U read as R, one R read as V, just above the diagonal
    assert ordered["confusion"] == [[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert in_stage_order(report, None) == report and ordered["macro"] == report["macro"]
