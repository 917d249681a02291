"""The large-collection paths: embedding on Ray Data, faiss k-means, agglomerating k-means
centroids, and the t-SNE map fitted on a sample with the rest placed."""
from __future__ import annotations

import csv
import shutil
import sys
import tracemalloc

import numpy as np
import pytest
from conftest import BANANAS, BANANAS_MAPPING, cli
from sklearn.datasets import load_digits, make_blobs

from serieslabeler.clustering import (
    agglomerative_labels,
    fit_clusters,
    within_cluster_sum_of_squares,
)
from serieslabeler.embed import embed_workspace
from serieslabeler.errors import PipelineError
from serieslabeler.space import TSNEMapper, create_map
from serieslabeler.store import FeatureStore, Workspace

RAY_IMAGES = 24


# --- Ray ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs, 1 GB object store) for this module's Ray runs."""
    ray = pytest.importorskip("ray")
    from serieslabeler.embed import OBJECT_STORE_BYTES, ray_session

    with ray_session(ray, None, 2, OBJECT_STORE_BYTES):
        yield ray


@pytest.fixture(scope="module")
def small_collection(tmp_path_factory) -> Workspace:
    """A workspace of the first 24 bananas photos (in CSV order), ingested through the CLI."""
    folder = tmp_path_factory.mktemp("small")
    add_bananas_rows(folder / "ws", folder, 0, RAY_IMAGES)
    return folder / "ws"


def add_bananas_rows(workspace_path, folder, start: int, stop: int) -> None:
    """Ingest bananas rows ``start:stop`` (in CSV order) through the CLI (the workspace is made if new)."""
    images = folder / "images"
    images.mkdir(parents=True)
    with open(BANANAS / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[start:stop]
    for row in rows:
        shutil.copy(BANANAS / "images" / row["file"], images / row["file"])
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, data = cli("ingest", "--workspace", workspace_path, "--images", images, "--metadata", folder / "metadata.csv", *BANANAS_MAPPING)
    assert code == 0 and data["added"] == stop - start, data


@pytest.mark.slow
def test_ray_engine_gives_the_default_paths_features(local_ray, small_collection, tmp_path):
    with Workspace.open(small_collection) as template:
        template.copy_to(tmp_path / "default").close()
        template.copy_to(tmp_path / "ray").close()
    with Workspace.open(tmp_path / "default") as workspace:
        embed_workspace(workspace, "resnet18", weights="random")
        ids, expected = FeatureStore(workspace).load("resnet18@random")

    code, data = cli("embed", "--workspace", tmp_path / "ray", "--backbone", "resnet18", "--weights", "random", "--engine", "ray")
    assert code == 0, data
    assert (data["feature_set"], data["computed"], data["cached"]) == ("resnet18@random", RAY_IMAGES, 0)
    with Workspace.open(tmp_path / "ray") as workspace:
        ray_ids, vectors = FeatureStore(workspace).load("resnet18@random")
    # Same decoder, same batches of 32 in the same order, same forward code: identical in
    # practice; the tolerance only allows for CPU kernels that differ with the thread count.
    np.testing.assert_array_equal(ray_ids, ids)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-5)

    code, again = cli("embed", "--workspace", tmp_path / "ray", "--backbone", "resnet18", "--weights", "random", "--engine", "ray")
    assert code == 0 and (again["computed"], again["cached"]) == (0, RAY_IMAGES)


@pytest.mark.slow
def test_ray_engine_names_an_unreadable_image_and_keeps_the_others(local_ray, small_collection, tmp_path):
    from serieslabeler.embed import embed_with_ray

    with Workspace.open(small_collection) as template, template.copy_to(tmp_path / "ws") as workspace:
        ids = [r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id LIMIT 6")]
        broken = workspace.image_path(ids[2])
        broken.chmod(0o644)
        broken.write_bytes(b"not a jpeg")
        with pytest.raises(PipelineError, match=rf"1 image\(s\) could not be read, e.g. image {ids[2]} .*{broken.name}"):
            embed_with_ray(workspace, "resnet18", weights="random", image_ids=ids)
        assert sorted(FeatureStore(workspace).ids("resnet18@random")) == sorted(set(ids) - {ids[2]})


def test_ray_engine_without_ray_installed_says_how_to_install_it(monkeypatch):
    from serieslabeler.embed import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(PipelineError, match="requirements-scale.txt"):
        import_ray()


def test_ray_only_options_are_refused_on_the_local_engine(small_collection):
    code, data = cli("embed", "--workspace", small_collection, "--backbone", "resnet18", "--address", "auto")
    assert code == 2 and "--engine ray" in data["error"]


def test_actor_layout_follows_the_cluster():
    from serieslabeler.embed import actor_layout

    assert actor_layout(2, 0) == actor_layout(3, 0)
    assert (actor_layout(2, 0).actors, actor_layout(2, 0).cpus_per_actor, actor_layout(2, 0).device) == (1, 1, "cpu")
    assert (actor_layout(16, 0).actors, actor_layout(16, 0).cpus_per_actor) == (4, 2)
    gpu = actor_layout(32, 4)
    assert (gpu.actors, gpu.gpus_per_actor, gpu.device) == (4, 1, "cuda")
    assert actor_layout(32, 4, device="cpu").device == "cpu"
    with pytest.raises(PipelineError, match="no GPU"):
        actor_layout(8, 0, device="cuda")


# --- large-N clustering -------------------------------------------------------------------------
def test_faiss_kmeans_is_deterministic_and_as_good_as_scikit_learns():
    pytest.importorskip("faiss")
    X = load_digits().data.astype(np.float32)
    first, info = fit_clusters(X, "kmeans", 10, seed=0, faiss_threshold=0)
    second, _ = fit_clusters(X, "kmeans", 10, seed=0, faiss_threshold=0)
    reference, reference_info = fit_clusters(X, "kmeans", 10, seed=0)
    assert (info, reference_info) == ({"backend": "faiss"}, {"backend": "sklearn"})
    np.testing.assert_array_equal(first, second)
    ratio = within_cluster_sum_of_squares(X, first) / within_cluster_sum_of_squares(X, reference)
    assert ratio < 1.02, f"faiss inertia is {ratio:.3f} x scikit-learn's"


def test_agglomerating_kmeans_centroids_finds_the_groups_without_an_n_by_n_matrix():
    n = 20_000
    X, y = make_blobs(n_samples=n, centers=4, n_features=16, cluster_std=1.0, random_state=0)
    X = X.astype(np.float32)
    agglomerative_labels(X[:2000], 2, centroid_limit=100, micro_clusters=20)  # imports outside the measurement
    tracemalloc.start()
    labels, info = agglomerative_labels(X, 4, centroid_limit=5_000, micro_clusters=200)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info["connectivity"] == "centroids-200"
    condensed = n * (n - 1) // 2 * 8
    assert peak < condensed / 100, f"peak {peak / 1e6:.0f} MB; a dense run's matrix is {condensed / 1e6:.0f} MB"
    contingency = np.zeros((4, 4), int)
    np.add.at(contingency, (labels, y), 1)
    assert contingency.max(axis=1).sum() / n > 0.99, contingency


# --- the sampled t-SNE map ----------------------------------------------------------------------
def blobs_workspace(root, n: int) -> tuple[Workspace, np.ndarray]:
    """``n`` catalog images (no files) with 32-dim blob features; returns the blob of each."""
    X, y = make_blobs(n_samples=n, centers=5, n_features=32, cluster_std=1.0, random_state=1)
    workspace = Workspace.create(root)
    with workspace.transaction() as db:
        db.execute("INSERT INTO subjects(name) VALUES ('s1')")
        db.executemany(
            "INSERT INTO images(id, sha256, file_name, ext, width, height, subject_id, taken_at) VALUES (?,?,?,?,?,?,?,?)",
            ((i, f"{i:064x}", f"img{i}.jpg", ".jpg", 1, 1, 1, "2020-01-01T00:00:00") for i in range(1, n + 1)),
        )
    store = FeatureStore(workspace)
    store.register("blobs@synthetic", "blobs", "synthetic", X.shape[1])
    store.append("blobs@synthetic", np.arange(1, n + 1), X)
    return workspace, y


def test_map_of_5000_points_is_fitted_on_a_sample_and_places_the_rest(tmp_path):
    workspace, blob = blobs_workspace(tmp_path / "ws", 5_000)
    with workspace:
        saved = create_map(workspace, "blobs@synthetic", seed=0, n_jobs=1, max_fit=1_000)
    assert saved.params["fitted_on"] == 1_000 and len(saved.ids) == 5_000
    coords = saved.coords[np.argsort(saved.ids)]
    assert np.isfinite(coords).all()
    # 4,000 of the 5,000 were placed: each image must land in its own blob's region of the map
    centres = np.array([coords[blob == b].mean(axis=0) for b in range(5)])
    nearest = np.linalg.norm(coords[:, None, :] - centres[None], axis=2).argmin(axis=1)
    assert (nearest == blob).mean() > 0.98


def test_mapper_fits_everything_below_max_fit():
    X, _ = make_blobs(n_samples=300, centers=3, n_features=8, random_state=0)
    mapper = TSNEMapper(random_state=0, n_jobs=1, max_fit=1_000)
    assert mapper.fit_transform(X).shape == (300, 2)
    assert len(mapper.fit_index_) == 300
    with pytest.raises(PipelineError, match="--max-fit must be at least"):
        TSNEMapper(max_fit=2).fit(X)



@pytest.mark.slow
def test_predict_on_ray_computes_a_fine_tuned_networks_features_like_the_default_path(local_ray, small_collection, tmp_path):
    from serieslabeler.labels import label_images
    from serieslabeler.models import train_model

    base = tmp_path / "base"
    with Workspace.open(small_collection) as template, template.copy_to(base) as workspace:
        embed_workspace(workspace, "resnet18", weights="random")
        truth = workspace.db.execute("SELECT image_id, label FROM ground_truth ORDER BY image_id LIMIT 16").fetchall()
        for label in {row["label"] for row in truth}:
            label_images(workspace, [row["image_id"] for row in truth if row["label"] == label], label)
        model = train_model(workspace, "finetune", feature_set="resnet18@random", backbone="resnet18", weights="random", epochs=1, image_size=32, batch_size=16)
    add_bananas_rows(base, tmp_path / "more", RAY_IMAGES, RAY_IMAGES + 4)
    with Workspace.open(base) as workspace:
        workspace.copy_to(tmp_path / "local").close()
        workspace.copy_to(tmp_path / "ray").close()

    results = {}
    for engine in ("local", "ray"):
        code, data = cli("predict", "--workspace", tmp_path / engine, "--model", model.id, "--engine", engine)
        assert code == 0, data
        with Workspace.open(tmp_path / engine) as workspace:
            results[engine] = workspace.db.execute(
                "SELECT image_id, label, confidence FROM predictions WHERE model_id=? ORDER BY image_id", (model.id,)
            ).fetchall()
            assert FeatureStore(workspace).info(model.feature_set).count == RAY_IMAGES + 4
    assert len(results["ray"]) == RAY_IMAGES + 4 - 16
    assert [(r[0], r[1]) for r in results["ray"]] == [(r[0], r[1]) for r in results["local"]]
    np.testing.assert_allclose([r[2] for r in results["ray"]], [r[2] for r in results["local"]], atol=1e-5)


def test_predict_address_needs_the_ray_engine(small_collection):
    code, data = cli("predict", "--workspace", small_collection, "--address", "127.0.0.1:6379")
    assert code == 2 and "--address goes with --engine ray" in data["error"]
