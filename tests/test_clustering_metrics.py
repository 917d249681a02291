"""Clustering metrics against cases worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from serieslabeler.metrics import (
    ClusterPurity,
    adjusted_rand,
    cluster_purity,
    contingency,
    hungarian_accuracy,
    nmi,
    purity,
    score_against_truth,
    silhouette,
)

TRUTH = ["a", "a", "a", "b", "b", "c"]
CLUSTERS = [0, 0, 1, 1, 1, 2]  # cluster 0: a a | cluster 1: a b b | cluster 2: c


def test_contingency_and_purity():
    table, classes, clusters = contingency(TRUTH, CLUSTERS)
    assert table.tolist() == [[2, 0, 0], [1, 2, 0], [0, 0, 1]]
    assert classes.tolist() == ["a", "b", "c"] and clusters.tolist() == [0, 1, 2]
    assert purity(TRUTH, CLUSTERS) == pytest.approx(5 / 6)
    assert cluster_purity(TRUTH, CLUSTERS) == [
        ClusterPurity(0, 2, "a", 1.0),
        ClusterPurity(1, 3, "b", 2 / 3),
        ClusterPurity(2, 1, "c", 1.0),
    ]


def test_hungarian_accuracy_matches_one_cluster_per_class():
    assert hungarian_accuracy(TRUTH, CLUSTERS) == pytest.approx(5 / 6)
    # overclustering: every cluster is pure (purity 1) but only two can be matched to the two classes
    assert purity(["a", "a", "b", "b"], [0, 1, 2, 3]) == 1.0
    assert hungarian_accuracy(["a", "a", "b", "b"], [0, 1, 2, 3]) == 0.5
    # purity counts cluster 0 and 1 both as "a"; a one-to-one match cannot
    assert purity(["a", "a", "a", "a", "b"], [0, 0, 1, 1, 1]) == pytest.approx(4 / 5)
    assert hungarian_accuracy(["a", "a", "a", "a", "b"], [0, 0, 1, 1, 1]) == pytest.approx(3 / 5)


def test_adjusted_rand_and_nmi_by_hand():
    truth, clusters = [0, 0, 1, 1], [0, 0, 0, 1]
    # pairs together in both: 1; expected (3 * 2) / 6 = 1; max (3 + 2) / 2 = 2.5 -> (1 - 1) / (2.5 - 1) = 0
    assert adjusted_rand(truth, clusters) == pytest.approx(0.0)
    h_truth = math.log(2)
    h_clusters = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mutual = 0.5 * math.log(0.5 / (0.75 * 0.5)) + 0.25 * math.log(0.25 / (0.75 * 0.5)) + 0.25 * math.log(0.25 / (0.25 * 0.5))
    assert nmi(truth, clusters) == pytest.approx(mutual / ((h_truth + h_clusters) / 2))
    # renaming clusters changes nothing
    assert adjusted_rand(["x", "x", "y", "y"], [5, 5, 2, 2]) == pytest.approx(1.0)
    assert nmi(["x", "x", "y", "y"], [5, 5, 2, 2]) == pytest.approx(1.0)
    assert score_against_truth(["x", "x", "y", "y"], [5, 5, 2, 2]) == {
        "purity": 1.0, "hungarian_accuracy": 1.0, "adjusted_rand": pytest.approx(1.0), "nmi": pytest.approx(1.0),
    }


def test_silhouette_by_hand():
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    # each point: a = 1; b = 10.5 for the outer points, 9.5 for the inner ones
    expected = 1 - (2 / 10.5 + 2 / 9.5) / 4
    assert silhouette(X, [0, 0, 1, 1]) == pytest.approx(expected)
    assert silhouette(X, [0, 0, 0, 0]) is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="equal length"):
        purity(["a", "b"], [0])
    with pytest.raises(ValueError, match="non-empty"):
        purity([], [])


def test_scores_from_the_contingency_table_equal_scikit_learns_on_random_partitions():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 50))
        truth = rng.integers(0, rng.integers(1, 5), n)
        clusters = truth.copy() if trial % 4 == 0 else rng.integers(0, rng.integers(1, 7), n)
        assert adjusted_rand(truth, clusters) == pytest.approx(adjusted_rand_score(truth, clusters), abs=1e-12)
        assert nmi(truth, clusters) == pytest.approx(normalized_mutual_info_score(truth, clusters), abs=1e-12)
