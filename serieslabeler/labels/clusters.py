"""labels.clusters"""
from __future__ import annotations

import json
import math

import numpy as np

from serieslabeler.clustering.runs import require_clustering
from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import _LIVE, _check_confidence, _image_ids, _record
from serieslabeler.labels.records import LabelEvent, LabelState
from serieslabeler.labels.rejections import exclusions, rejected_labels
from serieslabeler.labels.stale import refuse_if_stale
from serieslabeler.labels.vocabulary import _resolve_label
from serieslabeler.store.workspace import Workspace


# --- clusters ------------------------------------------------------------------------------------
def cluster_members(workspace: Workspace, clustering_id: int, cluster: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids, distances)`` of one cluster, ids ascending; distance to the cluster centre."""
    db = workspace.db
    require_clustering(workspace, clustering_id)
    rows = workspace.plain_rows(
        "SELECT image_id, distance FROM cluster_members WHERE clustering_id=? AND cluster=? ORDER BY image_id",
        (clustering_id, cluster),
    )
    if not rows:
        clusters = [r[0] for r in db.execute("SELECT DISTINCT cluster FROM cluster_members WHERE clustering_id=? ORDER BY cluster", (clustering_id,))]
        raise PipelineError(f"clustering {clustering_id} has no cluster {cluster} (clusters: {_ranges(clusters)})")
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float64)


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return f"{numbers[0]}..{numbers[-1]}" if numbers == list(range(numbers[0], numbers[-1] + 1)) else ", ".join(map(str, numbers))


def cluster_confidences(distances: np.ndarray, cluster_confidence: float = 1.0, a: float = 1.0) -> np.ndarray:
    """``p_c * exp(-a * d)`` with ``d`` each distance over the cluster's median distance.

    A cluster whose median distance is 0 (one image, or identical images) gives every member ``p_c``.
    """
    distances = np.asarray(distances, dtype=np.float64)
    median = float(np.median(distances)) if len(distances) else 0.0
    d = distances / median if median > 0 else np.zeros_like(distances)
    return cluster_confidence * np.exp(-a * d)


# --- actions -------------------------------------------------------------------------------------
def label_cluster(
    workspace: Workspace,
    clustering_id: int,
    cluster: int,
    label: str,
    excluded=(),
    author: str = "cli",
    cluster_confidence: float = 1.0,
    a: float = 1.0,
    iteration: int | None = None,
    session_id: int | None = None,
    expected_event_id: int | None = None,
    include=(),
) -> LabelEvent:
    """Label every member of a cluster except ``excluded`` (source ``cluster``).

    ``expected_event_id``: the log's latest event when the caller looked at the cluster
    (:func:`serieslabeler.labels.stale.latest_event_id`); a newer one touching the cluster or
    its images refuses the action.

    Each gets confidence ``p_c * exp(-a * d)`` (:func:`cluster_confidences`). Excluded images are
    left as they were (unlabeled ones stay in the pool).

    A member the expert already took ``label`` from (clicked out of a cluster of it, its pseudo-label
    rejected: :func:`rejected_members`) is clicked out for them, unless named in ``include``: a
    misfit lies close to the cluster it was clicked out of, so the next clustering puts it in a
    cluster of the same class again. Interactions: 1 + one per image the expert clicks: each one
    clicked out that was not already, and each one clicked back in (``include``).
    """
    cluster_confidence = _check_confidence(cluster_confidence, "the cluster confidence p_c")
    if not (math.isfinite(a) and a >= 0):
        raise PipelineError(f"the distance weight a must be a number >= 0, not {a}")
    excluded, include = _image_ids(excluded, "excluded images"), _image_ids(include, "images to include")
    with workspace.transaction():
        ids, distances = cluster_members(workspace, clustering_id, cluster)
        refuse_if_stale(workspace, expected_event_id, ids, f"cluster {cluster} of clustering {clustering_id}", clustering_id, cluster)
        strangers = sorted((set(excluded) | set(include)) - set(ids.tolist()))
        if strangers:
            raise PipelineError(
                f"image {strangers[0]} is not a member of cluster {cluster} of clustering {clustering_id}; "
                f"exclude or include only images shown in that cluster"
            )
        label, vocabulary_change = _resolve_label(workspace, label)
        left_out = exclusions(excluded, include, rejected_members(workspace, ids, label).tolist())
        keep = ~np.isin(ids, left_out.out)
        if not keep.any():
            raise PipelineError(
                f"every image of cluster {cluster} is excluded; skip the cluster instead, or label images one by one"
            )
        confidences = cluster_confidences(distances, cluster_confidence, a)
        changes = {i: LabelState(label, "cluster", c) for i, c in zip(ids[keep].tolist(), confidences[keep].tolist())}
        return _record(
            workspace, "label_cluster", changes, author=author, interactions=1 + left_out.clicks, label=label,
            source="cluster", iteration=iteration, clustering_id=clustering_id, cluster=cluster, session_id=session_id,
            details={**left_out.details(), "cluster_confidence": cluster_confidence, "a": a},
            vocabulary=vocabulary_change,
        )


def rejected_members(workspace: Workspace, image_ids, label: str) -> np.ndarray:
    """The ``image_ids`` the expert already took ``label`` from (:mod:`serieslabeler.labels.rejections`)."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    return image_ids[rejected_labels(workspace, image_ids).mask(image_ids, np.full(len(image_ids), str(label), dtype=object))]


def skip_cluster(
    workspace: Workspace,
    clustering_id: int,
    cluster: int,
    author: str = "cli",
    iteration: int | None = None,
    session_id: int | None = None,
    reason: str | None = None,
    expected_event_id: int | None = None,
) -> LabelEvent:
    """Record that a cluster has no dominant class; its images stay unlabeled (1 interaction)."""
    with workspace.transaction():
        ids, _ = cluster_members(workspace, clustering_id, cluster)
        refuse_if_stale(workspace, expected_event_id, ids, f"cluster {cluster} of clustering {clustering_id}", clustering_id, cluster)
        return _record(
            workspace, "skip", {}, author=author, interactions=1, iteration=iteration, clustering_id=clustering_id,
            cluster=cluster, session_id=session_id, details={"reason": reason} if reason else None,
        )


def cluster_status(workspace: Workspace, clustering_id: int) -> list[dict]:
    """Per cluster of a clustering: size, members labeled (accepted), the most common label and
    its count, and the state the live events left it in (``labeled``, ``skipped`` or ``open``).

    Reads what is stored, one row per cluster and label: the sizes saved with the clustering and
    the label counts every label change moves (``cluster_label_counts``, see the migration),
    so the cost follows the number of clusters, not of members."""
    db = workspace.db
    row = db.execute("SELECT sizes FROM clusterings WHERE id=?", (clustering_id,)).fetchone()
    if row is None:
        return []
    sizes = {int(cluster): int(n) for cluster, n in json.loads(row["sizes"]).items()}
    counts: dict[int, list[tuple[str, int]]] = {}
    for cluster, label, n in db.execute(
        "SELECT cluster, label, n FROM cluster_label_counts WHERE clustering_id=? AND n > 0", (clustering_id,)
    ):
        counts.setdefault(cluster, []).append((label, n))
    states = {}
    for row in db.execute(
        f"SELECT e.cluster, e.action FROM label_events e WHERE e.clustering_id=? "
        f"AND e.action IN ('label_cluster', 'skip') AND {_LIVE} ORDER BY e.id",
        (clustering_id,),
    ):
        states[row[0]] = "labeled" if row[1] == "label_cluster" else "skipped"
    out = []
    for cluster in sorted(sizes):
        labeled = sorted(counts.get(cluster, []), key=lambda ln: (-ln[1], ln[0]))
        top_label, top_count = labeled[0] if labeled else (None, 0)
        out.append({
            "cluster": cluster, "size": sizes[cluster], "labeled": sum(n for _, n in labeled),
            "top_label": top_label, "top_count": top_count, "state": states.get(cluster, "open"),
        })
    return out
