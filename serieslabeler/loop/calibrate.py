"""A model's confidence calibration, stored next to it as JSON and applied when routing.

The calibrator (:class:`serieslabeler.metrics.calibration.Calibrator`, method ``auto``:
temperature scaling, isotonic from 200 labels) is fitted on the model's grouped out-of-fold
predictions of the labels (see :func:`serieslabeler.loop.threshold.validation_curves`), never on
images the scoring model trained on. It is a few numbers, so it is stored as plain JSON in
``models/model-<id>.calibration.json`` (nothing read from a workspace is unpickled).
"""
from __future__ import annotations

import json

import numpy as np

from serieslabeler.metrics.calibration import Calibrator
from serieslabeler.models.predictions import (
    load_predictions,
    unlabeled_image_ids,
    unlabeled_predictions,
)
from serieslabeler.store.workspace import Workspace, write_atomic


def calibration_path(workspace: Workspace, model_id: int):
    return workspace.models_dir / f"model-{int(model_id)}.calibration.json"


def save_calibration(workspace: Workspace, model_id: int, calibrator: Calibrator, report: dict) -> None:
    state = {"calibrator": calibrator.to_dict(), "report": report}
    write_atomic(calibration_path(workspace, model_id), json.dumps(state).encode())


def load_calibration(workspace: Workspace, model_id: int) -> tuple[Calibrator, dict] | None:
    """The stored calibrator and its before/after report, or None when the model has none yet."""
    path = calibration_path(workspace, model_id)
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return Calibrator.from_dict(state["calibrator"]), state["report"]


def normalized(proba) -> np.ndarray:
    """Rows scaled to sum to 1 (stored predictions keep only the top-k probabilities)."""
    proba = np.asarray(proba, dtype=float)
    totals = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, totals, out=np.full_like(proba, 1.0 / max(1, proba.shape[1])), where=totals > 0)


def calibrated_proba(workspace: Workspace, model_id: int, proba) -> np.ndarray:
    """``proba`` with the model's stored calibration applied (unchanged when it has none, or
    when it knows a single class)."""
    stored = load_calibration(workspace, model_id)
    proba = np.asarray(proba, dtype=float)
    if stored is None or proba.shape[1] < 2 or len(proba) == 0:
        return proba
    return stored[0].transform(normalized(proba))


def unlabeled_confidences(workspace: Workspace, model_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, confidence)`` of the model's predictions for the images still without a label,
    calibrated when the model has a stored calibration (else read straight from the stored rows,
    decoding no probabilities)."""
    if load_calibration(workspace, model_id) is None:
        return unlabeled_predictions(workspace, model_id)
    predictions = load_predictions(workspace, model_id, unlabeled_image_ids(workspace))
    proba = calibrated_proba(workspace, model_id, predictions.proba)
    if not len(proba):
        return predictions.labels.astype(str), np.zeros(0)
    return predictions.classes[np.argmax(proba, axis=1)].astype(str), proba.max(axis=1)
