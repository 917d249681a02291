"""PCA and t-SNE (openTSNE): the 2-D map of a collection, saved in the workspace.

A map is fitted on the clustering matrix of :func:`serieslabeler.space.metadata.build_matrix` (a feature
set plus weighted metadata): PCA to at most 50 dimensions, then openTSNE with all cores and a
fixed ``random_state``. New images are *placed* into an existing map with openTSNE's
``transform`` (their neighbours among the mapped images fix their position; the map itself
does not move) instead of refitting, which is how a map scales to a million images: fit on
a sample, place the rest. ``create_map`` does exactly that above ``max_fit`` images (25,000 by
default): PCA and t-SNE are fitted on a seeded random sample of that size and every other
image is placed with ``transform``, in chunks of ``PLACE_CHUNK`` rows so memory stays bounded.
Fitting t-SNE costs O(n log n) per iteration with large constants; placing costs O(n) (each new
point only feels the fixed map), so a million images take minutes, not hours.

Saved maps: a row in the ``maps`` table, the coordinates in ``maps/<key>.npz`` (image ids and
their 2-D positions: what the app draws, fast to read) and the fitted model in
``maps/<key>.model.npz`` (the metadata encoding, the PCA and the openTSNE embedding as plain
arrays plus JSON, :mod:`serieslabeler.space.stored`; needed only to place new images). Both
files are written atomically before the row is committed. Nothing is unpickled: a map model
left as a pickle by an older version is refused (recompute the map), and a catalog path that
is absolute or leaves the workspace is refused.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data

from serieslabeler.errors import PipelineError
from serieslabeler.progress import Progress
from serieslabeler.space.metadata import MetadataAppender, build_matrix, metadata_frame
from serieslabeler.space.stored import map_model_parts, map_model_to_arrays
from serieslabeler.store.arrays import load_saved, save_arrays
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.paths import relative_inside
from serieslabeler.store.queries import sample_ids
from serieslabeler.store.workspace import Workspace, atomic_path

PCA_COMPONENTS = 50


MIN_POINTS = 5


# Below this many points Barnes-Hut gradients are several times faster than FFT
# interpolation (whose grid costs the same for 200 points as for 20,000); openTSNE's own rule.
FFT_FROM = 10_000


MAX_FIT = 25_000


PLACE_CHUNK = 100_000


# the most points a map view draws (the browser slows down beyond)
MAX_DRAWN = 5000


@dataclass
class Map:
    """A saved t-SNE map: image ``ids[i]`` is drawn at ``coords[i]``."""

    id: int
    feature_set: str
    params: dict
    ids: np.ndarray
    coords: np.ndarray
    created_at: str = ""
    path: Path | None = field(default=None, repr=False)


def drawn_rows(n: int, max_points: int = MAX_DRAWN) -> np.ndarray:
    """The rows of an ``n``-point map to draw: all of them, or a fixed random subset of ``max_points``.

    The subset is seeded (0), so every view of the same map shows the same points.
    """
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))


def fit_pca(X: np.ndarray, n_components: int = PCA_COMPONENTS, random_state: int = 0):
    """A fitted scikit-learn PCA with ``min(n_components, n_samples, n_features)`` components."""
    components = max(1, min(n_components, X.shape[0], X.shape[1]))
    return PCA(n_components=components, random_state=random_state).fit(X)


class TSNEMapper(TransformerMixin, BaseEstimator):
    """PCA then openTSNE, a scikit-learn transformer: ``fit_transform`` makes the map,
    ``transform`` places new rows into it.

    ``negative_gradient_method``: ``"fft"``, ``"bh"``, or ``"auto"`` (FFT from
    ``FFT_FROM`` points on, Barnes-Hut below). ``perplexity`` is lowered to ``(n - 1) / 3``
    for small inputs (``perplexity_`` is the one used). ``n_jobs=-1`` uses every core; on a
    machine already busy with other work, ``n_jobs=1`` can be several times faster (the
    threads wait on each other every iteration).

    ``max_fit``: when set and the input has more rows, PCA and t-SNE are fitted on a random
    sample of ``max_fit`` rows (``random_state``) and the others are placed with
    :meth:`transform`; ``fit_index_`` holds the rows fitted on (all rows otherwise).
    """

    def __init__(
        self,
        perplexity: float = 30.0,
        pca_components: int = PCA_COMPONENTS,
        random_state: int = 0,
        n_jobs: int = -1,
        negative_gradient_method: str = "auto",
        n_iter: int = 500,
        max_fit: int | None = None,
    ):
        self.perplexity = perplexity
        self.pca_components = pca_components
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.negative_gradient_method = negative_gradient_method
        self.n_iter = n_iter
        self.max_fit = max_fit

    def fit(self, X) -> "TSNEMapper":
        self.fit_transform(X)
        return self

    def fit_transform(self, X) -> np.ndarray:
        from openTSNE import TSNE

        X = validate_data(self, X, dtype=np.float32)
        if len(X) < MIN_POINTS:
            raise PipelineError(f"a t-SNE map needs at least {MIN_POINTS} images, not {len(X)}")
        if self.perplexity <= 0:
            raise PipelineError(f"--perplexity must be positive, not {self.perplexity}")
        if self.max_fit is not None and self.max_fit < MIN_POINTS:
            raise PipelineError(f"--max-fit must be at least {MIN_POINTS}, not {self.max_fit}")
        self.fit_index_ = self._fit_rows(len(X))
        fitted = X[self.fit_index_]
        self.pca_ = fit_pca(fitted, self.pca_components, self.random_state)
        reduced = self.pca_.transform(fitted)
        self.perplexity_ = float(min(self.perplexity, (len(fitted) - 1) / 3))
        self.negative_gradient_method_ = self._gradient_method(len(fitted))
        self.embedding_ = TSNE(
            perplexity=self.perplexity_, n_iter=self.n_iter, n_jobs=self.n_jobs, random_state=self.random_state,
            negative_gradient_method=self.negative_gradient_method_,
        ).fit(reduced)
        self.kl_divergence_ = float(self.embedding_.kl_divergence)
        if len(fitted) == len(X):
            return np.asarray(self.embedding_, dtype=np.float32)
        coords = np.empty((len(X), 2), dtype=np.float32)
        coords[self.fit_index_] = self.embedding_
        placed = np.setdiff1d(np.arange(len(X)), self.fit_index_)
        coords[placed] = self.transform(X[placed])
        return coords

    def transform(self, X) -> np.ndarray:
        """Place rows into the fitted map (openTSNE ``transform``), ``PLACE_CHUNK`` rows at a time."""
        check_is_fitted(self, "embedding_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        coords = np.empty((len(X), 2), dtype=np.float32)
        for start in range(0, len(X), PLACE_CHUNK):
            part = slice(start, start + PLACE_CHUNK)
            coords[part] = self.embedding_.transform(self.pca_.transform(X[part]))
        return coords

    def _fit_rows(self, n: int) -> np.ndarray:
        if self.max_fit is None or n <= self.max_fit:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.random_state).choice(n, self.max_fit, replace=False))

    def _gradient_method(self, n: int) -> str:
        if self.negative_gradient_method == "auto":
            return "fft" if n >= FFT_FROM else "bh"
        return self.negative_gradient_method


@dataclass
class MapModel:
    """What placing new images into a saved map needs: how the matrix was built and the mapper."""

    appender: MetadataAppender
    mapper: TSNEMapper
    absolute_dates: bool = False


def create_map(
    workspace: Workspace,
    features: str,
    metadata: dict[str, float] | None = None,
    absolute_dates: bool = False,
    perplexity: float = 30.0,
    seed: int = 0,
    sample_id: int | None = None,
    image_ids=None,
    negative_gradient_method: str = "auto",
    n_jobs: int = -1,
    progress: Progress | None = None,
    max_fit: int | None = MAX_FIT,
) -> Map:
    """Fit and save a map of a feature set's images (or a sample's, or ``image_ids``); above
    ``max_fit`` images it is fitted on a sample of that size and the rest are placed (None: fit all)."""
    if sample_id is not None:

        image_ids = sample_ids(workspace, sample_id)
    matrix = build_matrix(workspace, features, image_ids, metadata, absolute_dates)
    mapper = TSNEMapper(
        perplexity, random_state=seed, n_jobs=n_jobs, negative_gradient_method=negative_gradient_method, max_fit=max_fit,
    )
    coords = mapper.fit_transform(matrix.X)
    if progress:
        progress(len(matrix.ids), len(matrix.ids))
    params = {
        "metadata": matrix.metadata, "absolute_dates": absolute_dates, "perplexity": perplexity,
        "perplexity_used": mapper.perplexity_, "seed": seed, "sample_id": sample_id,
        "pca_components": int(mapper.pca_.n_components_), "negative_gradient_method": mapper.negative_gradient_method_,
        "kl_divergence": mapper.kl_divergence_, "max_fit": max_fit, "fitted_on": len(mapper.fit_index_),
    }
    return save_map(workspace, matrix.feature_set, matrix.ids, coords, params, MapModel(matrix.appender, mapper, absolute_dates))


def save_map(
    workspace: Workspace, feature_set: str, ids, coords, params: dict, model: MapModel | None = None
) -> Map:
    """Write the map's files atomically, then record it in one transaction."""
    ids = np.asarray(ids, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float32)
    if coords.shape != (len(ids), 2):
        raise PipelineError(f"map coordinates must have shape ({len(ids)}, 2), not {coords.shape}")
    path = workspace.maps_dir / f"{uuid.uuid4().hex[:12]}.npz"
    with atomic_path(path) as tmp:
        np.savez(tmp, ids=ids, coords=coords)
    if model is not None:
        with atomic_path(_model_path(path)) as tmp:
            save_arrays(tmp, *map_model_to_arrays(model))
    relative = str(path.relative_to(workspace.root))
    with workspace.transaction() as db:
        cursor = db.execute(
            "INSERT INTO maps(feature_set, params, path, n) VALUES (?,?,?,?)",
            (feature_set, json.dumps(params), relative, len(ids)),
        )
    return load_map(workspace, cursor.lastrowid)


def load_map(workspace: Workspace, map_id: int) -> Map:
    row = workspace.db.execute("SELECT * FROM maps WHERE id=?", (int(map_id),)).fetchone()
    if row is None:
        known = ", ".join(str(r[0]) for r in workspace.db.execute("SELECT id FROM maps ORDER BY id")) or "none yet"
        raise PipelineError(f"no map {map_id} in {workspace.root} (maps: {known}); make one with 'serieslabeler map'")
    path = relative_inside(workspace.root, row["path"], f"map {row['id']} file")
    with np.load(path, allow_pickle=False) as data:
        ids, coords = data["ids"], data["coords"]
    return Map(row["id"], row["feature_set"], json.loads(row["params"]), ids, coords, row["created_at"], path)


def latest_map(workspace: Workspace, feature_set: str | None = None) -> Map | None:
    """The newest map (of ``feature_set``, a name or a backbone with one set), or None."""
    if feature_set is None:
        row = workspace.db.execute("SELECT id FROM maps ORDER BY id DESC LIMIT 1").fetchone()
    else:
        name = FeatureStore(workspace).resolve(feature_set)
        row = workspace.db.execute("SELECT id FROM maps WHERE feature_set=? ORDER BY id DESC LIMIT 1", (name,)).fetchone()
    return None if row is None else load_map(workspace, row[0])


def list_maps(workspace: Workspace) -> list[dict]:
    rows = workspace.db.execute("SELECT id, feature_set, n, params, created_at FROM maps ORDER BY id").fetchall()
    return [{**dict(row), "params": json.loads(row["params"])} for row in rows]


def place_images(workspace: Workspace, map_id: int, image_ids) -> np.ndarray:
    """2-D positions of images in a saved map without refitting it (openTSNE ``transform``)."""
    saved = load_map(workspace, map_id)
    model = load_map_model(saved)
    ids, vectors = FeatureStore(workspace).load(saved.feature_set, image_ids)
    frame = metadata_frame(workspace, ids, model.appender.weights_, model.absolute_dates)
    return model.mapper.transform(model.appender.transform(vectors, frame))


def load_map_model(saved: Map) -> MapModel:
    """The model of a saved map, from its array file; a pickle left by an older version is refused
    unread (recompute the map), as is a model made with another scikit-learn/openTSNE major.minor."""
    arrays, meta = load_saved(_model_path(saved.path), f"map {saved.id}", "recompute the map ('serieslabeler map' or the Embed & map page)")
    try:
        return MapModel(*map_model_parts(arrays, meta, TSNEMapper))
    except (KeyError, TypeError, ValueError) as error:
        raise PipelineError(f"map {saved.id}: its model file is incomplete or damaged ({error}); recompute the map") from None


def _model_path(coords_path: Path) -> Path:
    return coords_path.with_name(coords_path.name[: -len(".npz")] + ".model.npz")
