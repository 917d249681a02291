"""models.base"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import training_labels
from serieslabeler.store.queries import id_array
from serieslabeler.store.workspace import Workspace

DEFAULT_TOP_K = 3


CV_FOLDS = 5


PREDICT_CHUNK = 65536


# --- predictions -----------------------------------------------------------------------------
@dataclass
class Predictions:
    """Per image: the top-1 label, its probability (confidence), the top-1 minus top-2 margin,
    the entropy (nats) of the class distribution, and the full probabilities (``proba``)."""

    model_id: int | None
    image_ids: np.ndarray
    classes: np.ndarray
    proba: np.ndarray = field(repr=False)

    @property
    def labels(self) -> np.ndarray:
        return self.classes[np.argmax(self.proba, axis=1)] if len(self.proba) else np.array([], dtype=str)

    @property
    def confidence(self) -> np.ndarray:
        return self.proba.max(axis=1) if len(self.proba) else np.zeros(0)

    @property
    def margin(self) -> np.ndarray:
        if self.proba.shape[1] < 2:
            return np.ones(len(self.proba))
        top2 = -np.partition(-self.proba, 1, axis=1)[:, :2]
        return top2[:, 0] - top2[:, 1]

    @property
    def entropy(self) -> np.ndarray:
        p = np.clip(self.proba, 1e-12, 1.0)
        return -(self.proba * np.log(p)).sum(axis=1)

    def topk(self, k: int = DEFAULT_TOP_K) -> list[list[tuple[str, float]]]:
        order = np.argsort(-self.proba, axis=1, kind="stable")[:, :k]
        return [[(str(self.classes[j]), float(row[j])) for j in cols] for row, cols in zip(self.proba, order)]

    def __len__(self) -> int:
        return len(self.image_ids)

    def summary(self, k: int = DEFAULT_TOP_K) -> dict:
        labels, counts = np.unique(self.labels, return_counts=True)
        return {
            "model_id": self.model_id,
            "images": len(self),
            "by_label": {str(a): int(b) for a, b in zip(labels, counts)},
            "mean_confidence": float(self.confidence.mean()) if len(self) else None,
        }


# --- models in the workspace ------------------------------------------------------------------
@dataclass
class ModelRecord:
    """A saved model (row of ``models``)."""

    id: int
    mode: str
    feature_set: str
    path: str
    classes: list[str]
    params: dict
    metrics: dict
    training_set: list[int] = field(repr=False)
    created_at: str = ""

    def summary(self) -> dict:
        data = asdict(self)
        data["training_set"] = len(self.training_set)
        return data


@dataclass
class TrainingData:
    """The labeled images a model learns from."""

    image_ids: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    subjects: np.ndarray


@dataclass
class Trained:
    """What a training mode returns before it is saved.

    ``feature_set`` None means "this model's own features" (``model-<id>``, made from
    ``network`` once the id is known).
    """

    classifier: object
    feature_set: str | None
    params: dict
    metrics: dict
    network: dict | None = None
    oof_proba: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    """``(proba, classes)``: the labels' grouped out-of-fold probabilities, when the mode computed them."""


def training_data(workspace: Workspace) -> TrainingData:
    """The accepted labels with their confidence weights and each image's subject."""

    image_ids, labels, weights = training_labels(workspace)
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if len(image_ids) == 0:
        raise PipelineError(
            f"no accepted labels in {workspace.root}: label clusters or images first "
            "('serieslabeler label ...' or the dashboard)"
        )
    return TrainingData(image_ids, np.asarray([str(v) for v in labels]), np.asarray(weights, dtype=float), image_subjects(workspace, image_ids))


def image_subjects(workspace: Workspace, image_ids) -> np.ndarray:
    """The subject id of each image, in the order given."""
    rows = workspace.db.execute("SELECT i.id, i.subject_id FROM json_each(?) j CROSS JOIN images i ON i.id = j.value", (id_array(image_ids),))
    by_id = {r[0]: r[1] for r in rows}
    return np.array([by_id[int(i)] for i in image_ids], dtype=np.int64)


def default_feature_set(workspace: Workspace) -> str:
    """The newest feature set in the workspace."""
    row = workspace.db.execute("SELECT name FROM feature_sets ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        raise PipelineError(f"no features in {workspace.root} yet; run 'serieslabeler embed --workspace ... --backbone NAME'")
    return row[0]
