"""loop.evaluate"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import training_labels
from serieslabeler.labels.vocabulary import vocabulary_order
from serieslabeler.loop.routing import image_times
from serieslabeler.loop.series import decode_series
from serieslabeler.metrics.classification import classification_report
from serieslabeler.models.base import image_subjects
from serieslabeler.models.features import ensure_features
from serieslabeler.models.files import (
    latest_model_id,
    load_classifier,
    load_model_record,
)
from serieslabeler.models.head import HeadClassifier, align_proba
from serieslabeler.models.splits import grouped_split
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace

EVALUATION_TEST_SIZE = 0.3


# --- evaluation against the ground truth ------------------------------------------------------
@dataclass
class Evaluation:
    """A model's scores on held-out subjects' ground truth, and exactly what was held out."""

    model_id: int
    method: str
    optimistic: bool
    held_out_subjects: list[str]
    test_images: int
    report: dict
    split: str
    decoded_report: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ground_truth(workspace: Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_ids, labels, subject ids)`` of every image with a ground-truth label."""
    rows = workspace.db.execute(
        "SELECT g.image_id, g.label, i.subject_id FROM ground_truth g JOIN images i ON i.id = g.image_id ORDER BY g.image_id"
    ).fetchall()
    if not rows:
        raise PipelineError(
            f"{workspace.root} has no ground truth; ingest a label column with '--label COL' to evaluate or simulate"
        )
    return (
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], dtype=np.int64),
    )


def held_out_subjects(workspace: Workspace, test_size: float = EVALUATION_TEST_SIZE, seed: int = 0) -> np.ndarray:
    """Subject ids held out for evaluation: a GroupShuffleSplit of the subjects with ground truth."""

    _, _, subjects = ground_truth(workspace)
    split = grouped_split(subjects, test_size, seed)
    return np.unique(subjects[split.test])


def subject_names(workspace: Workspace, subject_ids) -> list[str]:
    rows = workspace.query_in("SELECT id, name FROM subjects WHERE id IN ({})", subject_ids)
    return sorted(r[1] for r in rows)


def evaluate_model(
    workspace: Workspace, model_id: int | None = None, test_size: float = EVALUATION_TEST_SIZE, seed: int = 0, device: str = "cpu"
) -> Evaluation:
    """Score a model (default: the latest) on the ground truth of held-out subjects (module docstring)."""

    record = load_model_record(workspace, latest_model_id(workspace) if model_id is None else model_id)
    ids, truth, subjects = ground_truth(workspace)
    held = held_out_subjects(workspace, test_size, seed)
    test = np.isin(subjects, held)
    training = np.asarray(record.training_set, dtype=np.int64)
    leaked = training[np.isin(image_subjects(workspace, training), held)] if len(training) else training
    optimistic = False
    if len(leaked) == 0:
        classifier, method = load_classifier(workspace, record), "the stored model (it saw none of the held-out subjects)"
    elif record.mode == "head":
        classifier = _refit_head(workspace, record, np.setdiff1d(training, leaked), seed)
        method = f"the model refitted without the {len(leaked)} training images of held-out subjects (same features, parameters, labels)"
    else:
        classifier, optimistic = load_classifier(workspace, record), True
        test &= ~np.isin(ids, training)
        method = (f"the stored model on held-out images outside its training set; OPTIMISTIC: it was trained on "
                  f"{len(leaked)} images of the held-out subjects")
    test_ids = ids[test]
    if len(test_ids) == 0:
        raise PipelineError("no held-out ground-truth images left to evaluate on; lower --test-size or label fewer subjects")
    ensure_features(workspace, record.feature_set, test_ids, device)
    _, X = FeatureStore(workspace).load(record.feature_set, test_ids)
    classes = np.asarray(record.classes)
    proba = align_proba(classifier.predict_proba(X), classifier.classes_, classes)
    predicted = classes[np.argmax(proba, axis=1)]
    all_classes = sorted(set(truth[test]) | set(classes))
    report = classification_report(truth[test], predicted, all_classes, align_proba(proba, classes, all_classes), all_classes)
    decoded = _decoded_report(workspace, test_ids, truth[test], proba, classes, all_classes)
    split = (f"GroupShuffleSplit(test_size={test_size}, random_state={seed}) over the {len(np.unique(subjects))} subjects "
             f"with ground truth; held out: {len(held)} subjects, all of their {int(np.isin(subjects, held).sum())} ground-truth images")
    return Evaluation(record.id, method, optimistic, subject_names(workspace, held), len(test_ids), report.to_dict(), split, decoded)


def _decoded_report(workspace: Workspace, ids, truth, proba, classes, all_classes) -> dict | None:
    """With an ordered vocabulary: the scores of the predictions decoded monotone along each
    held-out subject's series (None otherwise)."""
    order = vocabulary_order(workspace)
    if order is None:
        return None
    labels, _ = decode_series(proba, classes, order, image_subjects(workspace, ids), image_times(workspace, ids))
    return classification_report(truth, labels.astype(str), sorted(set(all_classes) | set(labels.astype(str)))).to_dict()


def _refit_head(workspace: Workspace, record, image_ids: np.ndarray, seed: int):

    ids, labels, weights = training_labels(workspace)
    keep = np.isin(ids, image_ids)
    if not keep.any():
        raise PipelineError(f"model {record.id}: every training image belongs to a held-out subject; label images of other subjects")
    _, X = FeatureStore(workspace).load(record.feature_set, ids[keep])
    options = {k: record.params[k] for k in ("kind", "C", "hidden", "max_iter") if k in record.params}
    return HeadClassifier(**options, random_state=seed).fit(X, labels[keep].astype(str), sample_weight=weights[keep])
