import json

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.exceptions import NotFittedError

from serieslabeler.metrics.calibration import (
    CalibrationReport,
    Calibrator,
    IsotonicConfidence,
    TemperatureScaler,
    calibration_report,
    declined_note,
    expected_calibration_error,
    reliability_bins,
)


def well_specified_sample(n=3000, n_classes=4, seed=0):
    """Logits with known true class probabilities softmax(z), and labels drawn from them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, size=(n, n_classes))
    true_proba = softmax(logits, axis=1)
    labels = (rng.random(n)[:, None] > np.cumsum(true_proba, axis=1)).sum(axis=1)
    return logits, labels


def miscalibrated_binary(n=2000, seed=1):
    """Stated top-1 confidence c, but the prediction is right with probability c**3."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.random(n) < confidence**3
    proba = np.column_stack([confidence, 1.0 - confidence])
    return proba, np.where(correct, 0, 1)


# ---------------------------------------------------------------- ECE and bins


def test_ece_by_hand_on_four_points():
    confidence = np.array([0.1, 0.35, 0.8, 0.9])
    correct = np.array([0, 1, 1, 0])
    # Two bins: [0, .5) holds 0.1, 0.35 (acc .5, conf .225); [.5, 1] holds 0.8, 0.9 (acc .5, conf .85).
    assert expected_calibration_error(confidence, correct, n_bins=2) == pytest.approx(
        0.5 * 0.275 + 0.5 * 0.35
    )
    # Ten bins: every point alone, so ECE is the mean of |correct - confidence|.
    assert expected_calibration_error(confidence, correct, n_bins=10) == pytest.approx(
        (0.1 + 0.65 + 0.2 + 0.9) / 4
    )


def test_reliability_bins_keep_empty_bins_and_put_one_in_last_bin():
    bins = reliability_bins(np.array([0.05, 1.0, 0.95]), np.array([1, 1, 0]), n_bins=10)
    assert len(bins) == 10
    assert [b["count"] for b in bins] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[1]["mean_confidence"] is None and bins[1]["accuracy"] is None
    assert bins[9]["low"] == pytest.approx(0.9) and bins[9]["high"] == 1.0
    assert bins[9]["accuracy"] == pytest.approx(0.5)
    json.dumps(bins)


def test_ece_rejects_bad_input():
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([1.2]), np.array([1]))
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([0.5, 0.6]), np.array([1]))
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([0.5]), np.array([2]))


# ---------------------------------------------------------------- temperature scaling


def test_temperature_recovers_known_overconfidence():
    logits, labels = well_specified_sample()
    scaler = TemperatureScaler().fit(3.0 * logits, labels)
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.15)


def test_temperature_from_probabilities_matches_logits():
    logits, labels = well_specified_sample()
    from_logits = TemperatureScaler().fit(3.0 * logits, labels)
    from_proba = TemperatureScaler().fit(softmax(3.0 * logits, axis=1), labels)
    assert from_proba.temperature_ == pytest.approx(from_logits.temperature_, rel=1e-3)
    np.testing.assert_allclose(
        from_proba.transform(softmax(3.0 * logits, axis=1)), from_logits.transform(3.0 * logits), atol=1e-6
    )


def test_calibrated_model_keeps_temperature_near_one():
    logits, labels = well_specified_sample(seed=2)
    scaler = TemperatureScaler().fit(softmax(logits, axis=1), labels)
    assert scaler.temperature_ == pytest.approx(1.0, rel=0.1)


def test_temperature_report_halves_ece_out_of_fold():
    logits, labels = well_specified_sample()
    calibrator, report = calibration_report(softmax(3.0 * logits, axis=1), labels, method="temperature")
    assert report.method == "temperature" and not report.in_sample
    assert report.ece_after <= 0.5 * report.ece_before
    assert calibrator.temperature_scaler_.temperature_ == pytest.approx(3.0, rel=0.15)


def test_rows_whose_true_class_a_fold_never_saw_do_not_flatten_the_temperature():
    """Grouped out-of-fold predictions give a class 0 where the fold's model never saw it; no
    temperature changes those rows, so the fit is that of the other rows (before: T ran to its
    upper bound, 20, and every confidence went towards 1/classes)."""
    logits, labels = well_specified_sample()
    proba = softmax(3.0 * logits, axis=1)
    unseen = np.random.default_rng(3).random(len(labels)) < 0.3
    proba[unseen, labels[unseen]] = 0.0
    proba[unseen] /= proba[unseen].sum(axis=1, keepdims=True)
    fitted = TemperatureScaler().fit(proba, labels).temperature_
    assert fitted == pytest.approx(TemperatureScaler().fit(proba[~unseen], labels[~unseen]).temperature_, rel=1e-6)
    assert fitted == pytest.approx(3.0, rel=0.15)
    _, report = calibration_report(proba, labels, method="temperature")
    assert report.ece_after < report.ece_before


def test_a_temperature_fitted_on_no_possible_row_is_one():
    proba = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert TemperatureScaler().fit(proba, np.array([1, 0])).temperature_ == 1.0


def test_unfitted_scaler_refuses_to_transform():
    with pytest.raises(NotFittedError):
        TemperatureScaler().transform(np.array([[0.2, 0.8]]))


def test_scaler_rejects_out_of_range_labels():
    with pytest.raises(ValueError):
        TemperatureScaler().fit(np.array([[1.0, 2.0], [0.5, 0.1]]), np.array([0, 2]))


# ---------------------------------------------------------------- isotonic


def test_isotonic_lowers_ece_on_miscalibrated_set():
    proba, labels = miscalibrated_binary()
    _, report = calibration_report(proba, labels, method="isotonic")
    assert report.method == "isotonic"
    assert report.ece_after < 0.5 * report.ece_before


def test_isotonic_confidence_is_monotone_and_bounded():
    proba, labels = miscalibrated_binary()
    confidence = proba.max(axis=1)
    iso = IsotonicConfidence().fit(confidence, labels == 0)
    grid = np.linspace(0.0, 1.0, 101)
    calibrated = iso.transform(grid)
    assert np.all(np.diff(calibrated) >= 0)
    assert calibrated.min() >= 0.0 and calibrated.max() <= 1.0


def test_isotonic_transform_keeps_rows_summing_to_one():
    logits, labels = well_specified_sample(n=1000)
    proba = softmax(3.0 * logits, axis=1)
    calibrator = Calibrator(method="isotonic").fit(proba, labels)
    out = calibrator.transform(proba)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    top = proba.argmax(axis=1)
    np.testing.assert_allclose(out[np.arange(len(top)), top], calibrator.calibrated_confidence(proba))


# ---------------------------------------------------------------- Calibrator


def test_auto_picks_method_by_sample_size():
    logits, labels = well_specified_sample(n=300)
    proba = softmax(logits, axis=1)
    assert Calibrator(min_isotonic=200).fit(proba, labels).method_ == "isotonic"
    assert Calibrator(min_isotonic=200).fit(proba[:150], labels[:150]).method_ == "temperature"


def test_auto_keeps_temperature_scaling_until_a_thousand_labels():
    logits, labels = well_specified_sample(n=1000)
    proba = softmax(logits, axis=1)
    assert Calibrator().fit(proba[:999], labels[:999]).method_ == "temperature"
    assert Calibrator().fit(proba, labels).method_ == "isotonic"


def test_none_method_is_identity():
    logits, labels = well_specified_sample(n=100)
    proba = softmax(logits, axis=1)
    calibrator = Calibrator(method="none").fit(proba, labels)
    np.testing.assert_array_equal(calibrator.transform(proba), proba)
    np.testing.assert_array_equal(calibrator.calibrated_confidence(proba), proba.max(axis=1))


def test_calibrator_rejects_logits_and_unknown_method():
    logits, labels = well_specified_sample(n=50)
    with pytest.raises(ValueError):
        Calibrator().fit(logits, labels)
    with pytest.raises(ValueError):
        Calibrator(method="platt").fit(softmax(logits, axis=1), labels)


@pytest.mark.parametrize("method", ["temperature", "isotonic", "none"])
def test_to_dict_from_dict_round_trip_gives_identical_outputs(method):
    logits, labels = well_specified_sample(n=500)
    proba = softmax(3.0 * logits, axis=1)
    fitted = Calibrator(method=method).fit(proba, labels)
    restored = Calibrator.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert restored.method_ == method
    np.testing.assert_array_equal(restored.transform(proba), fitted.transform(proba))
    np.testing.assert_array_equal(restored.calibrated_confidence(proba), fitted.calibrated_confidence(proba))


def test_calibrator_is_a_cloneable_estimator():
    from sklearn.base import clone

    calibrator = clone(Calibrator(method="isotonic", min_isotonic=50))
    assert calibrator.get_params() == {"method": "isotonic", "min_isotonic": 50}


# ---------------------------------------------------------------- report


def test_report_is_json_ready_and_deterministic():
    logits, labels = well_specified_sample(n=400)
    proba = softmax(2.0 * logits, axis=1)
    _, first = calibration_report(proba, labels, random_state=7)
    _, second = calibration_report(proba, labels, random_state=7)
    assert isinstance(first, CalibrationReport)
    assert first.to_dict() == second.to_dict()
    as_dict = json.loads(json.dumps(first.to_dict()))
    assert as_dict["n"] == 400 and len(as_dict["bins_after"]) == 10


def test_report_on_tiny_set_is_flagged_in_sample():
    logits, labels = well_specified_sample(n=15)
    _, report = calibration_report(softmax(logits, axis=1), labels)
    assert report.in_sample and report.method == "temperature"


def test_out_of_fold_ece_is_not_the_optimistic_in_sample_one():
    # Isotonic on few points nearly memorises them: in-sample ECE would look near-perfect.
    proba, labels = miscalibrated_binary(n=60, seed=3)
    calibrator, report = calibration_report(proba, labels, method="isotonic")
    in_sample = expected_calibration_error(calibrator.calibrated_confidence(proba), labels == 0)
    assert report.ece_after > in_sample


def calibrated_but_for_one_misread_subject(n=300, seed=0):
    """Stated confidences that are right, but for 12 images (one subject the model misreads) it
    was sure of and wrong about: the likelihood they carry pulls temperature scaling flat."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.6, 0.95, n)
    labels = np.where(rng.random(n) < confidence, 0, 1)
    proba = np.column_stack([confidence, 1.0 - confidence])
    proba[:12], labels[:12] = [1 - 1e-9, 1e-9], 1
    return proba, labels


def test_auto_declines_a_calibration_that_would_raise_the_out_of_fold_ece():
    proba, labels = calibrated_but_for_one_misread_subject()
    _, forced = calibration_report(proba, labels, method="temperature")
    assert forced.ece_after > 2 * forced.ece_before and forced.declined is None

    calibrator, report = calibration_report(proba, labels)
    assert report.method == "none" and calibrator.method_ == "none"
    assert report.declined == {"method": "temperature", "ece_after": forced.ece_after}
    assert report.ece_after == report.ece_before and report.bins_after == report.bins_before
    np.testing.assert_array_equal(calibrator.transform(proba), proba)
    assert declined_note(report.to_dict()) == (
        f"temperature scaling would have raised the out-of-fold ECE from {report.ece_before:.3f} to {forced.ece_after:.3f}, "
        "so the confidences are left as they are")
    restored = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    np.testing.assert_array_equal(restored.transform(proba), proba)


def test_auto_keeps_a_calibration_that_lowers_the_out_of_fold_ece():
    proba, labels = miscalibrated_binary()
    _, report = calibration_report(proba, labels)
    assert report.method == "isotonic" and report.declined is None and declined_note(report.to_dict()) is None
    assert report.ece_after < report.ece_before
