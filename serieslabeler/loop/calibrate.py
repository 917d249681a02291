"""A model's confidence calibration, stored next to it as JSON and applied when routing.

The calibrator (:class:`serieslabeler.metrics.calibration.Calibrator`, method ``auto``:
temperature scaling, isotonic from 1,000 labels) is fitted on the model's grouped out-of-fold
predictions of the labels (see :func:`serieslabeler.loop.threshold.validation_curves`), never on
images the scoring model trained on. It is a few numbers, so it is stored as plain JSON in
``models/model-<id>.calibration.json`` (nothing read from a workspace is unpickled).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from serieslabeler.metrics.calibration import Calibrator
from serieslabeler.models.predictions import load_predictions, unlabeled_predictions
from serieslabeler.store.arrays import load_record_arrays, save_record_arrays
from serieslabeler.store.workspace import Workspace, write_atomic


def calibration_path(workspace: Workspace, model_id: int):
    return workspace.models_dir / f"model-{int(model_id)}.calibration.json"


def save_calibration(workspace: Workspace, model_id: int, calibrator: Calibrator, report: dict) -> None:
    """Store the calibrator routing applies; one that changes nothing (``none``: declined as no
    better than the raw confidences) is not stored, and takes the model's earlier one away."""
    path = calibration_path(workspace, model_id)
    if calibrator.method_ == "none":
        path.unlink(missing_ok=True)
        return
    write_atomic(path, json.dumps({"calibrator": calibrator.to_dict(), "report": report}).encode())


def load_calibration(workspace: Workspace, model_id: int) -> tuple[Calibrator, dict] | None:
    """The stored calibrator and its before/after report, or None when the model has none yet."""
    path = calibration_path(workspace, model_id)
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return Calibrator.from_dict(state["calibrator"]), state["report"]


def changes_confidences(workspace: Workspace, model_id: int) -> bool:
    """Whether the model has a stored calibration (:func:`save_calibration` stores none that
    would leave its confidences as they are)."""
    return calibration_path(workspace, model_id).is_file()


def normalized(proba) -> np.ndarray:
    """Rows scaled to sum to 1 (stored predictions keep only the top-k probabilities)."""
    proba = np.asarray(proba, dtype=float)
    totals = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, totals, out=np.full_like(proba, 1.0 / max(1, proba.shape[1])), where=totals > 0)


def calibrated_proba(workspace: Workspace, model_id: int, proba) -> np.ndarray:
    """``proba`` with the model's stored calibration applied (unchanged when it has none or a
    declined one, or when it knows a single class)."""
    proba = np.asarray(proba, dtype=float)
    stored = load_calibration(workspace, model_id) if proba.shape[1] >= 2 and len(proba) else None
    return proba if stored is None else stored[0].transform(normalized(proba))


@dataclass(frozen=True)
class Confidences:
    """A model's stored predictions as routing sees them: each image's (ids ascending) predicted
    label and its confidence, calibrated when the model has a stored calibration."""

    image_ids: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray


def confidences_version(workspace: Workspace, model_id: int) -> str:
    """What :func:`model_confidences` depends on: the stored calibration (a digest of its file) and
    the number of stored predictions; a page caches them on it, whatever the labels do."""
    path = calibration_path(workspace, model_id)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "uncalibrated"
    count = workspace.db.execute("SELECT COUNT(*) FROM predictions WHERE model_id=?", (int(model_id),)).fetchone()[0]
    return f"{digest}-{count}"


def model_confidences(workspace: Workspace, model_id: int) -> Confidences:
    """Every stored prediction of the model, calibrated with its stored calibration. The stored
    top-k probabilities are decoded once per calibration and prediction run and the result is
    stored beside the model (``model-<id>-confidences-<version>.npz``, :func:`confidences_version`);
    without a calibration the stored rows are read as they are."""
    if not changes_confidences(workspace, model_id):
        rows = workspace.plain_rows("SELECT image_id, label, confidence FROM predictions WHERE model_id=? ORDER BY image_id", (int(model_id),))
        return Confidences(np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=str),
                           np.array([r[2] for r in rows], dtype=np.float64))
    path = workspace.models_dir / f"model-{int(model_id)}-confidences-{confidences_version(workspace, model_id)}.npz"
    if path.is_file():
        return load_record_arrays(path, Confidences)
    confidences = calibrated_confidences(workspace, model_id)
    if not workspace.read_only:
        for older in workspace.models_dir.glob(f"model-{int(model_id)}-confidences-*.npz"):
            older.unlink()
        save_record_arrays(path, confidences)
    return confidences


def calibrated_confidences(workspace: Workspace, model_id: int) -> Confidences:
    """:func:`model_confidences` computed: the stored predictions decoded and calibrated."""
    predictions = load_predictions(workspace, model_id)
    proba = calibrated_proba(workspace, model_id, predictions.proba)
    if not len(proba):
        return Confidences(predictions.image_ids, predictions.labels.astype(str), np.zeros(0))
    return Confidences(predictions.image_ids, predictions.classes[np.argmax(proba, axis=1)].astype(str), proba.max(axis=1))


def unlabeled_confidences(workspace: Workspace, model_id: int, confidences: Confidences | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, confidence)`` of the model's predictions for the images still without a label,
    calibrated when the model has a stored calibration (else read straight from the stored rows,
    decoding no probabilities).

    ``confidences``: the model's :func:`model_confidences`, computed earlier (a page caches them
    on :func:`confidences_version`); then only which images are still unlabeled is read."""
    if confidences is None:
        if not changes_confidences(workspace, model_id):
            return unlabeled_predictions(workspace, model_id)
        confidences = model_confidences(workspace, model_id)
    unlabeled = [r[0] for r in workspace.plain_rows(
        "SELECT p.image_id FROM predictions p WHERE p.model_id=? "
        "AND NOT EXISTS (SELECT 1 FROM current_labels c WHERE c.image_id = p.image_id)", (int(model_id),))]
    keep = np.isin(confidences.image_ids, np.array(unlabeled, dtype=np.int64))
    return confidences.labels[keep], confidences.confidence[keep]
