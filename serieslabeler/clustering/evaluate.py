"""clustering.evaluate"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from serieslabeler.clustering.runs import clustering_size, store_evaluation, stored_evaluation, stored_space_evaluation
from serieslabeler.metrics.clustering import (
    ClusterPurity,
    table_cluster_purity,
    table_scores,
)
from serieslabeler.store.queries import id_array
from serieslabeler.store.summary import ground_truth_version
from serieslabeler.store.workspace import Workspace


TRUTH_SCORES = ("purity", "hungarian_accuracy", "adjusted_rand", "nmi")


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
    """``(table, classes, cluster_ids)``: how many of each cluster's members have each
    ground-truth class (members without one are left out), counted in SQLite by one indexed join."""
    rows = workspace.db.execute(
        "SELECT m.cluster, g.label, COUNT(*) FROM cluster_members m JOIN ground_truth g ON g.image_id = m.image_id "
        "WHERE m.clustering_id=? GROUP BY m.cluster, g.label",
        (int(clustering_id),),
    ).fetchall()
    classes = np.array(sorted({r[1] for r in rows}), dtype=str)
    cluster_ids = np.array(sorted({r[0] for r in rows}), dtype=np.int64)
    table = np.zeros((len(cluster_ids), len(classes)), dtype=np.int64)
    if rows:
        table[np.searchsorted(cluster_ids, [r[0] for r in rows]), np.searchsorted(classes, [r[1] for r in rows])] = [r[2] for r in rows]
    return table, classes, cluster_ids


def evaluate_clustering(workspace: Workspace, clustering_id: int, with_silhouette: bool = True) -> ClusteringEvaluation:
    """Score a saved clustering against ``ground_truth`` (images without one are left out).

    The silhouette is computed in the space that made the clusters (it needs no ground truth),
    when the clustering is saved (:func:`serieslabeler.clustering.runs.stored_space_evaluation`);
    the ground-truth scores once per version of the ground truth (:func:`stored_truth_scores`).
    """

    result = ClusteringEvaluation(int(clustering_id), clustering_size(workspace, clustering_id), 0)
    scores = stored_truth_scores(workspace, clustering_id)
    if scores["evaluated"]:
        result.evaluated = scores["evaluated"]
        for name in TRUTH_SCORES:
            setattr(result, name, scores[name])
        result.per_cluster = [ClusterPurity(**p) for p in scores["per_cluster"]]
    if with_silhouette:
        result.silhouette = stored_space_evaluation(workspace, clustering_id)["silhouette"]
    return result


def truth_scores(workspace: Workspace, clustering_id: int) -> dict:
    """Images evaluated, the :func:`~serieslabeler.metrics.clustering.table_scores` and the
    per-cluster purity of a clustering against the ground truth, as JSON-ready values."""
    table, classes, cluster_ids = clustering_truth(workspace, clustering_id)
    if not table.sum():
        return {"evaluated": 0}
    return {"evaluated": int(table.sum()), **table_scores(table),
            "per_cluster": [asdict(p) for p in table_cluster_purity(table, classes, cluster_ids)]}


def stored_truth_scores(workspace: Workspace, clustering_id: int) -> dict:
    """:func:`truth_scores`, stored with the clustering (its ``evaluation`` JSON, key ``truth``)
    for the current :func:`~serieslabeler.store.summary.ground_truth_version`; a clustering's
    members never change, so only a new ground truth makes them stale."""
    version = ground_truth_version(workspace)
    stored = stored_evaluation(workspace, clustering_id).get("truth")
    if stored is not None and stored.get("version") == version:
        return stored
    scores = {"version": version, **truth_scores(workspace, clustering_id)}
    store_evaluation(workspace, clustering_id, {"truth": scores})
    return scores
