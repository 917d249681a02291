"""clustering.suggest"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serieslabeler.clustering.algorithms import (
    fit_clusters,
    within_cluster_sum_of_squares,
)
from serieslabeler.errors import PipelineError
from serieslabeler.metrics.clustering import silhouette
from serieslabeler.progress import Progress
from serieslabeler.space.spaces import prepare_space
from serieslabeler.store.workspace import Workspace


# --- choosing k -------------------------------------------------------------------------------
@dataclass
class KSuggestion:
    """Inertia (for the elbow chart) and silhouette per k, and the k each of them points at."""

    ks: list[int]
    inertia: list[float]
    silhouette: list[float | None]
    elbow_k: int
    silhouette_k: int | None

    def to_dict(self) -> dict:
        return {
            "rows": [{"k": k, "inertia": i, "silhouette": s} for k, i, s in zip(self.ks, self.inertia, self.silhouette)],
            "elbow_k": self.elbow_k,
            "silhouette_k": self.silhouette_k,
        }


def suggest_k(
    workspace: Workspace,
    feature_set: str,
    ks=range(2, 11),
    algorithm: str = "kmeans",
    space: str = "full",
    metadata: dict[str, float] | None = None,
    sample_id: int | None = None,
    image_ids=None,
    seed: int = 0,
    progress: Progress | None = None,
    **params,
) -> KSuggestion:
    """Cluster for every k in ``ks`` (nothing is saved) and score each: inertia and silhouette.

    Only the ks below the number of images are tried (a silhouette needs two images in some
    cluster), so a small sample gets the ks it can hold instead of an error after the others.
    ``params`` as for :func:`run_clustering`.
    """

    ks = sorted({int(k) for k in ks})
    if not ks:
        raise PipelineError("give at least one k to try (e.g. --k-min 2 --k-max 10)")
    _, _, X, _ = prepare_space(workspace, feature_set, space, metadata, sample_id, image_ids, seed, params)
    ks = [k for k in ks if k < len(X)]
    if not ks:
        raise PipelineError(f"these {len(X)} images hold no k to try: ks must be below the number of images")
    inertia, scores = [], []
    for done, k in enumerate(ks, 1):
        labels, _ = fit_clusters(X, algorithm, k, seed, **params)
        inertia.append(within_cluster_sum_of_squares(X, labels))
        scores.append(silhouette(X, labels, seed=seed))
        if progress:
            progress(done, len(ks))
    scored = [(s, k) for k, s in zip(ks, scores) if s is not None]
    return KSuggestion(ks, inertia, scores, elbow(ks, inertia), max(scored)[1] if scored else None)


def elbow(ks: list[int], inertia: list[float]) -> int:
    """The k farthest below the straight line from the first to the last point of the inertia curve."""
    if len(ks) < 3:
        return ks[0]
    x = (np.asarray(ks, float) - ks[0]) / (ks[-1] - ks[0])
    y = np.asarray(inertia, float)
    y = (y - y.min()) / (np.ptp(y) or 1.0)
    line = y[0] + (y[-1] - y[0]) * x
    return int(ks[int(np.argmax(line - y))])


def overcluster_k(workspace: Workspace, factor: float) -> int:
    """``factor`` x the number of classes: the vocabulary's, or else the ground truth's."""
    classes = workspace.db.execute("SELECT COUNT(*) FROM vocabulary").fetchone()[0]
    if not classes:
        classes = workspace.db.execute("SELECT COUNT(DISTINCT label) FROM ground_truth").fetchone()[0]
    if not classes:
        raise PipelineError(
            "overclustering needs the number of classes: add class names to the vocabulary (label a cluster) "
            "or ingest a ground-truth --label column; or give --k directly"
        )
    if factor <= 0:
        raise PipelineError(f"--overcluster must be positive, not {factor}")
    return max(1, round(factor * classes))
