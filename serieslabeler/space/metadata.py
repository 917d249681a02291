"""The clustering matrix: a feature set plus chosen metadata fields, each with its share of variance.

Unscaled, a few metadata columns are drowned by 2,048 embedding dimensions (or drown them, if
their units are large). Here every *block* (the image features; each metadata field) is
encoded, centered, and scaled so that its weight is exactly its share of the total variance
of the final matrix:

1. encode: the image features as they are; a numeric field as ``value - mean`` (a missing
   value becomes the mean, i.e. 0); a categorical field one-hot (one column per value seen
   at fit time; missing or unseen values give a row of zeros);
2. center every column and divide each block ``B`` by ``sqrt(TV(B))``, where
   ``TV(B) = sum of the column variances of B``, so every block has total variance 1
   (for a numeric field without missing values this is its z-score);
3. multiply metadata field ``f`` by ``sqrt(w_f)`` and the image features by
   ``sqrt(1 - sum_f w_f)``.

The final matrix has total variance ``(1 - sum w) + sum w_f = 1`` and field ``f`` carries
``TV = w_f``: a share ``w_f`` of it. Weight 0 means the field is off; weights must lie in
[0, 1) and sum below 1, so the image features always keep a share. A field that is
constant on the fitted images carries no information and contributes nothing (its columns are
zero), so the matrix's total variance is then ``1 - w_f``.

Metadata fields are the workspace's attributes plus two derived numeric fields:

- ``days``: days (fractional, from the timestamps) since that subject's first image, or since
  the collection's first image with ``absolute_dates=True``;
- ``date``: days since the collection's first image;
- ``add``: accumulated degree-days since the subject's first photo, when the workspace has a
  weather table (``serieslabeler weather``; :mod:`serieslabeler.ingest.weather_store`).

An attribute named ``days``, ``date`` or ``add`` takes precedence over the derived field of that name.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from serieslabeler.errors import PipelineError
from serieslabeler.ingest.weather_store import degree_days, has_weather
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.queries import id_array
from serieslabeler.store.workspace import Workspace

FEATURES = "features"


# the dtypes the feature block is read in (float32 features stay float32: no copy of a million rows)
FLOAT_TYPES = (np.float32, np.float64)


DERIVED = {"days": "numeric", "date": "numeric"}


DEGREE_DAYS = "add"


SECONDS_PER_DAY = 86400.0


CHUNK_ROWS = 16_384


@dataclass
class FeatureMatrix:
    """Rows ``X[i]`` for images ``ids[i]``; ``blocks[name]`` are the columns of the image
    features (``"features"``) and of each metadata field. ``appender`` is fitted on these
    rows and encodes new images the same way (``appender.transform``)."""

    ids: np.ndarray
    X: np.ndarray
    blocks: dict[str, slice]
    feature_set: str = ""
    metadata: dict[str, float] = field(default_factory=dict)
    appender: "MetadataAppender | None" = None


def metadata_fields(workspace: Workspace) -> dict[str, str]:
    """Every field that can be appended, with its kind (``numeric`` or ``categorical``)."""
    weather = {DEGREE_DAYS: "numeric"} if has_weather(workspace) else {}
    return {**DERIVED, **weather, **{name: kind for name, (_, kind) in _attributes(workspace).items()}}


def check_weights(weights: Mapping[str, float] | None, available: Mapping[str, str]) -> dict[str, float]:
    """The non-zero weights, after checking names and values; raise a clear error otherwise."""
    weights = dict(weights or {})
    for name, weight in weights.items():
        if name not in available:
            raise PipelineError(
                f"unknown metadata field '{name}'; available fields: {', '.join(available) or 'none'}"
            )
        if not 0.0 <= float(weight) < 1.0:
            raise PipelineError(f"metadata weight {name}={weight} must be at least 0 and below 1 (a share of the variance)")
    total = sum(float(w) for w in weights.values())
    if total >= 1.0:
        raise PipelineError(
            f"metadata weights sum to {total:g}; they must sum below 1 so the image features keep a share of the variance"
        )
    return {name: float(w) for name, w in weights.items() if float(w) > 0.0}


def metadata_frame(workspace: Workspace, image_ids, fields=None, absolute_dates: bool = False):
    """A pandas DataFrame indexed by image id: one column per field (numeric as float with NaN
    for missing values, categorical as strings or None), in the order of ``image_ids``."""

    attributes = _attributes(workspace)
    fields = list(metadata_fields(workspace)) if fields is None else list(fields)
    check_weights(dict.fromkeys(fields, 0.0), metadata_fields(workspace))
    ids = np.asarray(image_ids, dtype=np.int64)
    frame = pd.DataFrame(index=pd.Index(ids, name="image_id"))
    for name in (f for f in fields if f in attributes):
        attribute_id, kind = attributes[name]
        values = dict(
            (row[0], row[1])
            for row in workspace.db.execute(
                "SELECT a.image_id, a.value FROM json_each(?) j CROSS JOIN image_attributes a ON a.image_id = j.value AND a.attribute_id = ?",
                (id_array(ids), attribute_id),
            )
        )
        column = pd.Series([values.get(int(i)) for i in ids], index=frame.index, dtype=object)
        frame[name] = pd.to_numeric(column, errors="coerce") if kind == "numeric" else column
    if DEGREE_DAYS in fields and DEGREE_DAYS not in attributes:
        frame[DEGREE_DAYS] = degree_days(workspace, ids)
    derived = [f for f in fields if f not in attributes and f != DEGREE_DAYS]
    if derived:
        since_subject, since_collection = _elapsed_days(workspace, ids)
        for name in derived:
            frame[name] = since_collection if name == "date" or absolute_dates else since_subject
    return frame


def build_matrix(
    workspace: Workspace,
    feature_set: str,
    image_ids=None,
    metadata: Mapping[str, float] | None = None,
    absolute_dates: bool = False,
) -> FeatureMatrix:
    """The clustering matrix of a feature set (all its images, or ``image_ids`` in that order)
    with the ``metadata`` fields appended at their weights (see the module docstring)."""
    store = FeatureStore(workspace)
    name = store.resolve(feature_set)
    kinds = metadata_fields(workspace)
    weights = check_weights(metadata, kinds)
    ids, vectors = store.load(name, image_ids)
    frame = metadata_frame(workspace, ids, weights, absolute_dates)
    appender = MetadataAppender(weights, kinds)
    X = appender.fit_transform(vectors, frame)
    return FeatureMatrix(ids, X, appender.blocks_, name, weights, appender)


class MetadataAppender(TransformerMixin, BaseEstimator):
    """Scale image features and append weighted, normalized metadata (module docstring).

    A scikit-learn transformer: configuration in ``__init__``, the learned encoding (means,
    categories, block scales) in attributes ending in ``_`` set by :meth:`fit`, ``X`` checked
    by ``validate_data`` (float32 and float64 kept as they are). ``metadata`` is any mapping
    of field name -> column (a pandas DataFrame works) aligned with ``X``.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, kinds: Mapping[str, str] | None = None):
        self.weights = weights
        self.kinds = kinds

    def fit(self, X, metadata: Mapping | None = None) -> "MetadataAppender":
        X = validate_data(self, X, dtype=FLOAT_TYPES)
        kinds = dict(self.kinds or {})
        weights = check_weights(self.weights, kinds or dict.fromkeys(self.weights or {}, "numeric"))
        self.weights_ = weights
        self.encoders_ = {name: _FieldEncoder(kinds.get(name, "numeric")).fit(metadata[name]) for name in weights}
        self.feature_mean_ = X.mean(axis=0, dtype=np.float64)
        self.feature_scale_ = np.sqrt(1.0 - sum(weights.values())) / _root_total_variance(X, self.feature_mean_)
        blocks, start = {FEATURES: slice(0, X.shape[1])}, X.shape[1]
        for name, encoder in self.encoders_.items():
            blocks[name] = slice(start, start + encoder.width_)
            start += encoder.width_
        self.blocks_ = blocks
        return self

    def transform(self, X, metadata: Mapping | None = None) -> np.ndarray:
        """The float32 matrix, computed in float64 row chunks: a million rows need no float64 copy."""
        check_is_fitted(self, "blocks_")
        X = validate_data(self, X, dtype=FLOAT_TYPES, reset=False)
        out = np.empty((len(X), max(block.stop for block in self.blocks_.values())), np.float32)
        features = self.blocks_[FEATURES]
        for rows in row_chunks(len(X)):
            out[rows, features] = (X[rows] - self.feature_mean_) * self.feature_scale_
        for name, encoder in self.encoders_.items():
            out[:, self.blocks_[name]] = encoder.transform(metadata[name]) * np.sqrt(self.weights_[name])
        return out

    def fit_transform(self, X, metadata: Mapping | None = None) -> np.ndarray:
        return self.fit(X, metadata).transform(X, metadata)


class _FieldEncoder:
    """One metadata field -> a centered block with total variance 1 on the fitted rows."""

    def __init__(self, kind: str):
        self.kind = kind

    def fit(self, values) -> "_FieldEncoder":
        if self.kind == "numeric":
            numbers = _as_float(values)
            finite = numbers[np.isfinite(numbers)]
            self.mean_ = float(finite.mean()) if len(finite) else 0.0
        else:
            self.categories_ = sorted({str(v) for v in values if _present(v)})
        raw = self._encode(values)
        self.center_ = raw.mean(axis=0)
        self.scale_ = 1.0 / _root_total_variance(raw, self.center_)
        self.width_ = raw.shape[1]
        return self

    def transform(self, values) -> np.ndarray:
        return (self._encode(values) - self.center_) * self.scale_

    def _encode(self, values) -> np.ndarray:
        if self.kind == "numeric":
            numbers = _as_float(values) - self.mean_
            return np.where(np.isfinite(numbers), numbers, 0.0)[:, None]
        index = {category: i for i, category in enumerate(self.categories_)}
        one_hot = np.zeros((len(values), len(self.categories_)))
        for row, value in enumerate(values):
            if _present(value) and str(value) in index:
                one_hot[row, index[str(value)]] = 1.0
        return one_hot


def _root_total_variance(X: np.ndarray, center: np.ndarray) -> float:
    """``sqrt(sum of column variances)`` of ``X`` around ``center`` (its column means), in row
    chunks; infinity for a constant block, so it scales to zero."""
    squares = sum(float(((X[rows] - center) ** 2).sum()) for rows in row_chunks(len(X)))
    total = squares / max(len(X), 1)
    return float(np.sqrt(total)) if total > 1e-12 else float("inf")


def row_chunks(n: int, size: int = CHUNK_ROWS) -> list[slice]:
    """Slices covering ``range(n)`` in blocks of ``size`` rows (bounded temporaries on big matrices)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _as_float(values) -> np.ndarray:
    return np.array([float(v) if _present(v) else np.nan for v in values], dtype=np.float64)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value != ""


def _elapsed_days(workspace: Workspace, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since each image's subject's first image, and since the collection's first image."""

    rows = workspace.db.execute(
        "SELECT i.id, i.taken_at, (SELECT MIN(f.taken_at) FROM images f WHERE f.subject_id = i.subject_id) "
        "FROM json_each(?) j CROSS JOIN images i ON i.id = j.value",
        (id_array(ids),),
    ).fetchall()
    by_id = {row[0]: (row[1], row[2]) for row in rows}
    taken = pd.to_datetime([by_id[int(i)][0] for i in ids], format="ISO8601")
    first = pd.to_datetime([by_id[int(i)][1] for i in ids], format="ISO8601")
    start = pd.to_datetime(workspace.db.execute("SELECT MIN(taken_at) FROM images").fetchone()[0], format="ISO8601")
    since_subject = np.asarray((taken - first).total_seconds(), dtype=np.float64) / SECONDS_PER_DAY
    since_collection = np.asarray((taken - start).total_seconds(), dtype=np.float64) / SECONDS_PER_DAY
    return since_subject, since_collection


def _attributes(workspace: Workspace) -> dict[str, tuple[int, str]]:
    """Attribute name -> (id, kind)."""
    rows = workspace.db.execute("SELECT name, id, kind FROM attributes ORDER BY name").fetchall()
    return {row[0]: (int(row[1]), row[2]) for row in rows}
