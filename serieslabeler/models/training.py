"""models.training"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.metrics.classification import classification_report
from serieslabeler.models.base import (
    CV_FOLDS,
    ModelRecord,
    Trained,
    TrainingData,
    default_feature_set,
    training_data,
)
from serieslabeler.models.configs import HeadConfig
from serieslabeler.models.evaluation import OutOfFold, record_evaluations
from serieslabeler.models.features import embed_with_model, ensure_features
from serieslabeler.models.files import save_model
from serieslabeler.models.finetune import train_finetune
from serieslabeler.models.foc import train_overcluster
from serieslabeler.models.head import HeadClassifier, grouped_oof_proba
from serieslabeler.models.vae_rounds import train_vae
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace


def train_model(
    workspace: Workspace,
    mode: str = "head",
    feature_set: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
    **params,
) -> ModelRecord:
    """Train a model on the accepted labels and save it (``models`` row + file in ``models/``),
    with its out-of-fold probabilities and held-out evaluation (:mod:`serieslabeler.models.evaluation`).

    ``feature_set``: the vectors a head reads, or whose backbone a fine-tune starts from
    (a full name or a backbone name; default: the newest feature set). ``params`` are the
    mode's own options (see :data:`MODES`).
    """
    if mode not in MODES:
        raise PipelineError(f"unknown training mode '{mode}'; choose one of {', '.join(MODES)}")
    store = FeatureStore(workspace)
    feature_set = store.resolve(feature_set) if feature_set else default_feature_set(workspace)
    data = training_data(workspace)
    start = time.perf_counter()
    trained = MODES[mode](workspace, data, feature_set, params, seed, device, progress)
    trained.metrics.update(
        seconds=round(time.perf_counter() - start, 3),
        train_size=len(data.image_ids),
        train_by_label={str(k): int(v) for k, v in zip(*np.unique(data.labels, return_counts=True))},
    )
    record = save_model(workspace, mode, trained, data, {**trained.params, "seed": seed})
    if trained.network is not None:
        all_ids = [r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id")]
        embed_with_model(workspace, record.id, all_ids, device, progress)
    labels_oof = None
    if trained.oof_proba is not None:
        labels_oof = OutOfFold(data.image_ids, data.labels, data.subjects, *trained.oof_proba)
    record_evaluations(workspace, record, data, labels_oof)
    return record


# --- mode: head -------------------------------------------------------------------------------
def train_head(workspace: Workspace, data: TrainingData, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None) -> Trained:
    """Logistic regression (or ``kind="mlp"``) on cached vectors of ``feature_set``."""
    options = HeadConfig.from_params(params)
    ensure_features(workspace, feature_set, data.image_ids, device, progress)
    _, X = FeatureStore(workspace).load(feature_set, data.image_ids)

    def make() -> HeadClassifier:
        return options.classifier(seed)

    metrics, oof_proba = grouped_validation(X, data, make, seed)
    classifier = make().fit(X, data.labels, sample_weight=data.weights)
    return Trained(classifier, feature_set, options.to_dict(), metrics, oof_proba=oof_proba)


def grouped_validation(X: np.ndarray, data: TrainingData, make: Callable[[], HeadClassifier], seed: int) -> tuple[dict, tuple | None]:
    """Out-of-fold scores of the labels, folds grouped by subject (empty with fewer than 2
    subjects), and the out-of-fold ``(proba, classes)`` they come from (None then)."""
    if len(np.unique(data.subjects)) < 2 or len(np.unique(data.labels)) < 2:
        return {"validation": None, "validation_note": "needs labels of at least 2 subjects and 2 classes"}, None
    proba, classes = grouped_oof_proba(X, data.labels, data.subjects, data.weights, make, CV_FOLDS, seed)
    report = classification_report(data.labels, classes[np.argmax(proba, axis=1)], classes, proba, classes)
    n_folds = min(CV_FOLDS, len(np.unique(data.subjects)))
    metrics = {"validation": report.to_dict(), "validation_split": f"{n_folds}-fold GroupKFold by subject over the accepted labels, out-of-fold predictions"}
    return metrics, (proba, classes)


MODES: dict[str, Callable[..., Trained]] = {"head": train_head, "finetune": train_finetune}


MODES.update(overcluster=train_overcluster, vae=train_vae)
