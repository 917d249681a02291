"""Clustering: algorithms on arrays, memory bound of agglomerative, saved clusterings on real bananas
features, split / merge / link, and the command line."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import cli
from sklearn.datasets import load_digits

from serieslabeler.clustering import (
    agglomerative_labels,
    centre_distances,
    elbow,
    evaluate_clustering,
    fit_clusters,
    knn_connectivity,
    link_across_days,
    load_clustering,
    merge_clusters,
    number_by_size,
    overcluster_k,
    run_clustering,
    space_matrix,
    split_cluster,
    suggest_k,
)
from serieslabeler.clustering.linking import _nearest_links
from serieslabeler.errors import PipelineError
from serieslabeler.sampling import draw_sample
from serieslabeler.store import Workspace

FEATURES = "efficientnet_lite0@imagenet"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:300].astype(np.float32), y[:300]


@pytest.fixture
def workspace(bananas_embedded):
    with Workspace.open(bananas_embedded) as ws:
        yield ws


# --- arrays -----------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["kmeans", "agglomerative", "spectral"])
def test_algorithms_are_deterministic_and_number_clusters_by_size(digits, algorithm):
    X, y = digits
    first, _ = fit_clusters(X, algorithm, 10, seed=3)
    second, _ = fit_clusters(X, algorithm, 10, seed=3)
    assert np.array_equal(first, second)
    sizes = np.bincount(first)
    assert len(sizes) == 10 and np.all(np.diff(sizes) <= 0), "cluster 0 is the largest"
    from serieslabeler.metrics import purity

    assert purity(y, first) > 0.6, "digits cluster well in pixel space"


def test_bad_k_and_options_are_refused(digits):
    X, _ = digits
    with pytest.raises(PipelineError, match="k must be between 1 and 300"):
        fit_clusters(X, "kmeans", 301)
    with pytest.raises(PipelineError, match="unknown clustering algorithm"):
        fit_clusters(X, "dbscan", 3)
    with pytest.raises(PipelineError, match="does not take option.*linkage"):
        fit_clusters(X, "kmeans", 3, linkage="ward")
    with pytest.raises(PipelineError, match="unknown linkage"):
        fit_clusters(X, "agglomerative", 3, linkage="centroid")


def test_number_by_size_and_centre_distances():
    assert number_by_size(np.array([7, 3, 3, 7, 3, 9])).tolist() == [1, 0, 0, 1, 0, 2]
    X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    np.testing.assert_allclose(centre_distances(X, np.array([0, 0, 1])), [1.0, 1.0, 0.0])
    assert elbow([1, 2, 3, 4, 5], [100.0, 30.0, 20.0, 15.0, 12.0]) == 2


def test_agglomerative_switches_to_a_knn_graph_above_the_limit_without_an_n_by_n_matrix():
    rng = np.random.default_rng(0)
    n = 3000
    X = (rng.normal(size=(n, 4)) + 20 * rng.integers(0, 4, size=(n, 1))).astype(np.float32)
    dense_bytes = n * (n - 1) // 2 * 8  # the condensed distance matrix a dense run would allocate
    agglomerative_labels(X[:50], 2, dense_limit=10, neighbors=5)  # imports happen outside the measurement
    tracemalloc.start()
    labels, info = agglomerative_labels(X, 4, linkage="ward", dense_limit=1000, neighbors=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info["connectivity"] == "knn-5"
    assert peak < dense_bytes / 4, f"peak {peak / 1e6:.0f} MB; the dense matrix is {dense_bytes / 1e6:.0f} MB"
    assert len(np.unique(labels)) == 4
    small, info = agglomerative_labels(X[:500], 4, dense_limit=1000)
    assert info["connectivity"] == "none" and len(np.unique(small)) == 4


def test_knn_connectivity_joins_separate_groups():
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(30, 2)) + offset for offset in (0, 100, 200, 1000)])
    graph = knn_connectivity(X, neighbors=3)
    assert connected_components(graph, directed=False)[0] == 1
    assert graph.nnz <= 30 * 4 * 3 + 2 * 4


# --- saved clusterings on bananas -------------------------------------------------------------
def test_run_clustering_saves_members_distances_and_params(workspace):
    clustering = run_clustering(workspace, "efficientnet_lite0", "kmeans", 4, metadata={"days": 0.3}, seed=1)
    saved = load_clustering(workspace, clustering.id)
    assert saved.feature_set == FEATURES and saved.k == 4 and saved.space == "full"
    assert saved.params["metadata"] == {"days": 0.3} and saved.params["seed"] == 1 and saved.params["backend"] == "sklearn"
    assert len(saved.image_ids) == 220 and sum(saved.sizes().values()) == 220
    X = space_matrix(workspace, saved)
    np.testing.assert_allclose(saved.distances, centre_distances(X, saved.clusters), rtol=1e-5, atol=1e-6)
    atypical_first = saved.members(0)
    distances = dict(zip(saved.image_ids, saved.distances))
    assert [distances[i] for i in atypical_first] == sorted(distances[i] for i in atypical_first)[::-1]
    again = run_clustering(workspace, FEATURES, "kmeans", 4, metadata={"days": 0.3}, seed=1)
    assert again.id != saved.id and np.array_equal(again.clusters, saved.clusters)
    scores = evaluate_clustering(workspace, saved.id)
    # measured: purity 0.73, adjusted Rand 0.34, silhouette 0.22 (4 stages: a label-blind purity is about 0.25)
    assert scores.evaluated == 220 and scores.purity > 0.6 and scores.adjusted_rand > 0.2 and 0.1 < scores.silhouette < 0.5
    assert sum(p.size for p in scores.per_cluster) == 220
    assert scores.purity == pytest.approx(sum(p.size * p.purity for p in scores.per_cluster) / 220)


def test_sample_pca_and_tsne_spaces(workspace):
    sample = draw_sample(workspace, "subjects", subjects=3, seed=0)
    on_pca = run_clustering(workspace, FEATURES, "agglomerative", 3, space="pca", n_components=5, sample_id=sample.id, linkage="average")
    assert np.array_equal(on_pca.image_ids, sample.image_ids) and on_pca.sample_id == sample.id
    assert space_matrix(workspace, on_pca).shape == (60, 5)
    with pytest.raises(PipelineError, match="no t-SNE map"):
        run_clustering(workspace, FEATURES, "kmeans", 3, space="tsne")
    from serieslabeler.space import save_map

    corners = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])[np.arange(60) % 3]
    saved_map = save_map(workspace, FEATURES, sample.image_ids, corners + np.random.default_rng(0).normal(size=(60, 2)), {})
    on_map = run_clustering(workspace, FEATURES, "kmeans", 3, space="tsne", sample_id=sample.id)
    assert on_map.params["map_id"] == saved_map.id and space_matrix(workspace, on_map).shape == (60, 2)
    assert sorted(on_map.sizes().values()) == [20, 20, 20], "the map's three groups"
    all_ids = [r[0] for r in workspace.db.execute("SELECT id FROM images")]
    with pytest.raises(PipelineError, match="does not hold 160 of the 220"):
        run_clustering(workspace, FEATURES, "kmeans", 3, space="tsne", image_ids=all_ids)


def test_split_and_merge_keep_every_image_in_exactly_one_cluster(workspace):
    parent = run_clustering(workspace, FEATURES, "kmeans", 4, seed=0)
    child = split_cluster(workspace, parent.id, 0, seed=0)
    assert child.parent_id == parent.id and child.k == 5
    assert np.array_equal(child.image_ids, parent.image_ids)
    was_zero = parent.clusters == 0
    assert set(child.clusters[was_zero]) == {0, 4} and np.array_equal(child.clusters[~was_zero], parent.clusters[~was_zero])
    assert (child.clusters[was_zero] == 0).sum() >= (child.clusters[was_zero] == 4).sum()
    merged = merge_clusters(workspace, child.id, [4, 1, 2])
    assert merged.parent_id == child.id and merged.k == 3 and merged.params["merge"] == {"clusters": [1, 2, 4], "into": 1}
    assert np.array_equal(merged.image_ids, parent.image_ids)
    assert np.array_equal(merged.clusters == 1, np.isin(child.clusters, [1, 2, 4]))
    rows = workspace.db.execute("SELECT image_id, COUNT(*) FROM cluster_members WHERE clustering_id=? GROUP BY image_id", (merged.id,)).fetchall()
    assert len(rows) == 220 and {r[1] for r in rows} == {1}
    with pytest.raises(PipelineError, match="has no cluster 9"):
        merge_clusters(workspace, parent.id, [0, 9])
    with pytest.raises(PipelineError, match="at least two"):
        merge_clusters(workspace, parent.id, [1, 1])


def test_link_across_days_follows_each_subject(workspace):
    clustering = run_clustering(workspace, FEATURES, "kmeans", 4, seed=0)
    links = link_across_days(workspace, clustering.id)
    # one image per fruit per day: 20 days, so 19 links per fruit, each trivially mutual
    assert len(links) == 11 * 19
    assert {(l.subject, l.day) for l in links if l.subject == "11"} and all(l.day < l.next_day for l in links)
    by_image = dict(zip(clustering.image_ids, clustering.clusters))
    first = workspace.db.execute(
        "SELECT i.id FROM images i JOIN subjects s ON s.id = i.subject_id WHERE s.name = '11' ORDER BY taken_at LIMIT 1"
    ).fetchone()[0]
    assert links[0].subject == "11" and links[0].cluster == by_image[first]


def test_links_join_mutual_nearest_centroids():
    """Day t has clusters 0 and 1, day t+1 clusters 2 and 3: 0 and 1 are both nearest to 2."""
    before = {0: np.array([0.0, 0.0]), 1: np.array([3.0, 0.0])}
    after = {2: np.array([1.0, 0.0]), 3: np.array([10.0, 0.0])}
    mutual = _nearest_links("s", "d1", "d2", before, after, mutual=True)
    assert [(l.cluster, l.next_cluster, l.distance) for l in mutual] == [(0, 2, 1.0)]
    nearest = _nearest_links("s", "d1", "d2", before, after, mutual=False)
    assert [(l.cluster, l.next_cluster) for l in nearest] == [(0, 2), (1, 2)]


def test_suggest_k_and_overclustering(workspace):
    suggestion = suggest_k(workspace, FEATURES, range(2, 6), seed=0, metadata={"days": 0.3})
    assert suggestion.ks == [2, 3, 4, 5] and len(suggestion.inertia) == 4
    assert all(a > b for a, b in zip(suggestion.inertia, suggestion.inertia[1:])), "inertia falls as k grows"
    assert suggestion.silhouette_k in suggestion.ks and suggestion.elbow_k in suggestion.ks
    assert overcluster_k(workspace, 3) == 12  # four ripeness classes in the ground truth
    workspace.db.execute("DELETE FROM ground_truth")
    with pytest.raises(PipelineError, match="number of classes"):
        overcluster_k(workspace, 3)


def test_cli_round_trip(bananas_embedded):
    ws = str(bananas_embedded)
    code, sample = cli("sample", "--workspace", ws, "--strategy", "subjects", "--subjects", "4")
    assert code == 0
    code, data = cli(
        "cluster", "--workspace", ws, "--features", "efficientnet_lite0", "--metadata", "days=0.2,group=0.1",
        "--algorithm", "agglomerative", "--k", "4", "--sample", sample["id"], "--linkage", "ward",
    )
    assert code == 0 and data["images"] == 80 and data["k"] == 4 and sum(data["sizes"].values()) == 80
    metrics = data["metrics"]  # measured: purity 0.66, adjusted Rand 0.25
    assert metrics["evaluated"] == 80 and metrics["purity"] > 0.5 and metrics["adjusted_rand"] > 0.15
    assert metrics["purity"] == pytest.approx(sum(c["size"] * c["purity"] for c in metrics["per_cluster"]) / 80)
    assert {"hungarian_accuracy", "adjusted_rand", "nmi", "silhouette"} <= set(data["metrics"])
    clustering = data["clustering_id"]
    code, split = cli("split", "--workspace", ws, "--clustering", clustering, "--cluster", "0")
    assert code == 0 and split["parent_id"] == clustering and split["k"] == 5
    code, merged = cli("merge", "--workspace", ws, "--clustering", split["id"], "--clusters", "3,4")
    assert code == 0 and merged["k"] == 4
    code, linked = cli("link", "--workspace", ws, "--clustering", clustering)
    assert code == 0 and len(linked["links"]) == 4 * 19
    code, listing = cli("clusterings", "--workspace", ws)
    assert [c["id"] for c in listing["clusterings"]] == [merged["id"], split["id"], clustering]
    code, suggestion = cli("suggest-k", "--workspace", ws, "--features", "efficientnet_lite0", "--k-min", "2", "--k-max", "4")
    assert code == 0 and [r["k"] for r in suggestion["rows"]] == [2, 3, 4]
    code, over = cli("cluster", "--workspace", ws, "--features", "efficientnet_lite0", "--algorithm", "kmeans", "--overcluster", "2")
    assert code == 0 and over["k"] == 8
    code, error = cli("cluster", "--workspace", ws, "--features", "efficientnet_lite0", "--algorithm", "kmeans", "--k", "3", "--metadata", "nope=0.2")
    assert code == 2 and "unknown metadata field 'nope'" in error["error"]
    for algorithm in ("spectral", "agglomerative"):
        code, error = cli("cluster", "--workspace", ws, "--features", "efficientnet_lite0", "--algorithm", algorithm, "--k", "3", "--neighbors", "0")
        assert code == 2 and "at least 1 neighbour" in error["error"], algorithm
    code, error = cli("split", "--workspace", ws, "--clustering", "999", "--cluster", "0")
    assert code == 2 and "no clustering 999" in error["error"]


@pytest.mark.parametrize("command", ["cluster", "suggest-k"])
@pytest.mark.parametrize("components", ["0", "-2"])
def test_cli_refuses_fewer_than_one_pca_component(bananas_embedded, command, components):
    code, data = cli(command, "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--algorithm", "kmeans",
                     *(["--k", "3"] if command == "cluster" else []), "--on", "pca", "--components", components)
    assert code == 2 and data["error"] == f"--components must be at least 1, not {components}"


def test_suggest_k_tries_only_the_ks_a_small_sample_can_hold(workspace):
    """The app's elbow chart asks for k up to 15; a sample of 6 images gets k = 2..5."""
    ids = workspace.db.execute("SELECT id FROM images ORDER BY id LIMIT 6").fetchall()
    suggestion = suggest_k(workspace, FEATURES, range(2, 16), image_ids=[i for (i,) in ids])
    assert suggestion.ks == [2, 3, 4, 5] and len(suggestion.silhouette) == 4
    with pytest.raises(PipelineError, match="no k to try"):
        suggest_k(workspace, FEATURES, range(3, 16), image_ids=[i for (i,) in ids[:3]])
