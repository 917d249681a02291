import json

import numpy as np
import pytest

from serieslabeler.metrics.audit import (
    allocate_sample,
    audit_precision,
    stratified_audit_sample,
    threshold_for_lower_bound,
)
from serieslabeler.metrics.intervals import wilson_interval

CLASS_SIZES = {"cat": 250, "dog": 150, "fox": 70, "owl": 30}
CORRECT_PER_CLASS = {"cat": 225, "dog": 105, "fox": 48, "owl": 22}  # 400 of 500: precision 0.8


def routed_population(seed=0):
    """500 routed labels, exactly 80% right, with precision differing by class."""
    predicted = np.concatenate([[label] * size for label, size in CLASS_SIZES.items()])
    correct = np.concatenate(
        [np.arange(size) < CORRECT_PER_CLASS[label] for label, size in CLASS_SIZES.items()]
    )
    order = np.random.default_rng(seed).permutation(predicted.shape[0])
    predicted, correct = predicted[order], correct[order]
    answered = np.where(correct, predicted, "other")
    return predicted, answered


# ---------------------------------------------------------------- sampling


def test_stratified_sample_sums_to_size_and_covers_every_class():
    predicted, _ = routed_population()
    sample = stratified_audit_sample(predicted, size=30, random_state=0)
    assert sample.shape == (30,) and np.unique(sample).shape == (30,)
    labels, counts = np.unique(predicted[sample], return_counts=True)
    assert set(labels) == set(CLASS_SIZES)
    assert dict(zip(labels, counts)) == {"cat": 15, "dog": 9, "fox": 4, "owl": 2}


def test_stratified_sample_is_deterministic_for_a_seed():
    predicted, _ = routed_population()
    first = stratified_audit_sample(predicted, size=30, random_state=5)
    np.testing.assert_array_equal(first, stratified_audit_sample(predicted, size=30, random_state=5))
    assert not np.array_equal(first, stratified_audit_sample(predicted, size=30, random_state=6))


def test_stratified_sample_returns_everything_when_size_covers_population():
    labels = np.array([0, 0, 1, 2])
    np.testing.assert_array_equal(stratified_audit_sample(labels, size=4), np.arange(4))
    np.testing.assert_array_equal(stratified_audit_sample(labels, size=10), np.arange(4))


def test_allocation_gives_rare_classes_one_draw_and_rounds_by_largest_remainder():
    np.testing.assert_array_equal(allocate_sample(np.array([1000, 5, 5, 3]), 10), [7, 1, 1, 1])
    # Quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1; the leftover draw goes to the .5 remainder.
    np.testing.assert_array_equal(allocate_sample(np.array([50, 30, 20]), 7), [4, 2, 1])
    assert allocate_sample(np.array([10, 10, 10]), 2).sum() == 2


# ---------------------------------------------------------------- precision from audits


def test_audit_precision_counts_and_per_class_cutoff():
    predicted = np.array(["a"] * 6 + ["b"] * 3)
    answered = np.array(["a"] * 5 + ["b"] + ["b", "b", "a"])
    result = audit_precision(predicted, answered)
    overall = result["overall"]
    assert (overall["successes"], overall["n"]) == (7, 9)
    assert (overall["low"], overall["high"]) == pytest.approx(wilson_interval(7, 9))
    assert result["per_class"]["a"]["estimate"] == pytest.approx(5 / 6)
    assert result["per_class"]["b"] == {"successes": 2, "n": 3, "note": "too few"}
    json.dumps(result)


def test_stratified_estimate_reweights_oversampled_classes():
    # Rare class "b" is over-sampled (half the audit, 10% of routed items).
    predicted = np.array(["a"] * 10 + ["b"] * 10)
    answered = np.array(["a"] * 10 + ["b"] * 5 + ["x"] * 5)
    result = audit_precision(predicted, answered, population_counts={"a": 900, "b": 100})
    assert result["overall"]["estimate"] == pytest.approx(0.9 * 1.0 + 0.1 * 0.5)
    assert result["overall"]["effective_n"] <= 20
    assert result["overall"]["low"] < 0.95 < result["overall"]["high"]


def test_a_fully_correct_audit_estimates_exactly_one_whatever_the_strata_weights():
    # 6/30 + 23/30 + 1/30 adds up to 1.0000000000000002 in floating point
    predicted = np.array(["a", "a", "b", "b", "c"])
    result = audit_precision(predicted, predicted.copy(), population_counts={"a": 6, "b": 23, "c": 1})
    assert result["overall"]["estimate"] == 1.0 and result["overall"]["high"] == 1.0


def test_stratified_estimate_needs_every_routed_class_audited():
    with pytest.raises(ValueError):
        audit_precision(np.array(["a", "a"]), np.array(["a", "a"]), population_counts={"a": 5, "b": 5})
    with pytest.raises(ValueError):
        audit_precision(np.array(["a", "c"]), np.array(["a", "c"]), population_counts={"a": 5})


@pytest.mark.parametrize("stratified", [False, True])
def test_audit_interval_covers_true_precision_about_95_percent(stratified):
    predicted, answered = routed_population()
    population_counts = CLASS_SIZES if stratified else None
    covered = []
    for audit in range(200):
        if stratified:
            sample = stratified_audit_sample(predicted, size=30, random_state=audit)
        else:
            sample = np.random.default_rng(audit).choice(predicted.shape[0], size=30, replace=False)
        overall = audit_precision(predicted[sample], answered[sample], population_counts=population_counts)[
            "overall"
        ]
        covered.append(overall["low"] <= 0.8 <= overall["high"])
    assert 0.90 <= np.mean(covered) <= 0.99


# ---------------------------------------------------------------- threshold choice


def constructed_scores():
    """40 right at 0.9; 10 at 0.6, half right; 10 wrong at 0.3."""
    confidence = np.repeat([0.9, 0.6, 0.3], [40, 10, 10])
    correct = np.concatenate([np.ones(40), np.arange(10) < 5, np.zeros(10)]).astype(bool)
    return confidence, correct


def test_threshold_is_lowest_meeting_the_lower_bound():
    confidence, correct = constructed_scores()
    # Lower bounds: t=0.9 -> 40/40 (0.912), t=0.6 -> 45/50 (0.786), t=0.3 -> 45/60 (0.627).
    threshold, estimate = threshold_for_lower_bound(confidence, correct, target=0.75)
    assert threshold == 0.6
    assert (estimate["successes"], estimate["n"]) == (45, 50)
    assert estimate["low"] == pytest.approx(wilson_interval(45, 50)[0])
    assert threshold_for_lower_bound(confidence, correct, target=0.9)[0] == 0.9
    assert threshold_for_lower_bound(confidence, correct, target=0.6)[0] == 0.3


def test_threshold_none_reports_best_achievable():
    confidence, correct = constructed_scores()
    threshold, estimate = threshold_for_lower_bound(confidence, correct, target=0.95)
    assert threshold is None
    assert estimate["threshold"] == 0.9 and estimate["n"] == 40


def test_threshold_scan_does_not_stop_at_a_noisy_top():
    # One of the two most confident items is wrong, yet lower thresholds qualify.
    confidence = np.concatenate([[0.99, 0.99], np.full(100, 0.8)])
    correct = np.concatenate([[True, False], np.ones(100, dtype=bool)])
    threshold, estimate = threshold_for_lower_bound(confidence, correct, target=0.9)
    assert threshold == 0.8 and (estimate["successes"], estimate["n"]) == (101, 102)


def test_threshold_on_no_items_is_none():
    threshold, estimate = threshold_for_lower_bound(np.array([]), np.array([]), target=0.9)
    assert threshold is None and estimate["n"] == 0
