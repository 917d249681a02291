"""clustering.linking"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serieslabeler.clustering.runs import load_clustering, space_matrix
from serieslabeler.store.workspace import Workspace


# --- linking a subject's clusters across days -------------------------------------------------
@dataclass(frozen=True)
class DayLink:
    """A subject's cluster on one day linked to its cluster on the next day it was photographed."""

    subject: str
    day: str
    next_day: str
    cluster: int
    next_cluster: int
    distance: float


def link_across_days(workspace: Workspace, clustering_id: int, mutual: bool = True) -> list[DayLink]:
    """Links between a subject's clusters on consecutive days (consecutive dates it has images on).

    For each subject and day, the images of each cluster form a group with a centroid (in the
    clustering's space). A group on day t is linked to the group on day t+1 whose centroid is
    nearest; with ``mutual``, only when that group's nearest on day t is the same group.
    """
    clustering = load_clustering(workspace, clustering_id)
    X = space_matrix(workspace, clustering)
    rows = workspace.query_in(
        "SELECT i.id, s.name, substr(i.taken_at, 1, 10) AS day FROM images i JOIN subjects s ON s.id = i.subject_id "
        "WHERE i.id IN ({})",
        clustering.image_ids,
    )
    where = {int(r["id"]): (r["name"], r["day"]) for r in rows}
    groups: dict[tuple[str, str], dict[int, list[int]]] = {}
    for position, (image_id, cluster) in enumerate(zip(clustering.image_ids, clustering.clusters)):
        groups.setdefault(where[int(image_id)], {}).setdefault(int(cluster), []).append(position)
    links = []
    for (subject, day), (next_subject, next_day) in zip(sorted(groups), sorted(groups)[1:]):
        if subject == next_subject:
            before, after = groups[(subject, day)], groups[(subject, next_day)]
            links += _nearest_links(subject, day, next_day, _centroids(X, before), _centroids(X, after), mutual)
    return links


def _centroids(X: np.ndarray, groups: dict[int, list[int]]) -> dict[int, np.ndarray]:
    return {cluster: X[positions].mean(axis=0) for cluster, positions in groups.items()}


def _nearest_links(subject: str, day: str, next_day: str, before: dict, after: dict, mutual: bool) -> list[DayLink]:
    """Links from each cluster centroid of ``before`` to the nearest of ``after`` (mutual nearest if asked)."""
    first, second = list(before), list(after)
    distances = np.array([[np.linalg.norm(before[a] - after[b]) for b in second] for a in first])
    nearest_after = distances.argmin(axis=1)
    nearest_before = distances.argmin(axis=0)
    return [
        DayLink(subject, day, next_day, first[i], second[j], float(distances[i, j]))
        for i, j in enumerate(nearest_after)
        if not mutual or nearest_before[j] == i
    ]
