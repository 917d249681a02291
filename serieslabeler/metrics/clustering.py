"""Clustering quality: how well clusters match a ground-truth labeling, and how well separated they are.

Pure functions take ``truth`` (labels, any hashable values) and ``clusters`` (cluster ids) of
equal length; :func:`evaluate_clustering` reads a saved clustering and the workspace's
``ground_truth`` table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_score,
)

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
    table, _, _ = contingency(truth, clusters)
    return float(table.max(axis=1).sum() / table.sum())


def cluster_purity(truth, clusters) -> list[ClusterPurity]:
    """Per cluster: size, majority class and its share (ties go to the first class in sorted order)."""
    table, classes, cluster_ids = contingency(truth, clusters)
    sizes = table.sum(axis=1)
    majority = table.argmax(axis=1)
    return [
        ClusterPurity(int(c), int(n), str(classes[m]), float(table[i, m] / n))
        for i, (c, n, m) in enumerate(zip(cluster_ids, sizes, majority))
    ]


def hungarian_accuracy(truth, clusters) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes.

    With more clusters than classes (overclustering), only as many clusters as there are
    classes are matched; images in the unmatched clusters count as errors.
    """

    table, _, _ = contingency(truth, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def adjusted_rand(truth, clusters) -> float:
    return float(adjusted_rand_score(*_check_pair(truth, clusters)))


def nmi(truth, clusters) -> float:
    return float(normalized_mutual_info_score(*_check_pair(truth, clusters)))


def silhouette(X: np.ndarray, clusters, sample_size: int = SILHOUETTE_SAMPLE, seed: int = 0) -> float | None:
    """Mean silhouette (Euclidean) on at most ``sample_size`` images; ``None`` for fewer than 2 clusters."""

    clusters = np.asarray(clusters)
    n_clusters = len(np.unique(clusters))
    if n_clusters < 2 or n_clusters >= len(clusters):
        return None
    size = sample_size if len(clusters) > sample_size else None
    return float(silhouette_score(X, clusters, sample_size=size, random_state=seed))


def score_against_truth(truth, clusters) -> dict:
    """Purity, Hungarian accuracy, adjusted Rand and NMI in one dict."""
    return {
        "purity": purity(truth, clusters),
        "hungarian_accuracy": hungarian_accuracy(truth, clusters),
        "adjusted_rand": adjusted_rand(truth, clusters),
        "nmi": nmi(truth, clusters),
    }


def _check_pair(truth, clusters) -> tuple[np.ndarray, np.ndarray]:
    truth, clusters = np.asarray(truth), np.asarray(clusters)
    if truth.shape != clusters.shape or truth.ndim != 1 or len(truth) == 0:
        raise ValueError(f"truth and clusters must be non-empty 1-D arrays of equal length, got {truth.shape} and {clusters.shape}")
    return truth, clusters
