"""clustering.evaluate"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from serieslabeler.clustering.runs import load_clustering, space_matrix
from serieslabeler.metrics.clustering import (
    ClusterPurity,
    cluster_purity,
    score_against_truth,
    silhouette,
)
from serieslabeler.store.workspace import Workspace


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


def ground_truth(workspace: Workspace, image_ids) -> dict[int, str]:
    """``{image_id: label}`` for those of ``image_ids`` that have a ground-truth label."""
    rows = workspace.query_in("SELECT image_id, label FROM ground_truth WHERE image_id IN ({})", image_ids)
    return {int(r["image_id"]): r["label"] for r in rows}


def evaluate_clustering(workspace: Workspace, clustering_id: int, with_silhouette: bool = True) -> ClusteringEvaluation:
    """Score a saved clustering against ``ground_truth`` (images without one are left out).

    The silhouette is computed in the space that made the clusters (it needs no ground truth).
    """

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
