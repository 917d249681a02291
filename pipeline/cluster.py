"""Clustering: k-means, agglomerative and spectral on feature vectors, PCA or t-SNE coordinates.

A clustering is computed in a *space*:

- ``full``: the feature matrix of :func:`pipeline.features.build_matrix` (image features plus the
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
``faiss_threshold`` images; otherwise scikit-learn. faiss trains on at most 256 images per
centroid (its own subsampling, seeded) and then assigns every image; it is deterministic for
a given ``seed`` and thread count. Distances to the cluster centres are computed in chunks,
so a million 512-dim vectors need no float64 copy of the matrix.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field

import numpy as np

from .errors import PipelineError
from .features import row_chunks
from .progress import Progress
from .reduce import PCA_COMPONENTS
from .sampling import check_options, sample_ids
from .workspace import Workspace

ALGORITHMS = ("kmeans", "agglomerative", "spectral")
LINKAGES = ("ward", "average", "complete")
SPACES = ("full", "pca", "tsne")
DENSE_LIMIT = 15_000
CENTROID_LIMIT = 30_000
MICRO_CLUSTERS = 1_000
FAISS_THRESHOLD = 200_000
NEIGHBORS = 15
KMEANS_INIT = 4


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


# --- algorithms on arrays ---------------------------------------------------------------------
def kmeans_labels(
    X: np.ndarray, k: int, seed: int = 0, n_init: int = KMEANS_INIT, faiss_threshold: int = FAISS_THRESHOLD
) -> tuple[np.ndarray, dict]:
    """k-means labels and ``{"backend": "faiss" | "sklearn"}``."""
    if len(X) > faiss_threshold and faiss_available():
        return _faiss_kmeans(X, k, seed, n_init), {"backend": "faiss"}
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    return model.fit_predict(X), {"backend": "sklearn"}


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _faiss_kmeans(X: np.ndarray, k: int, seed: int, n_init: int) -> np.ndarray:
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    model = faiss.Kmeans(X.shape[1], k, niter=25, nredo=n_init, seed=seed, verbose=False)
    model.train(X)
    return model.index.search(X, 1)[1].ravel().astype(np.int64)


def micro_cluster_labels(X: np.ndarray, m: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Cut the rows into ``m`` small k-means groups, fast: faiss when importable, else
    scikit-learn's mini-batch k-means (full k-means with a thousand centres is far too slow)."""
    if faiss_available():
        return _faiss_kmeans(X, m, seed, 1), "faiss"
    from sklearn.cluster import MiniBatchKMeans

    model = MiniBatchKMeans(n_clusters=m, n_init=1, batch_size=4096, random_state=seed)
    return model.fit_predict(X), "sklearn-minibatch"


def agglomerative_labels(
    X: np.ndarray,
    k: int,
    seed: int = 0,
    linkage: str = "ward",
    dense_limit: int = DENSE_LIMIT,
    neighbors: int = NEIGHBORS,
    centroid_limit: int = CENTROID_LIMIT,
    micro_clusters: int = MICRO_CLUSTERS,
) -> tuple[np.ndarray, dict]:
    """Agglomerative labels and ``{"linkage", "connectivity"}``: dense up to ``dense_limit``
    images, on a kNN graph up to ``centroid_limit``, on k-means centroids above (module docstring)."""
    from sklearn.cluster import AgglomerativeClustering

    if linkage not in LINKAGES:
        raise PipelineError(f"unknown linkage '{linkage}'; choose one of {', '.join(LINKAGES)}")
    if len(X) > centroid_limit:
        return _agglomerate_centroids(X, k, seed, linkage, micro_clusters)
    connectivity, how = None, "none"
    if len(X) > dense_limit:
        connectivity, how = knn_connectivity(X, neighbors), f"knn-{min(neighbors, len(X) - 1)}"
    model = AgglomerativeClustering(n_clusters=k, linkage=linkage, connectivity=connectivity)
    return model.fit_predict(X), {"linkage": linkage, "connectivity": how}


def _agglomerate_centroids(X: np.ndarray, k: int, seed: int, linkage: str, micro_clusters: int) -> tuple[np.ndarray, dict]:
    """Agglomerative clustering of ``micro_clusters`` k-means centroids; each row takes its group's cluster."""
    from sklearn.cluster import AgglomerativeClustering

    m = min(len(X), max(micro_clusters, k))
    groups, backend = micro_cluster_labels(X, m, seed)
    present, groups = np.unique(groups, return_inverse=True)
    centroids = cluster_means(X, groups, len(present))
    model = AgglomerativeClustering(n_clusters=min(k, len(present)), linkage=linkage)
    return model.fit_predict(centroids)[groups], {
        "linkage": linkage, "connectivity": f"centroids-{len(present)}", "micro_backend": backend,
    }


def knn_connectivity(X: np.ndarray, neighbors: int = NEIGHBORS):
    """A connected, sparse k-nearest-neighbour graph of the rows of ``X`` (O(n * neighbors) memory).

    Separate components are joined through their representatives (the member nearest the
    component's mean), each to the nearest other representative, until one component is left.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import NearestNeighbors, kneighbors_graph

    graph = kneighbors_graph(X, n_neighbors=min(neighbors, len(X) - 1), include_self=False)
    count, component = connected_components(graph, directed=False)
    while count > 1:
        representatives = _component_representatives(X, component, count)
        nearest = NearestNeighbors(n_neighbors=1).fit(X[representatives]).kneighbors(return_distance=False)[:, 0]
        bridges = csr_matrix(
            (np.ones(count), (representatives, representatives[nearest])), shape=graph.shape
        )
        graph = graph + bridges
        count, component = connected_components(graph, directed=False)
    return graph


def _component_representatives(X: np.ndarray, component: np.ndarray, count: int) -> np.ndarray:
    spread = centre_distances(X, component)
    order = np.lexsort((spread, component))
    return order[np.searchsorted(component[order], np.arange(count))]


def spectral_labels(X: np.ndarray, k: int, seed: int = 0, neighbors: int = NEIGHBORS) -> tuple[np.ndarray, dict]:
    """Spectral clustering on a sparse k-nearest-neighbour affinity (never an n x n matrix).

    Clusters are read off the spectral embedding with QR pivoting (``cluster_qr``): no random
    restarts, and faster than k-means on the embedding.
    """
    from sklearn.cluster import SpectralClustering

    n_neighbors = min(neighbors, len(X) - 1)
    model = SpectralClustering(
        n_clusters=k, affinity="nearest_neighbors", n_neighbors=n_neighbors, random_state=seed, assign_labels="cluster_qr"
    )
    return model.fit_predict(X), {"neighbors": n_neighbors}


CLUSTERERS = {"kmeans": kmeans_labels, "agglomerative": agglomerative_labels, "spectral": spectral_labels}


def fit_clusters(X: np.ndarray, algorithm: str, k: int, seed: int = 0, **params) -> tuple[np.ndarray, dict]:
    """Cluster the rows of ``X`` into ``k`` clusters numbered by size (0 = largest).

    Returns the labels and what the algorithm reports about how it ran (backend, connectivity).
    """
    if algorithm not in CLUSTERERS:
        raise PipelineError(f"unknown clustering algorithm '{algorithm}'; choose one of {', '.join(ALGORITHMS)}")
    if not 1 <= k <= len(X):
        raise PipelineError(f"k={k} clusters asked for {len(X)} images; k must be between 1 and {len(X)}")
    if k == 1:
        return np.zeros(len(X), dtype=np.int64), {}
    X = np.asarray(X, dtype=np.float32)
    check_options(CLUSTERERS[algorithm], f"algorithm '{algorithm}'", X, k, seed, **params)
    labels, info = CLUSTERERS[algorithm](X, k, seed, **params)
    return number_by_size(labels), info


def number_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..k-1 by size, largest first (ties: the one whose first member comes first)."""
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return rank[np.searchsorted(ids, labels)]


def centre_distances(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's Euclidean distance to the mean of its cluster (in row chunks: O(n) extra memory)."""
    ids, index = np.unique(labels, return_inverse=True)
    centres = cluster_means(X, index, len(ids))
    distances = np.empty(len(X))
    for part in row_chunks(len(X)):
        distances[part] = np.linalg.norm(X[part] - centres[index[part]], axis=1)
    return distances


def cluster_means(X: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """``(count, d)`` float64 means of the rows of each group ``index`` (0..count-1), in row chunks."""
    from scipy.sparse import csr_matrix

    sums = np.zeros((count, X.shape[1]))
    for part in row_chunks(len(X)):
        rows = index[part]
        membership = csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(count, len(rows)))
        sums += membership @ np.asarray(X[part], dtype=np.float64)
    return sums / np.maximum(np.bincount(index, minlength=count), 1)[:, None]


def within_cluster_sum_of_squares(X: np.ndarray, labels: np.ndarray) -> float:
    """Inertia of any labeling: sum of squared distances to the cluster means."""
    return float(np.sum(centre_distances(X, labels) ** 2))


# --- spaces -----------------------------------------------------------------------------------
SPACE_OPTIONS = ("metadata", "absolute_dates", "n_components", "map_id")


def space_options(space: str, metadata=None, absolute_dates=False, n_components=PCA_COMPONENTS, map_id=None) -> dict:
    """The options that define a space, as they are saved with a clustering."""
    if space not in SPACES:
        raise PipelineError(f"unknown space '{space}'; choose one of {', '.join(SPACES)}")
    if space == "tsne":
        if metadata:
            raise PipelineError(
                "clustering on t-SNE coordinates uses the map as it was made; put the metadata into the map "
                "('python -m pipeline map --metadata ...') instead of --metadata here"
            )
        return {"map_id": map_id}
    options = {"metadata": dict(metadata or {}), "absolute_dates": bool(absolute_dates)}
    if space == "pca":
        options["n_components"] = int(n_components)
    return options


def prepare_space(
    workspace: Workspace, feature_set: str, space: str, metadata, sample_id, image_ids, seed: int, params: dict
) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """``(feature set name, ids, X, space options)`` for a clustering request.

    Takes the space options (``absolute_dates``, ``n_components``, ``map_id``) out of ``params``,
    leaving the algorithm's own options there.
    """
    from .store import FeatureStore

    name = FeatureStore(workspace).resolve(feature_set)
    if image_ids is None and sample_id is not None:
        image_ids = sample_ids(workspace, sample_id)
    extra = {key: params.pop(key) for key in SPACE_OPTIONS[1:] if key in params}
    options = space_options(space, metadata, **extra)
    ids, X, options = build_space(workspace, name, space, image_ids, seed, **options)
    return name, ids, X, options


def build_space(workspace: Workspace, feature_set: str, space: str, image_ids, seed: int, **options) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(ids, X, options)``: the images (sorted ids) as rows of the space; ``options`` completed (map id)."""
    if space == "tsne":
        return _tsne_space(workspace, feature_set, image_ids, options.get("map_id"))
    from .features import build_matrix

    ids = None if image_ids is None else np.unique(np.asarray(image_ids, dtype=np.int64))
    matrix = build_matrix(
        workspace, feature_set, image_ids=ids, metadata=options.get("metadata") or None,
        absolute_dates=options.get("absolute_dates", False),
    )
    X = matrix.X
    if space == "pca":
        from .reduce import fit_pca

        X = fit_pca(X, options["n_components"], seed).transform(X).astype(np.float32)
    return np.asarray(matrix.ids, dtype=np.int64), X, options


def _tsne_space(workspace: Workspace, feature_set: str, image_ids, map_id: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Coordinates of a saved t-SNE map of ``feature_set`` (the latest one unless ``map_id``)."""
    from .reduce import latest_map, load_map

    saved = load_map(workspace, map_id) if map_id is not None else latest_map(workspace, feature_set)
    if saved is None:
        raise PipelineError(
            f"no t-SNE map of '{feature_set}' yet; make one with 'python -m pipeline map --features {feature_set}'"
        )
    if saved.feature_set != feature_set:
        raise PipelineError(f"map {saved.id} is a map of '{saved.feature_set}', not of '{feature_set}'")
    order = np.argsort(saved.ids)
    ids, coords = saved.ids[order], saved.coords[order]
    if image_ids is not None:
        wanted = np.unique(np.asarray(image_ids, dtype=np.int64))
        absent = wanted[~np.isin(wanted, ids)]
        if len(absent):
            raise PipelineError(
                f"map {saved.id} does not hold {len(absent)} of the {len(wanted)} images to cluster (e.g. id {absent[0]}); "
                f"make a map of them ('python -m pipeline map --features {feature_set} --sample ID')"
            )
        keep = np.isin(ids, wanted)
        ids, coords = ids[keep], coords[keep]
    return ids, np.asarray(coords, dtype=np.float32), {"map_id": int(saved.id)}


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
    return save_clustering(workspace, clustering)


def save_clustering(workspace: Workspace, clustering: Clustering) -> Clustering:
    """Write a clustering and its members in one transaction; returns it as saved (with its id)."""
    with workspace.transaction() as db:
        cursor = db.execute(
            "INSERT INTO clusterings(feature_set, algorithm, k, space, sample_id, params, parent_id) VALUES (?,?,?,?,?,?,?)",
            (
                clustering.feature_set, clustering.algorithm, len(np.unique(clustering.clusters)), clustering.space,
                clustering.sample_id, json.dumps(clustering.params), clustering.parent_id,
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
    return load_clustering(workspace, clustering_id)


def load_clustering(workspace: Workspace, clustering_id: int) -> Clustering:
    row = workspace.db.execute("SELECT * FROM clusterings WHERE id=?", (int(clustering_id),)).fetchone()
    if row is None:
        raise PipelineError(
            f"no clustering {clustering_id} in {workspace.root}; list them with 'python -m pipeline clusterings'"
        )
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
    """Every saved clustering, newest first (without its members)."""
    rows = workspace.db.execute(
        "SELECT c.id, c.feature_set, c.algorithm, c.k, c.space, c.sample_id, c.parent_id, c.params, c.created_at, "
        "COUNT(m.image_id) AS images FROM clusterings c LEFT JOIN cluster_members m ON m.clustering_id = c.id "
        "GROUP BY c.id ORDER BY c.id DESC"
    ).fetchall()
    return [{**dict(r), "params": json.loads(r["params"])} for r in rows]


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

    ``params`` as for :func:`run_clustering`.
    """
    from .metrics.clustering import silhouette

    ks = sorted({int(k) for k in ks})
    if not ks:
        raise PipelineError("give at least one k to try (e.g. --k-min 2 --k-max 10)")
    _, _, X, _ = prepare_space(workspace, feature_set, space, metadata, sample_id, image_ids, seed, params)
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
    return save_clustering(workspace, child)


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
