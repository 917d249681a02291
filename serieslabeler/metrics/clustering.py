"""Clustering quality: how well clusters match a ground-truth labeling, and how well separated they are.

Pure functions take ``truth`` (labels, any hashable values) and ``clusters`` (cluster ids) of
equal length; :func:`evaluate_clustering` reads a saved clustering and the workspace's
``ground_truth`` table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import silhouette_score

SILHOUETTE_SAMPLE = 5000


@dataclass(frozen=True)
class ClusterPurity:
    """One cluster: its size, its most frequent true label, and that label's share."""

    cluster: int
    size: int
    majority: str
    purity: float


def contingency(truth, clusters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(table, classes, cluster_ids)`` with ``table[i, j]`` = images of cluster i with class j."""
    truth, clusters = _check_pair(truth, clusters)
    classes, class_index = np.unique(truth, return_inverse=True)
    cluster_ids, cluster_index = np.unique(clusters, return_inverse=True)
    table = np.zeros((len(cluster_ids), len(classes)), dtype=np.int64)
    np.add.at(table, (cluster_index, class_index), 1)
    return table, classes, cluster_ids


def purity(truth, clusters) -> float:
    """Share of images whose cluster's majority class is their own class."""
    return table_purity(contingency(truth, clusters)[0])


def cluster_purity(truth, clusters) -> list[ClusterPurity]:
    """Per cluster: size, majority class and its share (ties go to the first class in sorted order)."""
    return table_cluster_purity(*contingency(truth, clusters))


def hungarian_accuracy(truth, clusters) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes.

    With more clusters than classes (overclustering), only as many clusters as there are
    classes are matched; images in the unmatched clusters count as errors.
    """
    return table_hungarian_accuracy(contingency(truth, clusters)[0])


def adjusted_rand(truth, clusters) -> float:
    return table_adjusted_rand(contingency(truth, clusters)[0])


def nmi(truth, clusters) -> float:
    return table_nmi(contingency(truth, clusters)[0])


def score_against_truth(truth, clusters) -> dict:
    """Purity, Hungarian accuracy, adjusted Rand and NMI in one dict."""
    return table_scores(contingency(truth, clusters)[0])


# --- the same scores from a contingency table (clusters x classes counts) --------------------
# A saved clustering's scores are read as counts per cluster and class straight from SQLite, so
# a million images never become per-image arrays.
def table_scores(table: np.ndarray) -> dict:
    """:func:`score_against_truth` of the images that ``table`` counts."""
    return {
        "purity": table_purity(table),
        "hungarian_accuracy": table_hungarian_accuracy(table),
        "adjusted_rand": table_adjusted_rand(table),
        "nmi": table_nmi(table),
    }


def table_purity(table: np.ndarray) -> float:
    return float(table.max(axis=1).sum() / table.sum())


def table_cluster_purity(table: np.ndarray, classes, cluster_ids) -> list[ClusterPurity]:
    sizes = table.sum(axis=1)
    majority = table.argmax(axis=1)
    return [
        ClusterPurity(int(c), int(n), str(classes[m]), float(table[i, m] / n))
        for i, (c, n, m) in enumerate(zip(cluster_ids, sizes, majority))
    ]


def table_hungarian_accuracy(table: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def table_adjusted_rand(table: np.ndarray) -> float:
    """Hubert and Arabie's adjusted Rand index (as scikit-learn's, 1.0 for identical partitions)."""
    n = table.sum()
    both, rows, cols = _pairs(table), _pairs(table.sum(axis=1)), _pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    best = (rows + cols) / 2
    if best == expected:  # one cluster and one class, or every image alone: the partitions agree
        return 1.0
    return float((both - expected) / (best - expected))


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def table_nmi(table: np.ndarray) -> float:
    """Mutual information over the arithmetic mean of the two entropies (scikit-learn's default)."""
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    if len(rows[rows > 0]) == len(cols[cols > 0]) == 1:
        return 1.0
    nonzero = table > 0
    joint = table[nonzero] / n
    outer = (rows[:, None] * cols[None, :])[nonzero] / n**2
    mutual = float(max((joint * np.log(joint / outer)).sum(), 0.0))
    mean_entropy = (_entropy(rows) + _entropy(cols)) / 2
    return mutual / mean_entropy if mean_entropy > 0 else 0.0


def silhouette(X: np.ndarray, clusters, sample_size: int = SILHOUETTE_SAMPLE, seed: int = 0) -> float | None:
    """Mean silhouette (Euclidean) on at most ``sample_size`` images; ``None`` for fewer than 2 clusters."""

    clusters = np.asarray(clusters)
    n_clusters = len(np.unique(clusters))
    if n_clusters < 2 or n_clusters >= len(clusters):
        return None
    size = sample_size if len(clusters) > sample_size else None
    return float(silhouette_score(X, clusters, sample_size=size, random_state=seed))


def _check_pair(truth, clusters) -> tuple[np.ndarray, np.ndarray]:
    truth, clusters = np.asarray(truth), np.asarray(clusters)
    if truth.shape != clusters.shape or truth.ndim != 1 or len(truth) == 0:
        raise ValueError(f"truth and clusters must be non-empty 1-D arrays of equal length, got {truth.shape} and {clusters.shape}")
    return truth, clusters
