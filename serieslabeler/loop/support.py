"""loop.support: pseudo-label only where the labels give evidence.

Why: a threshold's promised precision is measured on the labeled images (out of fold, by
subject). An unlabeled image unlike every labeled one (from a cluster the expert skipped as
mixed, or a kind of image nobody has labeled yet) can get a confident prediction, but nothing
measured says how often such predictions are right, and on the bundled collections they were
right far less often than promised (``bench/threshold_honesty.py``). So an image counts as
inside the labels' support when its nearest labeled image is no farther away than the labels
reach for one another across subjects: the ``quantile`` of the distances from each labeled image
to its nearest labeled image of another subject. Routing pseudo-labels only images inside; the
rest go back to clustering, where the expert sees them.

Distances are Euclidean in the model's feature set, projected on the reference's first
``components`` principal axes when it has more dimensions. The reference is at most
``max_reference`` labeled images (a seeded sample), so checking 500,000 unlabeled images of 512
dimensions (``bench/app_scale.py``'s 1M workspace) takes 7 s on 2 cores with their vectors in
the file cache, 3 s of it for the distances; read from disk, the vectors take over a minute.

With labels from a single subject there is no distance across subjects to compare with, and
every image counts as inside (as routing did before).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances_argmin_min

from serieslabeler.errors import PipelineError
from serieslabeler.metrics.shift import nearest_other_subject_distance
from serieslabeler.models.base import ModelRecord, image_subjects
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace

SUPPORT_QUANTILE = 0.9
MAX_REFERENCE = 2000
COMPONENTS = 32
CHUNK = 100_000


def check_quantile(quantile: float) -> None:
    if not 0.0 < float(quantile) <= 1.0:
        raise PipelineError(f"the support quantile must be in (0, 1], not {quantile}")


class LabelSupport(BaseEstimator):
    """``fit(X, groups)`` on the labeled images' vectors and subjects; ``inside(X)`` says which
    images lie within ``radius_`` of a labeled one (see the module docstring)."""

    def __init__(self, quantile: float = SUPPORT_QUANTILE, max_reference: int = MAX_REFERENCE, components: int | None = COMPONENTS,
                 random_state: int | None = 0):
        self.quantile = quantile
        self.max_reference = max_reference
        self.components = components
        self.random_state = random_state

    def fit(self, X, groups) -> "LabelSupport":
        check_quantile(self.quantile)
        X, groups = np.asarray(X, dtype=np.float32), np.asarray(groups)
        rows = reference_sample(np.arange(len(X)), self.max_reference, self.random_state)
        X, groups = X[rows], groups[rows]
        reduce = self.components is not None and X.shape[1] > self.components and len(X) > self.components
        self.projection_ = PCA(self.components, random_state=self.random_state).fit(X) if reduce else None
        self.reference_ = self._project(X)
        across = nearest_other_subject_distance(self.reference_, groups, self.reference_, groups)
        finite = across[np.isfinite(across)]
        self.radius_ = float(np.quantile(finite, self.quantile)) if len(finite) else np.inf
        return self

    def distance(self, X) -> np.ndarray:
        """Each row's distance to its nearest reference (labeled) image."""
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            return np.zeros(0)
        return pairwise_distances_argmin_min(self._project(X), self.reference_)[1]

    def inside(self, X) -> np.ndarray:
        return self.distance(X) <= self.radius_

    def _project(self, X: np.ndarray) -> np.ndarray:
        return X if self.projection_ is None else self.projection_.transform(X).astype(np.float32)


def reference_sample(items: np.ndarray, size: int, seed: int | None) -> np.ndarray:
    """``items`` itself, or a seeded sorted sample of ``size`` of them."""
    if len(items) <= size:
        return items
    return np.sort(np.random.default_rng(seed).choice(items, size, replace=False))


def model_support(workspace: Workspace, record: ModelRecord, quantile: float = SUPPORT_QUANTILE, seed: int = 0) -> LabelSupport:
    """The support of the labels ``record`` was trained on, in its feature set."""
    ids = reference_sample(np.asarray(record.training_set, dtype=np.int64), MAX_REFERENCE, seed)
    _, X = FeatureStore(workspace).load(record.feature_set, ids)
    return LabelSupport(quantile, random_state=seed).fit(X, image_subjects(workspace, ids))


def inside_support(workspace: Workspace, record: ModelRecord, image_ids, quantile: float = SUPPORT_QUANTILE, seed: int = 0) -> np.ndarray | None:
    """Whether each of ``image_ids`` lies inside the support of ``record``'s labels, their
    vectors read :data:`CHUNK` at a time; None when its feature set lacks some of them (a
    network that reads images predicts images that were never embedded)."""
    store = FeatureStore(workspace)
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if len(store.missing(record.feature_set, image_ids)):
        return None
    support = model_support(workspace, record, quantile, seed)
    parts = [support.inside(store.load(record.feature_set, image_ids[start:start + CHUNK])[1]) for start in range(0, len(image_ids), CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
