"""The labels' support: distances across subjects, the radius, and routing that holds back images unlike every label."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cli

from serieslabeler.errors import PipelineError
from serieslabeler.labels import label_images
from serieslabeler.loop import LabelSupport, route_predictions
from serieslabeler.metrics.shift import nearest_other_subject_distance
from serieslabeler.models import predict, train_model
from serieslabeler.store import FeatureStore, Workspace


def test_the_nearest_row_of_another_group_matches_brute_force():
    rng = np.random.default_rng(0)
    X, groups = rng.normal(size=(300, 5)), rng.integers(0, 4, size=300)
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    D[groups[:, None] == groups[None]] = np.inf
    np.testing.assert_allclose(nearest_other_subject_distance(X, groups, X, groups), D.min(axis=1), rtol=1e-5)
    assert np.isinf(nearest_other_subject_distance(X[:3], np.zeros(3), X[:3], np.zeros(3))).all()


def test_the_radius_is_the_quantile_of_the_labels_reach_across_subjects():
    rng = np.random.default_rng(1)
    X, groups = rng.normal(size=(200, 3)), np.repeat(np.arange(10), 20)
    support = LabelSupport(quantile=0.8).fit(X, groups)
    assert support.radius_ == pytest.approx(np.quantile(nearest_other_subject_distance(X, groups, X, groups), 0.8), rel=1e-5)
    inside = support.inside(np.vstack([X[:5], X[:1] + 100.0]))
    assert inside.tolist() == [True] * 5 + [False]
    np.testing.assert_allclose(support.distance(X[:5]), 0.0, atol=1e-3)


def test_the_reference_is_a_seeded_sample_and_one_subject_gives_no_bound():
    rng = np.random.default_rng(2)
    X, groups = rng.normal(size=(500, 2)), rng.integers(0, 5, size=500)
    first = LabelSupport(max_reference=50, random_state=3).fit(X, groups)
    again = LabelSupport(max_reference=50, random_state=3).fit(X, groups)
    assert first.reference_.shape == (50, 2) and np.array_equal(first.reference_, again.reference_)
    alone = LabelSupport().fit(X, np.zeros(500))
    assert alone.radius_ == np.inf and alone.inside(X + 1000.0).all()
    wide = rng.normal(size=(100, 64)) * np.r_[np.full(8, 10.0), np.ones(56)]
    projected = LabelSupport().fit(wide, np.arange(100) % 5)
    assert projected.reference_.shape == (100, 32)  # distances on the first 32 principal axes
    assert projected.inside(wide[:10]).all() and not projected.inside(wide[:1] * 50).any()
    with pytest.raises(PipelineError, match=r"support quantile must be in \(0, 1\], not 1.5"):
        LabelSupport(quantile=1.5).fit(X, groups)


def toy_features(workspace: Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D vectors: the images of four subjects labeled A (around x=0) or B (around x=10);
    the other images near them, except ten far above the B side. Returns (labeled, far, labels)."""
    rows = workspace.db.execute("SELECT id, subject_id FROM images ORDER BY id").fetchall()
    ids, subjects = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    rng = np.random.default_rng(0)
    side = rng.integers(0, 2, size=len(ids))
    vectors = np.c_[side * 10.0, np.zeros(len(ids))] + rng.normal(scale=0.5, size=(len(ids), 2))
    labeled = np.isin(subjects, np.unique(subjects)[:4])
    far = np.flatnonzero(~labeled)[:10]
    vectors[far] = [12.0, 60.0]
    vectors[far] += rng.normal(scale=0.5, size=(len(far), 2))
    store = FeatureStore(workspace)
    store.register("toy@support", "toy", "support", dim=2)
    store.append("toy@support", ids, vectors)
    return ids[labeled], ids[far], np.where(side[labeled] == 1, "B", "A")


def test_route_holds_back_confident_predictions_unlike_every_label(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        labeled, far, labels = toy_features(workspace)
        for label in ("A", "B"):
            label_images(workspace, labeled[labels == label], label)
        model = train_model(workspace, "head", feature_set="toy@support", seed=0)
        predict(workspace, model.id)
        routing = route_predictions(workspace, model.id, 0.6)
        outside = set(routing.outside_support.tolist())
        assert set(far.tolist()) <= outside
        assert len(outside) - len(far) < 0.2 * len(routing.pseudo_ids)  # at the 0.9 quantile, about 1 in 10 typical images
        assert not np.isin(far, routing.pseudo_ids).any() and np.isin(far, routing.to_cluster_ids).all()
        assert len(routing.pseudo_ids) > 100
        assert routing.summary()["outside_support"] == len(outside) and routing.summary()["support_quantile"] == 0.9
        unchecked = route_predictions(workspace, model.id, 0.6, support=None)
        assert np.isin(far, unchecked.pseudo_ids).all() and unchecked.summary()["outside_support"] == 0
    code, data = cli("route", "--workspace", bananas_workspace, "--threshold", "0.6", "--support-quantile", "0")
    assert code == 2 and "the support quantile must be in (0, 1], not 0.0" in data["error"]
