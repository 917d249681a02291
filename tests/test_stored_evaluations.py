"""A model's out-of-fold probabilities and held-out evaluation, and a clustering's silhouette, are
computed when they are made and stored with them; pages read them and never train or rebuild a
feature matrix (proved by rendering the pages with the feature store removed)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import streamlit as st
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from serieslabeler.clustering import evaluate_clustering, run_clustering
from serieslabeler.labels import label_cluster, label_images
from serieslabeler.loop import ground_truth, validation_curves
from serieslabeler.models import (
    compute_oof,
    evaluate_model,
    load_model_record,
    load_oof,
    out_of_fold,
    predict,
    stored_evaluation,
    train_model,
)
from serieslabeler.models.evaluation import oof_path
from serieslabeler.store import Workspace

FEATURES = "efficientnet_lite0@imagenet"
TIMEOUT = 180


@pytest.fixture
def trained(bananas_clustered):
    """Clusters of clustering 1 labeled with each cluster's majority ground truth; model 1 trained
    on them (max_iter 300) and its predictions."""
    with Workspace.open(bananas_clustered) as workspace:
        ids, truth, _ = ground_truth(workspace)
        truth_of = dict(zip(ids.tolist(), truth.tolist()))
        members = workspace.db.execute("SELECT cluster, image_id FROM cluster_members WHERE clustering_id=1").fetchall()
        for cluster in (0, 1, 2, 3, 4):
            labels = [truth_of[i] for c, i in members if c == cluster]
            label_cluster(workspace, 1, cluster, max(set(labels), key=labels.count))
        model = train_model(workspace, "head", feature_set=FEATURES, max_iter=300)
        predict(workspace, model.id)
        yield workspace


def test_training_stores_the_out_of_fold_probabilities_and_the_evaluation(trained):
    record = load_model_record(trained, 1)
    for truth in ("labels", "ground_truth"):
        path = oof_path(trained, 1, truth, 0)
        assert path.is_file()
        stored = load_oof(path)
        fresh = compute_oof(trained, record, truth, 0)
        np.testing.assert_array_equal(stored.image_ids, fresh.image_ids)
        np.testing.assert_array_equal(stored.classes, fresh.classes)
        np.testing.assert_allclose(stored.proba, fresh.proba, atol=1e-9)
    labels_oof = load_oof(oof_path(trained, 1, "labels", 0))
    assert labels_oof.image_ids.tolist() == record.training_set
    assert stored_evaluation(trained, 1) == evaluate_model(trained, 1).to_dict()
    assert trained.db.execute("SELECT COUNT(*) FROM model_evaluations WHERE model_id=1").fetchone()[0] == 1


def test_a_label_event_leaves_the_stored_curves_alone(trained):
    before = validation_curves(trained, 1, truth="labels").to_dict()
    evaluation = stored_evaluation(trained, 1)
    unlabeled = trained.db.execute("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM current_labels) LIMIT 30").fetchall()
    label_images(trained, [r[0] for r in unlabeled], "O")
    assert validation_curves(trained, 1, truth="labels").to_dict() == before
    assert stored_evaluation(trained, 1) == evaluation
    # what the curves would be on today's labels differs: the stored ones are the model's own
    assert len(compute_oof(trained, load_model_record(trained, 1), "labels", 0).image_ids) == before["images"] + len(unlabeled)


def test_an_older_model_gets_its_evaluations_once_then_reads_them(trained):
    path = oof_path(trained, 1, "labels", 0)
    expected = load_oof(path)
    path.unlink()
    trained.db.execute("DELETE FROM model_evaluations")
    trained.db.commit()
    again = out_of_fold(trained, 1, "labels", 0)
    np.testing.assert_allclose(again.proba, expected.proba, atol=1e-9)
    assert path.is_file()
    stored_evaluation(trained, 1)
    assert trained.db.execute("SELECT COUNT(*) FROM model_evaluations WHERE model_id=1").fetchone()[0] == 1


def test_a_clustering_stores_its_silhouette_and_sizes_when_saved(trained):
    clustering = run_clustering(trained, FEATURES, "kmeans", 5, seed=0)
    row = trained.db.execute("SELECT images, sizes, evaluation FROM clusterings WHERE id=?", (clustering.id,)).fetchone()
    assert row["images"] == 220
    assert sum(json.loads(row["sizes"]).values()) == 220
    assert row["evaluation"] is not None
    trained.db.execute("UPDATE clusterings SET evaluation=NULL WHERE id=?", (clustering.id,))
    trained.db.commit()
    recomputed = evaluate_clustering(trained, clustering.id).silhouette
    assert recomputed == pytest.approx(json.loads(row["evaluation"])["silhouette"])


def page_output(app: AppTest) -> dict:
    assert not app.exception, [e.message for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    return {
        "metrics": [(m.label, m.value) for m in app.metric],
        "markdown": [m.value for m in app.markdown],
        "captions": [c.value for c in app.caption],
    }


def render(root, page: str) -> dict:
    app = AppTest.from_file(str(ROOT / "dashboard" / "app_pages" / f"{page}.py"), default_timeout=TIMEOUT)
    app.query_params["ws"] = str(root)
    return page_output(app.run())


@pytest.mark.parametrize("page", ["train", "metrics", "cluster"])
def test_pages_read_stored_evaluations_without_features(trained, page, monkeypatch):
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    monkeypatch.setenv("LABELER_ROOT", str(trained.root.parent))
    root = trained.root
    with_features = render(root, page)
    assert with_features["metrics"], "the page shows its scores"
    shutil.rmtree(root / "features")
    st.cache_data.clear()
    assert render(root, page) == with_features
