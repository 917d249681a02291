"""Clustering quality: how well clusters match a ground-truth labeling, and how well separated they are.

Pure functions take ``truth`` (labels, any hashable values) and ``clusters`` (cluster ids) of
equal length; :func:`evaluate_clustering` reads a saved clustering and the workspace's
``ground_truth`` table.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..workspace import Workspace

SILHOUETTE_SAMPLE = 5000


@dataclass(frozen=True)
class ClusterPurity:
    """One cluster: its size, its most frequent true label, and that label's share."""

    cluster: int
    size: int
    majority: str
    purity: float


@dataclass
class ClusteringEvaluation:
    """Scores of one clustering. Ground-truth scores are ``None`` when the workspace has none."""

    clustering_id: int
    images: int
    evaluated: int
    purity: float | None = None
    hungarian_accuracy: float | None = None
    adjusted_rand: float | None = None
    nmi: float | None = None
    silhouette: float | None = None
    per_cluster: list[ClusterPurity] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


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
    from scipy.optimize import linear_sum_assignment

    table, _, _ = contingency(truth, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def adjusted_rand(truth, clusters) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(*_check_pair(truth, clusters)))


def nmi(truth, clusters) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(*_check_pair(truth, clusters)))


def silhouette(X: np.ndarray, clusters, sample_size: int = SILHOUETTE_SAMPLE, seed: int = 0) -> float | None:
    """Mean silhouette (Euclidean) on at most ``sample_size`` images; ``None`` for fewer than 2 clusters."""
    from sklearn.metrics import silhouette_score

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


def ground_truth(workspace: Workspace, image_ids) -> dict[int, str]:
    """``{image_id: label}`` for those of ``image_ids`` that have a ground-truth label."""
    rows = workspace.query_in("SELECT image_id, label FROM ground_truth WHERE image_id IN ({})", image_ids)
    return {int(r["image_id"]): r["label"] for r in rows}


def evaluate_clustering(workspace: Workspace, clustering_id: int, with_silhouette: bool = True) -> ClusteringEvaluation:
    """Score a saved clustering against ``ground_truth`` (images without one are left out).

    The silhouette is computed in the space that made the clusters (it needs no ground truth).
    """
    from ..cluster import load_clustering, space_matrix

    clustering = load_clustering(workspace, clustering_id)
    result = ClusteringEvaluation(clustering.id, len(clustering.image_ids), 0)
    truth = ground_truth(workspace, clustering.image_ids)
    if truth:
        known = np.array([int(i) in truth for i in clustering.image_ids])
        labels = np.array([truth[int(i)] for i in clustering.image_ids[known]])
        assigned = clustering.clusters[known]
        result.evaluated = int(known.sum())
        for name, value in score_against_truth(labels, assigned).items():
            setattr(result, name, value)
        result.per_cluster = cluster_purity(labels, assigned)
    if with_silhouette:
        result.silhouette = silhouette(space_matrix(workspace, clustering), clustering.clusters, seed=clustering.params.get("seed", 0))
    return result


def _check_pair(truth, clusters) -> tuple[np.ndarray, np.ndarray]:
    truth, clusters = np.asarray(truth), np.asarray(clusters)
    if truth.shape != clusters.shape or truth.ndim != 1 or len(truth) == 0:
        raise ValueError(f"truth and clusters must be non-empty 1-D arrays of equal length, got {truth.shape} and {clusters.shape}")
    return truth, clusters
