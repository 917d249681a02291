"""What is measured of a model, computed once when it is trained and stored with it.

- *Out-of-fold probabilities* (:class:`OutOfFold`): every labeled image scored by a head
  classifier fitted on the other folds' subjects (GroupKFold by subject), for two kinds of truth:
  ``labels`` (the accepted labels the model was trained on) and ``ground_truth`` (the CSV's
  label column). Threshold curves and calibration read them. Stored as arrays in
  ``models/model-<id>-oof-<truth>-seed<seed>.npz`` (plain arrays, read with ``allow_pickle=False``).
- *Held-out evaluation* (:class:`Evaluation`): scores on the ground truth of held-out subjects
  (:func:`evaluate_model`), stored as JSON in ``model_evaluations``.

Both belong to the model, not to the label log: a later label event changes neither (the
labels OOF is over the labels the model learned from). A model trained before they were stored
gets them computed on first request and stored then (when the workspace is writable).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import training_labels
from serieslabeler.labels.vocabulary import vocabulary_order
from serieslabeler.metrics.classification import classification_report
from serieslabeler.models.base import (
    CV_FOLDS,
    ModelRecord,
    TrainingData,
    image_subjects,
    training_data,
)
from serieslabeler.models.features import ensure_features
from serieslabeler.models.files import (
    latest_model_id,
    load_classifier,
    load_model_record,
)
from serieslabeler.models.head import HeadClassifier, align_proba, grouped_oof_proba
from serieslabeler.models.monotone import decode_series
from serieslabeler.models.splits import grouped_split
from serieslabeler.store.arrays import load_record_arrays, save_record_arrays
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.queries import has_ground_truth, image_times
from serieslabeler.store.series import saved_split, series_groups
from serieslabeler.store.workspace import Workspace

EVALUATION_TEST_SIZE = 0.3
OOF_TRUTHS = ("labels", "ground_truth")
HEAD_OPTIONS = ("kind", "C", "hidden", "max_iter")


# --- ground truth -----------------------------------------------------------------------------
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


# --- out-of-fold probabilities ----------------------------------------------------------------
@dataclass
class OutOfFold:
    """Grouped out-of-fold class probabilities of one model's head, for one kind of truth."""

    image_ids: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    proba: np.ndarray
    classes: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.classes[np.argmax(self.proba, axis=1)]

    @property
    def class_index(self) -> np.ndarray:
        column = {c: j for j, c in enumerate(self.classes)}
        return np.array([column[v] for v in self.labels], dtype=np.intp)

    @property
    def split(self) -> str:
        return f"{min(CV_FOLDS, len(np.unique(self.subjects)))}-fold GroupKFold by subject, out-of-fold predictions"

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, rows) -> "OutOfFold":
        """The same predictions for ``rows`` only (positions)."""
        return OutOfFold(self.image_ids[rows], self.labels[rows], self.subjects[rows], self.proba[rows], self.classes)


def head_options(record: ModelRecord) -> dict:
    """The head classifier's parameters a model was trained with."""
    return {k: record.params[k] for k in HEAD_OPTIONS if k in record.params}


def oof_path(workspace: Workspace, model_id: int, truth: str, seed: int) -> Path:
    return workspace.models_dir / f"model-{int(model_id)}-oof-{truth}-seed{int(seed)}.npz"


def compute_oof(workspace: Workspace, record: ModelRecord, truth: str, seed: int, data: TrainingData | None = None) -> OutOfFold:
    """Fit the head on each fold's other subjects and score the held-out fold (``data``: the
    labels to use for ``truth="labels"``; default the accepted labels now)."""
    if truth not in OOF_TRUTHS:
        raise PipelineError(f"truth must be one of {', '.join(OOF_TRUTHS)}, not '{truth}'")
    if truth == "labels":
        data = data or training_data(workspace)
        ids, labels, weights, subjects = data.image_ids, data.labels, data.weights, data.subjects
    else:
        ids, labels, subjects = ground_truth(workspace)
        weights = np.ones(len(ids))
    ensure_features(workspace, record.feature_set, ids)
    _, X = FeatureStore(workspace).load(record.feature_set, ids)
    options = head_options(record)
    proba, classes = grouped_oof_proba(X, labels, subjects, weights, lambda: HeadClassifier(**options, random_state=seed), CV_FOLDS, seed)
    return OutOfFold(np.asarray(ids, dtype=np.int64), np.asarray([str(v) for v in labels]), np.asarray(subjects, dtype=np.int64), proba, classes)


def save_oof(workspace: Workspace, model_id: int, truth: str, seed: int, oof: OutOfFold) -> None:
    save_record_arrays(oof_path(workspace, model_id, truth, seed), oof)


def load_oof(path: Path) -> OutOfFold:
    return load_record_arrays(path, OutOfFold)


def stored_oof(workspace: Workspace, model_id: int, truth: str, seed: int) -> OutOfFold | None:
    """A model's stored out-of-fold probabilities, None where training stored none (labels of a
    single subject or class, a model trained before they were)."""
    path = oof_path(workspace, model_id, truth, seed)
    return load_oof(path) if path.is_file() else None


def out_of_fold(workspace: Workspace, model_id: int, truth: str = "labels", seed: int = 0) -> OutOfFold:
    """A model's stored out-of-fold probabilities; computed (and stored) for a model trained before they were."""
    record = load_model_record(workspace, model_id)
    stored = stored_oof(workspace, record.id, truth, seed)
    if stored is not None:
        return stored
    oof = compute_oof(workspace, record, truth, seed)
    if not workspace.read_only:
        save_oof(workspace, record.id, truth, seed, oof)
    return oof


# --- evaluation against the ground truth of held-out subjects ---------------------------------
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
    """Score a model (default: the latest) on the ground truth of held-out subjects.

    A model that saw none of the held-out subjects is scored as stored. A head model that saw
    some is refitted without their images (same features, parameters and training labels). Any
    other model is scored on the held-out images outside its training set, flagged optimistic.
    """

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
    held-out series, one per subject or per part under the saved split (None otherwise)."""
    order = vocabulary_order(workspace)
    if order is None:
        return None
    labels, _ = decode_series(proba, classes, order, series_groups(workspace, ids), image_times(workspace, ids))
    return classification_report(truth, labels.astype(str), sorted(set(all_classes) | set(labels.astype(str)))).to_dict()


def _refit_head(workspace: Workspace, record, image_ids: np.ndarray, seed: int):

    ids, labels, weights = training_labels(workspace)
    keep = np.isin(ids, image_ids)
    if not keep.any():
        raise PipelineError(f"model {record.id}: every training image belongs to a held-out subject; label images of other subjects")
    _, X = FeatureStore(workspace).load(record.feature_set, ids[keep])
    return HeadClassifier(**head_options(record), random_state=seed).fit(X, labels[keep].astype(str), sample_weight=weights[keep])


def evaluation_name(test_size: float, seed: int, split: str | None = None) -> str:
    """The name a held-out evaluation is stored under; a saved series split (which the decoded
    scores follow) is part of it, so saving another computes them again."""
    return f"held_out test_size={float(test_size)} seed={int(seed)}" + ("" if split is None else f" series={split}")


def store_evaluation(workspace: Workspace, model_id: int, name: str, value: dict) -> None:
    with workspace.transaction() as db:
        db.execute("INSERT OR REPLACE INTO model_evaluations(model_id, name, value) VALUES (?,?,?)", (int(model_id), name, json.dumps(value)))


def stored_evaluation(workspace: Workspace, model_id: int, test_size: float = EVALUATION_TEST_SIZE, seed: int = 0) -> dict:
    """A model's held-out evaluation (:meth:`Evaluation.to_dict`) as stored when it was trained;
    computed (and stored) for a model trained before that, or for another split."""
    return stored_value(workspace, model_id, evaluation_name(test_size, seed, saved_split(workspace)), lambda: evaluate_model(workspace, model_id, test_size, seed).to_dict())


def stored_value(workspace: Workspace, model_id: int, name: str, compute: Callable[[], object]):
    """What is stored with a model under ``name`` (JSON), computed and stored on first use (only
    read on a read-only workspace): work done once per model, never once per page view."""
    row = workspace.db.execute("SELECT value FROM model_evaluations WHERE model_id=? AND name=?", (int(model_id), name)).fetchone()
    if row is not None:
        return json.loads(row[0])
    value = compute()
    if not workspace.read_only:
        store_evaluation(workspace, model_id, name, value)
    return value


# --- at training time -------------------------------------------------------------------------
def record_evaluations(workspace: Workspace, record: ModelRecord, data: TrainingData, labels_oof: OutOfFold | None = None) -> list[str]:
    """Compute and store what is measured of a freshly trained model; the names of what was stored.

    ``labels_oof``: the labels' out-of-fold probabilities when training already computed them.
    Measurements the workspace cannot give (labels of a single subject or class, no ground
    truth, no held-out images left) are skipped; asking for them later explains why.
    """
    seed = int(record.params.get("seed", 0))
    stored = []
    if len(np.unique(data.subjects)) >= 2 and len(np.unique(data.labels)) >= 2:
        save_oof(workspace, record.id, "labels", seed, labels_oof or compute_oof(workspace, record, "labels", seed, data))
        stored.append("oof labels")
    if has_ground_truth(workspace):
        try:
            save_oof(workspace, record.id, "ground_truth", seed, compute_oof(workspace, record, "ground_truth", seed))
            stored.append("oof ground_truth")
            store_evaluation(workspace, record.id, evaluation_name(EVALUATION_TEST_SIZE, 0, saved_split(workspace)), evaluate_model(workspace, record.id).to_dict())
            stored.append("held-out evaluation")
        except PipelineError:
            pass
    return stored
