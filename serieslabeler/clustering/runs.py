"""Clustering: k-means, agglomerative and spectral on feature vectors, PCA or t-SNE coordinates.

A clustering is computed in a *space*:

- ``full``: the feature matrix of :func:`serieslabeler.space.metadata.build_matrix` (image features plus the
  chosen metadata, each metadata field carrying its share of the variance);
- ``pca``: that matrix reduced by PCA (``n_components``, fitted on the clustered images);
- ``tsne``: the 2-D coordinates of a t-SNE map of the feature set (the latest map, or ``map_id``).

Every clustering is saved (``clusterings`` + ``cluster_members``) with its parameters, so the
space can be rebuilt later (:func:`space_matrix`) to split or merge clusters, link them across
days, or score them. ``cluster_members.distance`` is each image's Euclidean distance to its own
cluster's centre (the mean of its members) in that space; labeling uses it for confidence and
shows the most atypical images first. Clusters are numbered by size, largest first.

Memory: k-means and spectral clustering (on a k-nearest-neighbour affinity) never build an
n x n matrix. Agglomerative clustering does, on up to ``dense_limit`` images (its condensed
distance matrix takes 4 n^2 bytes); above that it *switches* to a k-nearest-neighbour
connectivity graph (``neighbors`` per image, made connected) so that only pairs of neighbours
are ever merged, which needs O(n) memory. That route is slow, though: the exact neighbour
search costs O(n^2 d) and the constrained Ward merging is costly too (about 50 s for 20,000
x 512 on two busy cores, growing with n^2; hours for a million), so above ``centroid_limit``
images agglomerative clustering *agglomerates k-means centroids*
instead: k-means (faiss when available) cuts the images into ``micro_clusters`` small groups
(O(n m d) per iteration), the group centroids are clustered agglomeratively (a dense run on
``micro_clusters`` points), and every image takes its group's cluster. Like scikit-learn's
``Birch`` global step, the centroids are clustered unweighted; with ``micro_clusters`` far
above k, each final cluster is a union of many small groups, so the approximation is mild.
The route taken is recorded in the clustering's parameters (``connectivity``: ``none``,
``knn-<neighbors>`` or ``centroids-<micro_clusters>``).

Large k-means runs use faiss when it is importable and there are more than
``FAISS_THRESHOLD`` images or at least ``FAISS_WORK`` images x clusters (``faiss_threshold``:
a number of images instead); otherwise scikit-learn. faiss trains on at most 256 images per
centroid (its own subsampling, seeded) and then assigns every image; it is deterministic for
a given ``seed`` and thread count. Distances to the cluster centres are computed in chunks,
so a million 512-dim vectors need no float64 copy of the matrix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from serieslabeler.clustering.algorithms import centre_distances, fit_clusters
from serieslabeler.errors import PipelineError
from serieslabeler.metrics.clustering import silhouette
from serieslabeler.sampling import predicting_model
from serieslabeler.space.spaces import SPACE_OPTIONS, build_space, prepare_space
from serieslabeler.store.workspace import Workspace


@dataclass
class Clustering:
    """A saved clustering: images in id order, their cluster and distance to its centre."""

    id: int | None
    feature_set: str
    algorithm: str
    k: int
    space: str
    sample_id: int | None
    params: dict
    image_ids: np.ndarray = field(repr=False)
    clusters: np.ndarray = field(repr=False)
    distances: np.ndarray = field(repr=False)
    parent_id: int | None = None
    created_at: str = ""

    def sizes(self) -> dict[int, int]:
        ids, counts = np.unique(self.clusters, return_counts=True)
        return {int(c): int(n) for c, n in zip(ids, counts)}

    def members(self, cluster: int) -> np.ndarray:
        """Image ids of one cluster, most atypical (farthest from the centre) first."""
        inside = np.flatnonzero(self.clusters == cluster)
        return self.image_ids[inside[np.argsort(-self.distances[inside], kind="stable")]]

    def summary(self) -> dict:
        return {
            "id": self.id,
            "feature_set": self.feature_set,
            "algorithm": self.algorithm,
            "k": self.k,
            "space": self.space,
            "sample_id": self.sample_id,
            "parent_id": self.parent_id,
            "params": self.params,
            "images": len(self.image_ids),
            "sizes": self.sizes(),
        }


def space_matrix(workspace: Workspace, clustering: Clustering) -> np.ndarray:
    """The rows (in ``clustering.image_ids`` order) of the space a saved clustering was made in."""
    options = {key: clustering.params[key] for key in SPACE_OPTIONS if key in clustering.params}
    _, X, _ = build_space(
        workspace, clustering.feature_set, clustering.space, clustering.image_ids, clustering.params.get("seed", 0), **options
    )
    return X


# --- run, save, load --------------------------------------------------------------------------
def run_clustering(
    workspace: Workspace,
    feature_set: str,
    algorithm: str,
    k: int,
    space: str = "full",
    metadata: dict[str, float] | None = None,
    sample_id: int | None = None,
    image_ids=None,
    seed: int = 0,
    **params,
) -> Clustering:
    """Cluster the images of a sample (or ``image_ids``, or every embedded image) and save the result.

    ``params``: the space's options ``absolute_dates``, ``n_components`` (pca, default
    ``PCA_COMPONENTS``) and ``map_id`` (tsne, default the latest map); the rest go to the
    algorithm: ``linkage``, ``dense_limit``, ``neighbors`` (agglomerative), ``n_init``,
    ``faiss_threshold`` (k-means), ``neighbors`` (spectral).
    """
    name, ids, X, options = prepare_space(workspace, feature_set, space, metadata, sample_id, image_ids, seed, params)
    labels, info = fit_clusters(X, algorithm, k, seed, **params)
    clustering = Clustering(
        None, name, algorithm, k, space, sample_id, {**options, "seed": seed, **params, **info},
        ids, labels, centre_distances(X, labels),
    )
    return save_clustering(workspace, clustering, X)


def space_evaluation(X: np.ndarray, clustering: Clustering) -> dict:
    """What is scored in the clustering's own space (needs no ground truth): the sampled silhouette."""
    return {"silhouette": silhouette(X, clustering.clusters, seed=clustering.params.get("seed", 0))}


def save_clustering(workspace: Workspace, clustering: Clustering, X: np.ndarray | None = None) -> Clustering:
    """Write a clustering and its members in one transaction; returns it as saved (with its id).

    Its image count and cluster sizes are stored with it, and, given ``X`` (the rows of the
    space it was made in), its :func:`space_evaluation`, so no page rebuilds the space to score it.
    """
    evaluation = None if X is None else json.dumps(space_evaluation(X, clustering))
    with workspace.transaction() as db:
        cursor = db.execute(
            "INSERT INTO clusterings(feature_set, algorithm, k, space, sample_id, params, parent_id, images, sizes, evaluation) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                clustering.feature_set, clustering.algorithm, len(np.unique(clustering.clusters)), clustering.space,
                clustering.sample_id, json.dumps(clustering.params), clustering.parent_id, len(clustering.image_ids),
                json.dumps(clustering.sizes()), evaluation,
            ),
        )
        clustering_id = cursor.lastrowid
        db.executemany(
            "INSERT INTO cluster_members(clustering_id, image_id, cluster, distance) VALUES (?,?,?,?)",
            [
                (clustering_id, int(i), int(c), float(d))
                for i, c, d in zip(clustering.image_ids, clustering.clusters, clustering.distances)
            ],
        )
        _count_member_labels(db, clustering_id)
        latest_model = predicting_model(workspace)
        if latest_model is not None:
            count_member_predictions(db, latest_model, clustering_id)
    return load_clustering(workspace, clustering_id)


def _count_member_labels(db, clustering_id: int) -> None:
    """Store how many members of each cluster carry each accepted label (``cluster_label_counts``;
    from then on every label change moves them, see ``labels.log._move_cluster_counts``)."""
    db.execute(
        "INSERT INTO cluster_label_counts(clustering_id, cluster, label, n) "
        "SELECT m.clustering_id, m.cluster, c.label, COUNT(*) FROM cluster_members m "
        "JOIN current_labels c ON c.image_id = m.image_id AND c.status = 'accepted' "
        "WHERE m.clustering_id = ? GROUP BY m.cluster, c.label",
        (clustering_id,),
    )


def count_member_predictions(db, model_id: int, clustering_id: int | None = None) -> None:
    """Store (again) how many members of each cluster a model predicted each label, with their
    summed confidence (``cluster_predictions``), for one clustering or all; the model's
    suggestion for a cluster reads them (:func:`serieslabeler.loop.suggested_label`). Run in the
    transaction that saves the predictions or the clustering."""
    which = "" if clustering_id is None else " AND clustering_id = ?"
    params = (int(model_id),) if clustering_id is None else (int(model_id), int(clustering_id))
    db.execute(f"DELETE FROM cluster_predictions WHERE model_id = ?{which}", params)
    db.execute(
        "INSERT INTO cluster_predictions(model_id, clustering_id, cluster, label, n, confidence_sum) "
        "SELECT p.model_id, m.clustering_id, m.cluster, p.label, COUNT(*), SUM(p.confidence) "
        f"FROM predictions p JOIN cluster_members m ON m.image_id = p.image_id WHERE p.model_id = ?{which} "
        "GROUP BY m.clustering_id, m.cluster, p.label",
        params,
    )


def require_clustering(workspace: Workspace, clustering_id: int):
    """The stored row of a clustering; a clear error naming the known ones when there is none."""
    row = workspace.db.execute("SELECT * FROM clusterings WHERE id=?", (int(clustering_id),)).fetchone()
    if row is None:
        known = ", ".join(str(r[0]) for r in workspace.db.execute("SELECT id FROM clusterings ORDER BY id")) or "none yet"
        raise PipelineError(f"no clustering {clustering_id} in {workspace.root} (known: {known}); "
                            "list them with 'serieslabeler clusterings'")
    return row


def load_clustering(workspace: Workspace, clustering_id: int) -> Clustering:
    row = require_clustering(workspace, clustering_id)
    members = workspace.db.execute(
        "SELECT image_id, cluster, distance FROM cluster_members WHERE clustering_id=? ORDER BY image_id", (row["id"],)
    ).fetchall()
    table = np.array([tuple(m) for m in members], dtype=float).reshape(-1, 3)
    return Clustering(
        row["id"], row["feature_set"], row["algorithm"], row["k"], row["space"], row["sample_id"],
        json.loads(row["params"]), table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2],
        row["parent_id"], row["created_at"],
    )


def list_clusterings(workspace: Workspace) -> list[dict]:
    """Every saved clustering, newest first (without its members; ``images`` as stored when saved)."""
    rows = workspace.db.execute(
        "SELECT id, feature_set, algorithm, k, space, sample_id, parent_id, params, created_at, images "
        "FROM clusterings ORDER BY id DESC"
    ).fetchall()
    return [{**dict(r), "params": json.loads(r["params"])} for r in rows]


def clustering_size(workspace: Workspace, clustering_id: int) -> int:
    """How many images a saved clustering holds (stored with it)."""
    return int(require_clustering(workspace, clustering_id)["images"])


def latest_clustering(workspace: Workspace) -> int | None:
    """The newest clustering's id (None when there is none)."""
    return workspace.db.execute("SELECT MAX(id) FROM clusterings").fetchone()[0]


def stored_space_evaluation(workspace: Workspace, clustering_id: int) -> dict:
    """The clustering's :func:`space_evaluation`, as stored when it was saved; one saved before
    that was stored is scored (rebuilding its space) once and stored, when the workspace is writable."""
    stored = stored_evaluation(workspace, clustering_id)
    if "silhouette" in stored:
        return stored
    clustering = load_clustering(workspace, clustering_id)
    evaluation = space_evaluation(space_matrix(workspace, clustering), clustering)
    store_evaluation(workspace, clustering.id, evaluation)
    return evaluation


def stored_evaluation(workspace: Workspace, clustering_id: int) -> dict:
    """What is stored of a clustering's scores (its ``evaluation`` JSON; empty when none)."""
    row = workspace.db.execute("SELECT evaluation FROM clusterings WHERE id=?", (int(clustering_id),)).fetchone()
    return json.loads(row[0]) if row is not None and row[0] is not None else {}


def store_evaluation(workspace: Workspace, clustering_id: int, parts: dict) -> None:
    """Add ``parts`` to a clustering's stored scores (nothing on a read-only workspace)."""
    if workspace.read_only:
        return
    with workspace.transaction() as db:
        merged = {**stored_evaluation(workspace, clustering_id), **parts}
        db.execute("UPDATE clusterings SET evaluation=? WHERE id=?", (json.dumps(merged), int(clustering_id)))


# --- editing a clustering: split, merge -------------------------------------------------------
def split_cluster(workspace: Workspace, clustering_id: int, cluster: int, seed: int = 0) -> Clustering:
    """A new clustering (child of ``clustering_id``) with ``cluster`` split in two by k-means (k=2).

    The larger half keeps the cluster's number; the other half gets the next free number.
    """
    parent = load_clustering(workspace, clustering_id)
    inside = _require_clusters(parent, [cluster])
    if inside.sum() < 2:
        raise PipelineError(f"cluster {cluster} of clustering {parent.id} has {inside.sum()} image; nothing to split")
    X = space_matrix(workspace, parent)
    halves, _ = fit_clusters(X[inside], "kmeans", 2, seed)
    clusters = parent.clusters.copy()
    new = int(parent.clusters.max()) + 1
    clusters[np.flatnonzero(inside)[halves == 1]] = new
    operation = {"split": {"cluster": int(cluster), "into": [int(cluster), new], "seed": seed}}
    return _save_child(workspace, parent, X, clusters, operation)


def merge_clusters(workspace: Workspace, clustering_id: int, clusters) -> Clustering:
    """A new clustering (child of ``clustering_id``) with ``clusters`` merged into the lowest-numbered one."""
    parent = load_clustering(workspace, clustering_id)
    chosen = sorted({int(c) for c in clusters})
    if len(chosen) < 2:
        raise PipelineError(f"name at least two different clusters to merge, got {chosen}")
    inside = _require_clusters(parent, chosen)
    merged = parent.clusters.copy()
    merged[inside] = chosen[0]
    operation = {"merge": {"clusters": chosen, "into": chosen[0]}}
    return _save_child(workspace, parent, space_matrix(workspace, parent), merged, operation)


def _require_clusters(clustering: Clustering, clusters: list[int]) -> np.ndarray:
    """Mask of the images in ``clusters``; a clear error for a cluster the clustering does not have."""
    unknown = sorted(set(clusters) - set(clustering.sizes()))
    if unknown:
        raise PipelineError(
            f"clustering {clustering.id} has no cluster {unknown[0]} (its clusters: {', '.join(map(str, clustering.sizes()))})"
        )
    return np.isin(clustering.clusters, clusters)


def _save_child(workspace: Workspace, parent: Clustering, X: np.ndarray, clusters: np.ndarray, operation: dict) -> Clustering:
    child = Clustering(
        None, parent.feature_set, parent.algorithm, len(np.unique(clusters)), parent.space, parent.sample_id,
        {**{k: v for k, v in parent.params.items() if k not in ("split", "merge")}, **operation},
        parent.image_ids, clusters, centre_distances(X, clusters), parent_id=parent.id,
    )
    return save_clustering(workspace, child, X)
