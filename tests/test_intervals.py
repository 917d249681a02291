import json

import numpy as np
import pytest

from serieslabeler.metrics.intervals import (
    ProportionEstimate,
    clopper_pearson_interval,
    estimate_proportion,
    proportion_intervals,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (8, 10, (0.4902, 0.9433)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (81, 263, (0.2553, 0.3662)),  # Newcombe (1998), example (b)
    ],
)
def test_wilson_matches_published_values(successes, n, expected):
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (8, 10, (0.4439, 0.9748)),
        (0, 10, (0.0, 0.3085)),
        (10, 10, (0.6915, 1.0)),
    ],
)
def test_clopper_pearson_matches_published_values(successes, n, expected):
    assert clopper_pearson_interval(successes, n) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("interval", [wilson_interval, clopper_pearson_interval])
def test_no_observations_gives_the_whole_unit_interval(interval):
    assert interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("interval", [wilson_interval, clopper_pearson_interval])
@pytest.mark.parametrize(("successes", "n"), [(11, 10), (-1, 10), (0, -1)])
def test_invalid_counts_raise(interval, successes, n):
    with pytest.raises(ValueError):
        interval(successes, n)


def test_invalid_confidence_raises():
    with pytest.raises(ValueError):
        wilson_interval(5, 10, confidence=1.0)


def test_wider_confidence_gives_wider_interval():
    low90, high90 = wilson_interval(8, 10, confidence=0.90)
    low99, high99 = wilson_interval(8, 10, confidence=0.99)
    assert low99 < low90 and high99 > high90


def test_exact_interval_is_wider_than_wilson():
    wilson = wilson_interval(8, 10)
    exact = clopper_pearson_interval(8, 10)
    assert exact[0] < wilson[0] and exact[1] > wilson[1]


def test_wilson_coverage_near_nominal():
    rng = np.random.default_rng(0)
    p, n = 0.85, 30
    successes = rng.binomial(n, p, size=2000)
    low, high = proportion_intervals(successes, np.full(successes.shape, n))
    coverage = np.mean((low <= p) & (p <= high))
    assert 0.92 <= coverage <= 0.98


def test_vectorised_bounds_match_scalar_ones():
    low, high = proportion_intervals([0, 3, 8], [10, 10, 10], method="clopper_pearson")
    for i, s in enumerate([0, 3, 8]):
        assert (low[i], high[i]) == pytest.approx(clopper_pearson_interval(s, 10))


def test_estimate_proportion_is_frozen_and_json_ready():
    est = estimate_proportion(np.int64(8), np.int64(10), method="clopper_pearson")
    assert isinstance(est, ProportionEstimate)
    assert est.estimate == pytest.approx(0.8)
    assert (est.low, est.high) == pytest.approx(clopper_pearson_interval(8, 10))
    with pytest.raises(AttributeError):
        est.n = 3
    as_dict = est.to_dict()
    assert set(as_dict) == {"successes", "n", "estimate", "low", "high", "method"}
    json.dumps(as_dict)


def test_estimate_of_nothing_has_no_point_estimate():
    est = estimate_proportion(0, 0)
    assert est.estimate is None and (est.low, est.high) == (0.0, 1.0)


def test_unknown_method_raises():
    with pytest.raises(ValueError):
        estimate_proportion(3, 10, method="wald")
