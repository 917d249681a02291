"""PCA + openTSNE maps: placing new points, saving and loading maps, the ``map`` command."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cli
from sklearn.datasets import load_digits

from serieslabeler.errors import PipelineError
from serieslabeler.space import (
    TSNEMapper,
    create_map,
    fit_pca,
    latest_map,
    list_maps,
    load_map,
    place_images,
)
from serieslabeler.store import Workspace

LITE0 = "efficientnet_lite0@imagenet"


def nearest_labels(coords: np.ndarray, labels: np.ndarray, points: np.ndarray, k: int = 10) -> np.ndarray:
    """The majority label among the ``k`` nearest map points of each of ``points``."""
    distances = np.linalg.norm(points[:, None, :] - coords[None, :, :], axis=-1)
    nearest = labels[np.argsort(distances, axis=1)[:, :k]]
    return np.array([np.bincount(row).argmax() for row in nearest])


def test_transform_places_held_out_digits_into_their_cluster():
    X, y = load_digits(return_X_y=True)
    clear = np.isin(y, (0, 1, 4, 6, 7))  # digits that form separate clusters
    X, y = X[clear], y[clear]
    order = np.random.default_rng(0).permutation(len(X))
    held_out, fit = order[:50], order[50:]
    mapper = TSNEMapper(perplexity=30, random_state=0, n_jobs=1)
    coords = mapper.fit_transform(X[fit])
    placed = mapper.transform(X[held_out])
    assert coords.shape == (len(fit), 2) and placed.shape == (50, 2)
    agreement = (nearest_labels(coords, y[fit], placed) == y[held_out]).mean()
    assert agreement >= 0.9, agreement
    assert mapper.pca_.n_components_ == 50 and mapper.negative_gradient_method_ == "bh"


def test_pca_never_asks_for_more_components_than_the_data_has():
    X = np.random.default_rng(0).normal(size=(12, 8))
    assert fit_pca(X, 50).n_components_ == 8
    assert fit_pca(X[:5], 50).n_components_ == 5


def test_small_inputs_lower_the_perplexity_and_tiny_ones_are_refused():
    X = np.random.default_rng(0).normal(size=(40, 6))
    mapper = TSNEMapper(perplexity=30, random_state=0, n_jobs=1)
    assert mapper.fit_transform(X).shape == (40, 2) and mapper.perplexity_ == 13.0
    with pytest.raises(PipelineError, match="at least 5 images"):
        TSNEMapper(n_jobs=1).fit(X[:3])


@pytest.fixture(scope="module")
def mapped(bananas_embedded_template, tmp_path_factory):
    """A copy of the embedded bananas with one map of all but 10 images (days at 0.2)."""
    target = tmp_path_factory.mktemp("mapped") / "ws"
    with Workspace.open(bananas_embedded_template) as template:
        workspace = template.copy_to(target)
    held_out = np.arange(5, 221, 22)
    kept = np.setdiff1d(np.arange(1, 221), held_out)
    saved = create_map(workspace, "efficientnet_lite0", metadata={"days": 0.2}, image_ids=kept, seed=3, n_jobs=1)
    yield workspace, saved, held_out
    workspace.close()


def test_saved_map_loads_back_with_its_parameters(mapped):
    workspace, saved, held_out = mapped
    loaded = load_map(workspace, saved.id)
    assert loaded.feature_set == LITE0 and len(loaded.ids) == 210 and not np.isin(held_out, loaded.ids).any()
    np.testing.assert_array_equal(loaded.coords, saved.coords)
    assert loaded.coords.shape == (210, 2) and np.isfinite(loaded.coords).all()
    assert loaded.params["metadata"] == {"days": 0.2} and loaded.params["seed"] == 3
    assert latest_map(workspace, "efficientnet_lite0").id == saved.id
    assert [m["id"] for m in list_maps(workspace)] == [saved.id]
    with pytest.raises(PipelineError, match=f"no map 99 .*maps: {saved.id}"):
        load_map(workspace, 99)


def test_placing_held_out_bananas_lands_near_their_own_fruit_and_day(mapped):
    """With days appended, a held-out photo belongs between its fruit's neighbouring days."""
    workspace, saved, held_out = mapped
    placed = place_images(workspace, saved.id, held_out)
    subjects = dict(workspace.db.execute("SELECT id, subject_id FROM images").fetchall())
    map_subjects = np.array([subjects[int(i)] for i in saved.ids])
    same = nearest_labels(saved.coords, map_subjects, placed, k=5) == np.array([subjects[int(i)] for i in held_out])
    spread = np.linalg.norm(saved.coords - saved.coords.mean(0), axis=1).mean()
    own_neighbours = [saved.coords[np.isin(saved.ids, [i - 1, i + 1])].mean(0) for i in held_out]
    distance = np.linalg.norm(placed - np.array(own_neighbours), axis=1)
    assert np.median(distance) < 0.5 * spread, (distance, spread)
    assert placed.shape == (10, 2) and same.mean() >= 0.5, same


def test_map_command_prints_the_map_id(mapped):
    workspace, saved, _ = mapped
    code, data = cli("map", "--workspace", workspace.root, "--features", "efficientnet_lite0", "--perplexity", "20", "--jobs", "1")
    assert code == 0 and data["map_id"] == saved.id + 1 and data["n"] == 220
    assert data["params"]["perplexity"] == 20.0 and data["feature_set"] == LITE0
    code, data = cli("map", "--workspace", workspace.root, "--features", "efficientnet_lite0", "--metadata", "dya=0.2")
    assert code == 2 and "unknown metadata field 'dya'" in data["error"]


def test_map_of_a_sample_holds_only_its_images(mapped):
    from serieslabeler.sampling import draw_sample

    workspace, _, _ = mapped
    sample = draw_sample(workspace, "subjects", subjects=2, seed=0)
    code, data = cli("map", "--workspace", workspace.root, "--features", LITE0, "--sample", sample.id,
                     "--metadata", "days=0.3,group=0.1", "--jobs", "1")
    assert code == 0 and data["n"] == 40 and data["params"]["sample_id"] == sample.id
    assert sorted(load_map(workspace, data["map_id"]).ids.tolist()) == sorted(sample.image_ids.tolist())


@pytest.mark.parametrize("max_fit", ["-1", "2"])
def test_map_refuses_a_max_fit_other_than_0_or_at_least_the_smallest_map(bananas_embedded, max_fit):
    code, data = cli("map", "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--max-fit", max_fit)
    assert code == 2 and data["error"] == f"--max-fit must be 0 (fit all images) or at least 5 images, not {max_fit}"
