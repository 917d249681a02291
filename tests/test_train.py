"""Training and prediction on the real bananas features (efficientnet_lite0), head and finetune."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli

from serieslabeler.errors import PipelineError
from serieslabeler.labels import label_images
from serieslabeler.loop import ground_truth
from serieslabeler.models import (
    MODES,
    HeadClassifier,
    Predictions,
    load_predictions,
    predict,
    train_model,
    unlabeled_image_ids,
)
from serieslabeler.store import FeatureStore, Workspace

FEATURES = "efficientnet_lite0@imagenet"


def label_with_truth(ws: Workspace, image_ids) -> None:
    """Manual labels equal to the ground truth, one event per class."""
    ids, truth, _ = ground_truth(ws)
    chosen = np.isin(ids, image_ids)
    for label in np.unique(truth[chosen]):
        label_images(ws, ids[chosen & (truth == label)], label, author="test")


def split_by_subject(ws: Workspace, test_subjects: int = 3):
    ids, truth, subjects = ground_truth(ws)
    held = np.unique(subjects)[:test_subjects]
    test = np.isin(subjects, held)
    return ids[~test], ids[test], truth[test]


@pytest.fixture
def workspace(bananas_embedded):
    with Workspace.open(bananas_embedded) as ws:
        yield ws


def test_head_trains_on_labels_and_predicts_unseen_subjects(workspace):
    train_ids, test_ids, test_truth = split_by_subject(workspace)
    label_with_truth(workspace, train_ids)
    model = train_model(workspace, "head", feature_set="efficientnet_lite0")
    assert model.mode == "head" and model.feature_set == FEATURES
    assert sorted(model.training_set) == sorted(train_ids.tolist())
    assert model.classes == ["O", "R", "U", "V"]
    assert (workspace.root / model.path).is_file()
    assert model.metrics["train_size"] == len(train_ids)
    assert model.metrics["validation"]["n"] == len(train_ids)  # out-of-fold, grouped by subject
    assert "GroupKFold" in model.metrics["validation_split"]

    predictions = predict(workspace, model.id)  # default: every unlabeled image = the 3 held-out subjects
    assert np.array_equal(predictions.image_ids, np.sort(test_ids))
    order = np.argsort(test_ids)
    accuracy = np.mean(predictions.labels == test_truth[order])
    assert accuracy > 0.55, accuracy  # the majority class alone gives 0.43 here
    assert np.allclose(predictions.proba.sum(axis=1), 1.0)
    assert np.all((predictions.margin >= 0) & (predictions.margin <= predictions.confidence))
    assert np.all(predictions.entropy >= 0) and np.all(predictions.entropy <= np.log(4) + 1e-9)

    rows = workspace.db.execute("SELECT label, confidence, topk FROM predictions WHERE model_id=? ORDER BY image_id", (model.id,)).fetchall()
    assert len(rows) == len(test_ids)
    top = json.loads(rows[0]["topk"])
    assert len(top) == 3 and top[0][0] == rows[0]["label"] and top[0][1] == pytest.approx(rows[0]["confidence"])
    stored = load_predictions(workspace, model.id)
    assert np.array_equal(stored.labels, predictions.labels)


def test_label_confidence_weights_the_training(workspace):
    X = np.array([[0.0], [0.1], [1.0], [1.1], [0.55]])
    y = ["a", "a", "b", "b", "a"]
    light = HeadClassifier(C=10.0).fit(X, y, sample_weight=[1, 1, 1, 1, 0.01])
    heavy = HeadClassifier(C=10.0).fit(X, y, sample_weight=[1, 1, 1, 1, 10.0])
    assert heavy.predict_proba([[0.6]])[0, 0] > light.predict_proba([[0.6]])[0, 0]
    assert HeadClassifier().fit(X, ["a"] * 5).predict([[3.0]]).tolist() == ["a"]


def test_predictions_summary_measures():
    p = Predictions(None, np.array([1, 2]), np.array(["a", "b", "c"]), np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]]))
    assert p.labels.tolist() == ["a", "a"]
    assert p.margin == pytest.approx([0.5, 0.0])
    assert p.entropy[1] == pytest.approx(np.log(3))
    assert p.topk(2)[0] == [("a", 0.7), ("b", 0.2)]


def test_training_needs_labels_and_a_known_mode(workspace):
    with pytest.raises(PipelineError, match="no accepted labels"):
        train_model(workspace, "head", feature_set=FEATURES)
    with pytest.raises(PipelineError, match="unknown training mode"):
        train_model(workspace, "svm")
    label_with_truth(workspace, ground_truth(workspace)[0][:30])
    with pytest.raises(PipelineError, match="does not take option"):
        train_model(workspace, "head", feature_set=FEATURES, epochs=3)
    assert set(MODES) >= {"head", "finetune"}


@pytest.mark.slow
def test_finetune_on_cpu_registers_its_features(workspace):
    """A tiny fine-tune (ResNet-18 with random weights, 32 images, 1 epoch, 32 px) runs on the CPU."""
    ids, _, subjects = ground_truth(workspace)
    chosen = np.concatenate([ids[subjects == s][:8] for s in np.unique(subjects)[:4]])
    label_with_truth(workspace, chosen)
    model = train_model(
        workspace, "finetune", feature_set=FEATURES, backbone="resnet18", weights="random", epochs=1, image_size=32, batch_size=16,
    )
    assert model.feature_set == f"model-{model.id}"
    assert len(model.metrics["history"]) == 1 and "val_loss" in model.metrics["history"][0]
    assert (workspace.models_dir / f"model-{model.id}.pt").is_file()
    store = FeatureStore(workspace)
    info = store.info(model.feature_set)
    assert (info.backbone, info.dim, info.count) == ("resnet18", 512, 220)
    predictions = predict(workspace, model.id)
    assert len(predictions) == 220 - 32 and set(predictions.labels) <= set(model.classes)
    assert len(unlabeled_image_ids(workspace)) == 188


def test_cli_train_predict_and_models(workspace):
    train_ids, _, _ = split_by_subject(workspace)
    label_with_truth(workspace, train_ids)
    code, data = cli("train", "--workspace", workspace.root, "--features", "efficientnet_lite0", "--C", "0.5")
    assert code == 0 and data["model"]["params"]["C"] == 0.5
    code, data = cli("predict", "--workspace", workspace.root)
    assert code == 0 and data["images"] == 60 and sum(data["by_label"].values()) == 60
    code, data = cli("models", "--workspace", workspace.root)
    assert code == 0 and len(data["models"]) == 1
    code, data = cli("train", "--workspace", workspace.root, "--epochs", "2")
    assert code == 2 and "--epochs does not apply" in data["error"]


@pytest.mark.parametrize("top_k", ["0", "-1"])
def test_cli_predict_refuses_top_k_below_1(bananas_embedded, top_k):
    code, data = cli("predict", "--workspace", bananas_embedded, "--top-k", top_k)
    assert code == 2 and data["error"] == f"--top-k must be at least 1, not {top_k}"
