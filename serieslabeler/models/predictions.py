"""Classifier training and prediction.

A model is trained on the current *accepted* labels (:func:`serieslabeler.labels.log.training_labels`),
each image weighted by its label confidence (manual 1.0; cluster labels lower the farther the
image lies from its cluster's centre). Training modes are looked up in :data:`MODES`:

- ``head`` (default): a classifier on cached feature vectors (standardized logistic regression,
  or a small MLP). Seconds on a CPU.
- ``finetune``: the torchvision/EfficientNet backbone of :mod:`serieslabeler.embed.backbones` with a new
  linear head, trained end to end for a few epochs with augmentation (random crops, flips,
  brightness), early stopping on a validation split grouped by subject. Meant for a GPU; it
  runs, slowly, on a CPU. Its penultimate features are registered in the feature store as
  ``model-<id>``, so the next clustering (and prediction) can use them.

Every model is a classifier over the vectors of one feature set (a head model: the set it was
trained on; a fine-tuned model: its own ``model-<id>`` set with its linear head), saved with
its classes, parameters, training set (image ids) and metrics. The validation metrics stored
with a model are out-of-fold predictions of its own labels, folds grouped by subject; they
measure agreement with the labels the expert gave, not with any ground truth (see
:mod:`serieslabeler.loop.iterate` for that).
"""
from __future__ import annotations

import json

import numpy as np

from serieslabeler.clustering.runs import count_member_predictions
from serieslabeler.models.base import DEFAULT_TOP_K, PREDICT_CHUNK, Predictions
from serieslabeler.models.features import ensure_features
from serieslabeler.models.files import load_classifier, load_model_record, model_classes
from serieslabeler.models.head import align_proba
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.queries import id_array
from serieslabeler.store.workspace import Workspace


def unlabeled_image_ids(workspace: Workspace) -> np.ndarray:
    """Images without any label (no row in ``current_labels``, not even a pending pseudo-label)."""
    rows = workspace.plain_rows("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM current_labels) ORDER BY id")
    return np.array([r[0] for r in rows], dtype=np.int64)


def predict(
    workspace: Workspace,
    model_id: int,
    image_ids=None,
    top_k: int = DEFAULT_TOP_K,
    device: str = "cpu",
    progress: Progress | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Predictions:
    """Predict the images given (default: every unlabeled image) and store the rows in ``predictions``.

    Features missing for those images are computed first (the backbone's, or the fine-tuned
    model's own), on this machine or, with ``engine="ray"``, on Ray Data; the classifier on
    top of the features is cheap and always runs here.
    """
    record = load_model_record(workspace, model_id)
    ids = unlabeled_image_ids(workspace) if image_ids is None else np.unique(np.asarray(image_ids, dtype=np.int64))
    classes = np.asarray(record.classes)
    if len(ids) == 0:
        return Predictions(record.id, ids, classes, np.zeros((0, len(classes))))
    ensure_features(workspace, record.feature_set, ids, device, progress, engine, address)
    classifier = load_classifier(workspace, record)
    store = FeatureStore(workspace)
    parts = []
    for start in range(0, len(ids), PREDICT_CHUNK):
        _, X = store.load(record.feature_set, ids[start : start + PREDICT_CHUNK])
        parts.append(align_proba(classifier.predict_proba(X), classifier.classes_, classes))
    predictions = Predictions(record.id, ids, classes, np.vstack(parts))
    store_predictions(workspace, predictions, top_k)
    return predictions


def unlabeled_predictions(workspace: Workspace, model_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, confidence)`` of a model's stored predictions for the images still without a
    label, by image id: one keyed query, no probabilities decoded (what the Train page charts)."""
    rows = workspace.plain_rows(
        "SELECT p.label, p.confidence FROM predictions p WHERE p.model_id=? "
        "AND NOT EXISTS (SELECT 1 FROM current_labels c WHERE c.image_id = p.image_id) ORDER BY p.image_id",
        (int(model_id),),
    )
    return np.array([r[0] for r in rows], dtype=str), np.array([r[1] for r in rows], dtype=np.float64)


def store_predictions(workspace: Workspace, predictions: Predictions, top_k: int = DEFAULT_TOP_K) -> None:
    rows = zip(
        predictions.image_ids.tolist(), predictions.labels.tolist(), predictions.confidence.tolist(),
        predictions.margin.tolist(), predictions.entropy.tolist(), (json.dumps(t) for t in predictions.topk(top_k)),
    )
    with workspace.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO predictions(model_id, image_id, label, confidence, margin, entropy, topk) "
            "VALUES (?,?,?,?,?,?,?)",
            [(predictions.model_id, *row) for row in rows],
        )
        count_member_predictions(db, predictions.model_id)


def load_predictions(workspace: Workspace, model_id: int, image_ids=None) -> Predictions:
    """Stored predictions of a model (all, or for ``image_ids``); ``proba`` holds the stored top-k
    probabilities (0 for the classes beyond them)."""
    if image_ids is None:
        return _stored_predictions(workspace, model_id, "SELECT image_id, topk FROM predictions WHERE model_id=? ORDER BY image_id")
    return _stored_predictions(
        workspace, model_id,
        "SELECT DISTINCT p.image_id, p.topk FROM json_each(?) j CROSS JOIN predictions p ON p.model_id = ? AND p.image_id = j.value "
        "ORDER BY p.image_id",
        id_array(image_ids),
    )


def _stored_predictions(workspace: Workspace, model_id: int, sql: str, *before_model) -> Predictions:
    """The rows ``(image_id, topk)`` of ``sql`` (parameters: ``before_model``, then the model id) as predictions."""
    model_id = int(model_id)
    classes = np.asarray(model_classes(workspace, model_id))
    rows = workspace.plain_rows(sql, (*before_model, model_id))
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return Predictions(model_id, ids, classes, topk_matrix([r[1] for r in rows], classes))


def topk_matrix(texts: list[str], classes) -> np.ndarray:
    """Stored top-k lists (JSON ``[[label, p], ...]``, one per row) as a rows x classes matrix, 0
    beyond the top k; the rows are parsed as one JSON document and placed in one assignment."""
    column = {c: j for j, c in enumerate(classes)}
    parsed = json.loads("[" + ",".join(texts) + "]")
    pairs = [pair for row in parsed for pair in row]
    proba = np.zeros((len(texts), len(classes)))
    rows = np.repeat(np.arange(len(texts)), [len(row) for row in parsed])
    proba[rows, [column[label] for label, _ in pairs]] = [p for _, p in pairs]
    return proba
