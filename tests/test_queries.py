"""The catalog's read queries (details, cluster status, clusterings, ground truth, suggestions,
models, calibrated predictions, pending labels) give the same answers as plain whole-table
computations, on a bananas workspace with labels of every kind."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from serieslabeler import views
from serieslabeler.clustering import (
    evaluate_clustering,
    ground_truth,
    list_clusterings,
    load_clustering,
    split_cluster,
)
from serieslabeler.labels import (
    add_pseudo_labels,
    cluster_members,
    cluster_status,
    current_labels,
    label_cluster,
    label_images,
    pending_labels,
    skip_cluster,
    undo,
)
from serieslabeler.loop import (
    Suggestion,
    calibrated_proba,
    changes_confidences,
    confidences_version,
    load_calibration,
    model_confidences,
    save_calibration,
    suggested_label,
    unlabeled_confidences,
    validation_curves,
)
from serieslabeler.metrics import Calibrator
from serieslabeler.models import (
    list_models,
    load_model_record,
    load_predictions,
    predict,
    train_model,
    unlabeled_image_ids,
)
from serieslabeler.sampling import latest_predicting_model
from serieslabeler.store import Workspace


@pytest.fixture
def labeled(bananas_clustered):
    """Clustering 1 (k=8) and its split child 2; clusters labeled, skipped, an undo, manual labels,
    a model with predictions for the unlabeled images."""
    with Workspace.open(bananas_clustered) as workspace:
        label_cluster(workspace, 1, 0, "U", excluded=cluster_members(workspace, 1, 0)[0][:2])
        label_cluster(workspace, 1, 1, "R")
        label_cluster(workspace, 1, 2, "V")
        undo(workspace)
        skip_cluster(workspace, 1, 3)
        label_images(workspace, [5, 6, 7], "O")
        model = train_model(workspace, "head", max_iter=300)
        predict(workspace, model.id)
        split_cluster(workspace, 1, 4)
        yield workspace


def whole_table(workspace, sql: str) -> pd.DataFrame:
    return pd.read_sql_query(sql, workspace.db)


def expected_details(workspace, ids: list[int], clustering_id: int) -> pd.DataFrame:
    """image_details recomputed from whole tables (the behaviour before the queries were narrowed)."""
    images = whole_table(
        workspace,
        "SELECT i.id AS image_id, i.file_name AS file, s.name AS subject, i.taken_at FROM images i JOIN subjects s ON s.id = i.subject_id",
    ).set_index("image_id")
    labels = whole_table(workspace, "SELECT image_id, label, source, confidence, status FROM current_labels").set_index("image_id")
    members = whole_table(workspace, f"SELECT image_id, cluster FROM cluster_members WHERE clustering_id={clustering_id}").set_index("image_id")
    model = workspace.db.execute("SELECT MAX(model_id) FROM predictions").fetchone()[0]
    predictions = whole_table(workspace, f"SELECT image_id, label AS predicted, confidence AS prediction_confidence FROM predictions WHERE model_id={model}").set_index("image_id")
    truth = whole_table(workspace, "SELECT image_id, label AS truth FROM ground_truth").set_index("image_id")
    frame = images.reindex(ids).join(labels, how="left")
    frame["cluster"] = members["cluster"].reindex(frame.index).astype("Int64")
    frame = frame.join(predictions, how="left").join(truth, how="left")
    return frame.reset_index()


@pytest.mark.parametrize("clustering_id", [1, 2])
def test_image_details_match_whole_table_joins(labeled, clustering_id):
    ids = [200, 3, 5, 17, 42, 6, 150, 99, 7, 1]
    details = views.image_details(labeled, ids, clustering_id)
    expected = expected_details(labeled, ids, clustering_id)
    columns = ["image_id", "file", "subject", "taken_at", "label", "source", "confidence", "status", "cluster", "predicted", "prediction_confidence", "truth"]
    assert details["image_id"].tolist() == ids
    pd.testing.assert_frame_equal(details[columns], expected[columns], check_dtype=False)
    assert details["days"].notna().all()


def test_image_details_default_to_the_latest_clustering(labeled):
    ids = [1, 2, 3]
    assert views.image_details(labeled, ids)["cluster"].tolist() == views.image_details(labeled, ids, 2)["cluster"].tolist()


def expected_status(workspace, clustering_id: int) -> list[dict]:
    members = whole_table(workspace, f"SELECT image_id, cluster FROM cluster_members WHERE clustering_id={clustering_id}")
    accepted = whole_table(workspace, "SELECT image_id, label FROM current_labels WHERE status='accepted'")
    joined = members.merge(accepted, on="image_id", how="left")
    events = whole_table(workspace, f"SELECT id, action, cluster, reverses FROM label_events WHERE clustering_id={clustering_id} ORDER BY id")
    undone = set(whole_table(workspace, "SELECT reverses FROM label_events WHERE action='undo'")["reverses"].dropna().astype(int))
    states = {}
    for event in events.itertuples():
        if event.action in ("label_cluster", "skip") and event.id not in undone:
            states[event.cluster] = "labeled" if event.action == "label_cluster" else "skipped"
    out = []
    for cluster, group in joined.groupby("cluster"):
        counts = group["label"].dropna().value_counts()
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append({
            "cluster": int(cluster), "size": len(group), "labeled": int(group["label"].notna().sum()),
            "top_label": top[0][0] if top else None, "top_count": int(top[0][1]) if top else 0,
            "state": states.get(cluster, "open"),
        })
    return out


@pytest.mark.parametrize("clustering_id", [1, 2])
def test_cluster_status_matches_whole_table_counts(labeled, clustering_id):
    status = cluster_status(labeled, clustering_id)
    assert status == expected_status(labeled, clustering_id)
    assert {s["state"] for s in cluster_status(labeled, 1)} == {"labeled", "skipped", "open"}


def test_list_clusterings_counts_members(labeled):
    listed = list_clusterings(labeled)
    assert [c["id"] for c in listed] == [2, 1]
    for entry in listed:
        clustering = load_clustering(labeled, entry["id"])
        assert entry["images"] == len(clustering.image_ids) == 220
        assert entry["k"] == len(clustering.sizes())
        assert entry["params"] == json.loads(labeled.db.execute("SELECT params FROM clusterings WHERE id=?", (entry["id"],)).fetchone()[0])
        assert {"feature_set", "algorithm", "space", "sample_id", "parent_id", "created_at"} <= set(entry)


def test_ground_truth_lookup_matches_the_table(labeled):
    truth = whole_table(labeled, "SELECT image_id, label FROM ground_truth").set_index("image_id")["label"].to_dict()
    wanted = [3, 1000, 219, 8, 4]
    assert ground_truth(labeled, wanted) == {i: truth[i] for i in wanted if i in truth}
    assert ground_truth(labeled, list(range(1, 221))) == truth


def test_clustering_evaluation_purity_per_cluster(labeled):
    evaluation = evaluate_clustering(labeled, 1)
    members = whole_table(labeled, "SELECT m.cluster, g.label FROM cluster_members m JOIN ground_truth g ON g.image_id = m.image_id WHERE m.clustering_id=1")
    majority = members.groupby("cluster")["label"].agg(lambda s: s.value_counts().max()).sum()
    assert evaluation.evaluated == len(members) == 220
    assert evaluation.purity == pytest.approx(majority / len(members))
    assert evaluation.adjusted_rand == pytest.approx(adjusted_rand_score(members["label"], members["cluster"]))
    expected = {
        cluster: sorted(group.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        for cluster, group in members.groupby("cluster")["label"]
    }
    assert {p.cluster: p.majority for p in evaluation.per_cluster} == expected
    assert evaluation.silhouette is not None and -1 <= evaluation.silhouette <= 1
    assert sorted(p.cluster for p in evaluation.per_cluster) == sorted(np.unique(members["cluster"]).tolist())


def decoded_suggestion(workspace, clustering_id: int, cluster: int):
    """The suggestion from the decoded top-k probabilities (how it was computed before)."""
    model_id = latest_predicting_model(workspace)
    predictions = load_predictions(workspace, model_id, cluster_members(workspace, clustering_id, cluster)[0])
    if not len(predictions.image_ids):
        return None
    top = np.argmax(predictions.proba, axis=1)
    votes = Counter(top.tolist())
    winner, count = min(votes.items(), key=lambda item: (-item[1], item[0]))
    return Suggestion(str(predictions.classes[winner]), float(predictions.proba[top == winner, winner].mean()), count / len(top), model_id)


@pytest.mark.parametrize("clustering_id", [1, 2])
def test_suggested_label_matches_the_decoded_probabilities(labeled, clustering_id):
    clusters = sorted(load_clustering(labeled, clustering_id).sizes())
    suggestions = [suggested_label(labeled, clustering_id, c) for c in clusters]
    assert suggestions == [decoded_suggestion(labeled, clustering_id, c) for c in clusters]
    assert sum(s is not None for s in suggestions) >= 4


PREDICTED_PER_CLUSTER = (
    "SELECT m.cluster, p.label, COUNT(*), SUM(p.confidence) FROM cluster_members m JOIN predictions p ON p.image_id = m.image_id "
    "WHERE p.model_id = ? AND m.clustering_id = ? GROUP BY m.cluster, p.label ORDER BY m.cluster, p.label"
)


def stored_per_cluster(workspace, model_id: int, clustering_id: int) -> list[tuple]:
    return [tuple(r) for r in workspace.db.execute(
        "SELECT cluster, label, n, confidence_sum FROM cluster_predictions WHERE model_id = ? AND clustering_id = ? ORDER BY cluster, label",
        (model_id, clustering_id),
    )]


def assert_same_counts(stored: list[tuple], expected: list[tuple]) -> None:
    assert [row[:3] for row in stored] == [row[:3] for row in expected]
    assert np.allclose([row[3] for row in stored], [row[3] for row in expected])


def test_what_a_model_predicts_per_cluster_is_stored_with_its_predictions_and_with_a_new_clustering(labeled):
    """Clustering 1 existed when model 1 predicted, clustering 2 (a split) was saved after; a new
    model's predictions are counted in every clustering, and the older model's counts stay."""
    for clustering_id in (1, 2):
        expected = [tuple(r) for r in labeled.db.execute(PREDICTED_PER_CLUSTER, (1, clustering_id))]
        assert_same_counts(stored_per_cluster(labeled, 1, clustering_id), expected)
        assert len(expected) >= 4
    label_images(labeled, [8, 9, 10], "R")
    newer = train_model(labeled, "head", max_iter=300, seed=1)
    predict(labeled, newer.id)
    for model_id, clustering_id in ((2, 1), (2, 2), (1, 1)):
        expected = [tuple(r) for r in labeled.db.execute(PREDICTED_PER_CLUSTER, (model_id, clustering_id))]
        assert_same_counts(stored_per_cluster(labeled, model_id, clustering_id), expected)


def test_a_suggestion_without_stored_counts_is_counted_from_the_members_predictions(labeled):
    clusters = sorted(load_clustering(labeled, 1).sizes())
    stored = [suggested_label(labeled, 1, c) for c in clusters]
    with labeled.transaction() as db:
        db.execute("DELETE FROM cluster_predictions")
    counted = [suggested_label(labeled, 1, c) for c in clusters]
    assert [(s.label, s.share, s.model_id) for s in counted if s] == [(s.label, s.share, s.model_id) for s in stored if s]
    assert [s.confidence for s in counted if s] == pytest.approx([s.confidence for s in stored if s])
    assert [s is None for s in counted] == [s is None for s in stored]
    assert sum(s is not None for s in stored) >= 4


def test_list_models_summarises_every_record(labeled):
    train_model(labeled, "head", max_iter=100, seed=1)
    models = list_models(labeled)
    assert [m["id"] for m in models] == [2, 1]
    assert models == [load_model_record(labeled, m["id"]).summary() for m in models]
    assert models[0]["training_set"] == len(load_model_record(labeled, 2).training_set) > 0


def test_calibrated_unlabeled_confidences_match_decoding_the_unlabeled_rows(labeled):
    model_id = latest_predicting_model(labeled)
    validation_curves(labeled, model_id)  # stores the calibration
    assert load_calibration(labeled, model_id) is not None
    cached = model_confidences(labeled, model_id)
    version = confidences_version(labeled, model_id)
    stored = list(labeled.models_dir.glob(f"model-{model_id}-confidences-*.npz"))
    assert [p.name for p in stored] == [f"model-{model_id}-confidences-{version}.npz"]  # stored with the model
    again = model_confidences(labeled, model_id)
    assert np.array_equal(again.image_ids, cached.image_ids) and np.array_equal(again.confidence, cached.confidence)
    assert again.labels.tolist() == cached.labels.tolist()
    label_images(labeled, unlabeled_image_ids(labeled)[:3].tolist(), "U")  # the labels change, the cache holds
    assert confidences_version(labeled, model_id) == version
    predictions = load_predictions(labeled, model_id, unlabeled_image_ids(labeled))
    proba = calibrated_proba(labeled, model_id, predictions.proba)
    expected = (predictions.classes[np.argmax(proba, axis=1)].astype(str), proba.max(axis=1))
    for labels_, confidence in (unlabeled_confidences(labeled, model_id), unlabeled_confidences(labeled, model_id, cached)):
        assert labels_.tolist() == expected[0].tolist() and len(labels_) > 100
        assert np.array_equal(confidence, expected[1])


def test_pending_labels_are_the_pending_rows_of_current_labels(labeled):
    ids = unlabeled_image_ids(labeled)[:6].tolist()
    add_pseudo_labels(labeled, ids, ["R", "V", "R", "O", "U", "R"], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], model_id=1)
    everything = current_labels(labeled)
    expected = everything[everything["status"] == "pending"].reset_index(drop=True)
    pd.testing.assert_frame_equal(pending_labels(labeled), expected)
    assert pending_labels(labeled)["image_id"].tolist() == sorted(ids)


def test_a_declined_calibration_leaves_the_stored_confidences_as_they_are(labeled):
    model_id = latest_predicting_model(labeled)
    predictions = load_predictions(labeled, model_id)
    proba = predictions.proba
    labels_ = predictions.classes[np.argmax(proba, axis=1)]
    raw = labeled.plain_rows("SELECT image_id, label, confidence FROM predictions WHERE model_id=? ORDER BY image_id", (model_id,))
    report = {"method": "none", "declined": {"method": "temperature", "ece_after": 0.3}}
    save_calibration(labeled, model_id, Calibrator(method="none").fit(proba, np.searchsorted(predictions.classes, labels_)), report)
    assert not changes_confidences(labeled, model_id)
    assert calibrated_proba(labeled, model_id, proba) is not None and np.array_equal(calibrated_proba(labeled, model_id, proba), proba)
    confidences = model_confidences(labeled, model_id)
    assert confidences.confidence.tolist() == [r[2] for r in raw] and confidences.labels.tolist() == [r[1] for r in raw]
    assert not list(labeled.models_dir.glob(f"model-{model_id}-confidences-*.npz"))  # nothing decoded for a calibration that changes nothing

    flatter = Calibrator(method="temperature").fit(proba, np.searchsorted(predictions.classes, labels_))
    flatter.temperature_scaler_.temperature_ = 3.0
    save_calibration(labeled, model_id, flatter, {"method": "temperature"})
    assert changes_confidences(labeled, model_id)
    assert (model_confidences(labeled, model_id).confidence < np.array([r[2] for r in raw]) - 1e-6).mean() > 0.5
