import itertools

import numpy as np
import pytest

from serieslabeler.models.monotone import (
    MonotoneDecoding,
    boundaries,
    decode,
    decode_monotone,
    monotone_posteriors,
    stages_from_boundaries,
)

EPS = 1e-12


def random_proba(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 8)), int(rng.integers(1, 5))
    proba = rng.random((n, k))
    proba[rng.random((n, k)) < 0.1] = 0.0  # exercise the eps clipping
    return proba / np.maximum(proba.sum(axis=1, keepdims=True), EPS)


def all_monotone_sequences(n: int, k: int) -> np.ndarray:
    return np.array(list(itertools.combinations_with_replacement(range(k), n)), dtype=int)


def log_score(proba: np.ndarray, stages: np.ndarray) -> float:
    return float(np.log(np.maximum(proba[np.arange(len(stages)), stages], EPS)).sum())


def brute_force_marginals(proba: np.ndarray) -> np.ndarray:
    n, k = proba.shape
    sequences = all_monotone_sequences(n, k)
    scores = np.array([log_score(proba, s) for s in sequences])
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    marginals = np.zeros((n, k))
    for sequence, weight in zip(sequences, weights, strict=True):
        marginals[np.arange(n), sequence] += weight
    return marginals


@pytest.mark.parametrize("seed", range(50))
def test_decode_maximises_log_likelihood_over_all_monotone_sequences(seed):
    proba = random_proba(seed)
    stages = decode_monotone(proba)
    assert np.all(np.diff(stages) >= 0)
    best = max(log_score(proba, s) for s in all_monotone_sequences(*proba.shape))
    assert log_score(proba, stages) == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize("seed", range(50))
def test_posteriors_equal_brute_force_marginals(seed):
    proba = random_proba(seed)
    posteriors = monotone_posteriors(proba)
    np.testing.assert_allclose(posteriors, brute_force_marginals(proba), atol=1e-9, rtol=0)
    np.testing.assert_allclose(posteriors.sum(axis=1), 1.0, atol=1e-12)


def test_one_flipped_image_is_repaired():
    truth = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    proba = np.full((len(truth), 3), 0.1)
    proba[np.arange(len(truth)), truth] = 0.8
    proba[1] = [0.1, 0.1, 0.8]  # image 1 looks like stage 2, both neighbours say stage 0
    assert np.argmax(proba, axis=1).tolist() == [0, 2, 0, 1, 1, 1, 2, 2, 2, 2]
    np.testing.assert_array_equal(decode_monotone(proba), truth)


def test_ties_go_to_the_lower_stage():
    proba = np.full((3, 2), 0.5)
    np.testing.assert_array_equal(decode_monotone(proba), [0, 0, 0])


def test_decode_bundles_stages_posteriors_and_confidence():
    proba = random_proba(3)
    result = decode(proba)
    assert isinstance(result, MonotoneDecoding)
    np.testing.assert_array_equal(result.stages, decode_monotone(proba))
    np.testing.assert_allclose(result.posteriors, monotone_posteriors(proba))
    np.testing.assert_allclose(
        result.confidence, result.posteriors[np.arange(len(result.stages)), result.stages]
    )


def test_empty_series_gives_empty_arrays():
    result = decode(np.zeros((0, 3)))
    assert result.stages.shape == (0,) and result.confidence.shape == (0,)
    assert result.posteriors.shape == (0, 3)


def test_single_stage_is_trivial():
    result = decode(np.array([[0.2], [0.0], [1.0]]))
    np.testing.assert_array_equal(result.stages, [0, 0, 0])
    np.testing.assert_allclose(result.confidence, 1.0)


def test_zero_probabilities_do_not_make_every_sequence_impossible():
    proba = np.array([[0.0, 1.0], [1.0, 0.0]])
    stages = decode_monotone(proba)
    assert np.all(np.diff(stages) >= 0)
    assert np.all(np.isfinite(monotone_posteriors(proba)))


@pytest.mark.parametrize(
    "proba",
    [
        np.array([0.5, 0.5]),
        np.zeros((2, 2, 2)),
        np.array([[0.5, np.nan]]),
        np.array([[0.5, np.inf]]),
        np.array([[0.5, -0.1]]),
        np.zeros((2, 0)),
    ],
    ids=["1-D", "3-D", "nan", "inf", "negative", "no stages"],
)
def test_invalid_proba_raises(proba):
    with pytest.raises(ValueError):
        decode_monotone(proba)
    with pytest.raises(ValueError):
        monotone_posteriors(proba)


@pytest.mark.parametrize("seed", range(50))
def test_boundaries_round_trip(seed):
    stages = decode_monotone(random_proba(seed))
    assert stages_from_boundaries(len(stages), boundaries(stages)).tolist() == stages.tolist()


def test_boundaries_example():
    assert boundaries([0, 0, 1, 1, 1, 3]) == [(0, 0), (2, 1), (5, 3)]
    assert boundaries([]) == []


def test_leading_unlabeled_images_round_trip():
    stages = stages_from_boundaries(6, [(2, 1), (4, 2)])
    assert stages.tolist() == [-1, -1, 1, 1, 2, 2]
    assert boundaries(stages) == [(2, 1), (4, 2)]
    assert stages_from_boundaries(3, []).tolist() == [-1, -1, -1]


def test_boundaries_refuses_decreasing_stages():
    with pytest.raises(ValueError, match="non-decreasing"):
        boundaries([0, 1, 0])


@pytest.mark.parametrize(
    ("n", "pairs", "message"),
    [
        (5, [(0, 0), (0, 1)], "positions must be strictly increasing"),
        (5, [(3, 0), (1, 1)], "positions must be strictly increasing"),
        (5, [(0, 1), (2, 1)], "stages must be strictly increasing"),
        (5, [(0, 2), (2, 1)], "stages must be strictly increasing"),
        (5, [(0, 0), (5, 1)], r"must lie in \[0, 5\)"),
        (5, [(-1, 0)], r"must lie in \[0, 5\)"),
        (5, [(0, -1)], "stages must be >= 0"),
        (5, [(0.5, 1)], "integer pair"),
        (-1, [], "non-negative integer"),
    ],
)
def test_stages_from_boundaries_refuses_invalid_boundaries(n, pairs, message):
    with pytest.raises(ValueError, match=message):
        stages_from_boundaries(n, pairs)
