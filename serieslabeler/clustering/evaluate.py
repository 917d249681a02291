"""clustering.evaluate"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from serieslabeler.clustering.runs import clustering_size, stored_space_evaluation
from serieslabeler.metrics.clustering import (
    ClusterPurity,
    cluster_purity,
    score_against_truth,
)
from serieslabeler.store.queries import id_array
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
    rows = workspace.db.execute(
        "SELECT g.image_id, g.label FROM json_each(?) j CROSS JOIN ground_truth g ON g.image_id = j.value",
        (id_array(image_ids),),
    )
    return {int(r["image_id"]): r["label"] for r in rows}


def clustering_truth(workspace: Workspace, clustering_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clusters, class codes, classes)`` of a clustering's members that have a ground truth.

    Read as counts per cluster and class (one indexed join, grouped in SQLite) and expanded into
    one entry per image: the scores depend only on those counts. Codes index the sorted classes.
    """
    rows = workspace.db.execute(
        "SELECT m.cluster, g.label, COUNT(*) FROM cluster_members m JOIN ground_truth g ON g.image_id = m.image_id "
        "WHERE m.clustering_id=? GROUP BY m.cluster, g.label",
        (int(clustering_id),),
    ).fetchall()
    classes = np.array(sorted({r[1] for r in rows}), dtype=str)
    code = {label: i for i, label in enumerate(classes)}
    counts = np.array([r[2] for r in rows], dtype=np.int64)
    clusters = np.repeat(np.array([r[0] for r in rows], dtype=np.int64), counts)
    return clusters, np.repeat(np.array([code[r[1]] for r in rows], dtype=np.int64), counts), classes


def evaluate_clustering(workspace: Workspace, clustering_id: int, with_silhouette: bool = True) -> ClusteringEvaluation:
    """Score a saved clustering against ``ground_truth`` (images without one are left out).

    The silhouette is computed in the space that made the clusters (it needs no ground truth),
    when the clustering is saved (:func:`serieslabeler.clustering.runs.stored_space_evaluation`).
    """

    result = ClusteringEvaluation(int(clustering_id), clustering_size(workspace, clustering_id), 0)
    assigned, codes, classes = clustering_truth(workspace, clustering_id)
    if len(codes):
        result.evaluated = len(codes)
        for name, value in score_against_truth(codes, assigned).items():
            setattr(result, name, value)
        result.per_cluster = [replace(p, majority=str(classes[int(p.majority)])) for p in cluster_purity(codes, assigned)]
    if with_silhouette:
        result.silhouette = stored_space_evaluation(workspace, clustering_id)["silhouette"]
    return result
