"""clustering.algorithms"""
from __future__ import annotations

import importlib.util

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import (
    AgglomerativeClustering,
    KMeans,
    MiniBatchKMeans,
    SpectralClustering,
)
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

from serieslabeler.errors import PipelineError
from serieslabeler.sampling import check_options
from serieslabeler.space.metadata import row_chunks

ALGORITHMS = ("kmeans", "agglomerative", "spectral")


LINKAGES = ("ward", "average", "complete")


DENSE_LIMIT = 15_000


CENTROID_LIMIT = 30_000


MICRO_CLUSTERS = 1_000


FAISS_THRESHOLD = 200_000


# k-means uses faiss (when importable) from this many images x clusters on, whatever the number
# of images: scikit-learn with k=200 at 100,000 images did not finish in 5 minutes.
FAISS_WORK = 2_000_000


NEIGHBORS = 15


KMEANS_INIT = 4


# --- algorithms on arrays ---------------------------------------------------------------------
def kmeans_labels(
    X: np.ndarray, k: int, seed: int = 0, n_init: int = KMEANS_INIT, faiss_threshold: int | None = None
) -> tuple[np.ndarray, dict]:
    """k-means labels and ``{"backend": "faiss" | "sklearn"}``.

    faiss (when importable) runs above ``faiss_threshold`` images; by default (None) above
    ``FAISS_THRESHOLD`` images or from ``FAISS_WORK`` images x clusters, whichever comes first.
    """
    large = len(X) * k >= FAISS_WORK or len(X) > FAISS_THRESHOLD if faiss_threshold is None else len(X) > faiss_threshold
    if large and faiss_available():
        return _faiss_kmeans(X, k, seed, n_init), {"backend": "faiss"}

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
    if params.get("neighbors") is not None and params["neighbors"] < 1:
        raise PipelineError(f"the kNN graph needs at least 1 neighbour per image, not neighbors={params['neighbors']}")
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
    sums = np.zeros((count, X.shape[1]))
    for part in row_chunks(len(X)):
        rows = index[part]
        membership = csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(count, len(rows)))
        sums += membership @ np.asarray(X[part], dtype=np.float64)
    return sums / np.maximum(np.bincount(index, minlength=count), 1)[:, None]


def within_cluster_sum_of_squares(X: np.ndarray, labels: np.ndarray) -> float:
    """Inertia of any labeling: sum of squared distances to the cluster means."""
    return float(np.sum(centre_distances(X, labels) ** 2))
