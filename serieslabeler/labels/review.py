"""labels.review"""
from __future__ import annotations

import numpy as np

from serieslabeler.clustering.runs import load_clustering, space_matrix
from serieslabeler.errors import PipelineError
from serieslabeler.labels.clusters import cluster_members, cluster_status
from serieslabeler.sampling import greedy_k_center
from serieslabeler.store.workspace import Workspace

REVIEW_MODES = ("atypical", "typical", "interleaved")


def review_order(workspace: Workspace, clustering_id: int, cluster: int, mode: str = "atypical") -> np.ndarray:
    """A cluster's image ids in review order.

    ``atypical``: farthest from the centre first, so misfits show at the top; ``typical``: the
    reverse; ``interleaved``: alternately from both ends (farthest, closest, 2nd farthest, ...).
    """
    if mode not in REVIEW_MODES:
        raise PipelineError(f"review order must be one of {', '.join(REVIEW_MODES)}, not '{mode}'")
    ids, distances = cluster_members(workspace, clustering_id, cluster)
    farthest_first = ids[np.argsort(-distances, kind="stable")]
    if mode == "atypical":
        return farthest_first
    if mode == "typical":
        return farthest_first[::-1].copy()
    ends = np.empty_like(farthest_first)
    half = (len(ids) + 1) // 2
    ends[0::2] = farthest_first[:half]
    ends[1::2] = farthest_first[::-1][: len(ids) - half]
    return ends


def representatives(workspace: Workspace, clustering_id: int, cluster: int, n: int = 24, random_state: int = 0) -> np.ndarray:
    """``n`` image ids covering a cluster: the one closest to the centre, then farthest-point picks.

    Each further pick is the member farthest, in the space that made the clustering, from every
    image picked before, so a few images show the whole spread of a very large cluster.
    """

    if n < 1:
        raise PipelineError(f"the number of representatives must be at least 1, not {n}")
    ids, distances = cluster_members(workspace, clustering_id, cluster)
    if len(ids) <= n:
        return ids[np.argsort(distances, kind="stable")]
    clustering = load_clustering(workspace, clustering_id)
    X = space_matrix(workspace, clustering)[np.searchsorted(clustering.image_ids, ids)]
    centre = int(np.argmin(distances))
    picks = greedy_k_center(X, n - 1, np.random.default_rng(random_state), anchors=X[[centre]])
    return np.concatenate([[ids[centre]], ids[picks]])


def next_open_cluster(workspace: Workspace, clustering_id: int, after: int) -> int | None:
    """The next cluster still open after ``after`` in cluster order (wrapping around), or None
    when every other cluster is labeled or skipped."""
    still_open = [row["cluster"] for row in cluster_status(workspace, clustering_id) if row["state"] == "open" and row["cluster"] != after]
    later = [c for c in still_open if c > after]
    return (later or still_open or [None])[0]
