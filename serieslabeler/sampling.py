"""Sampling strategies: which images to work on in this iteration.

Every strategy draws from a *pool*: all images (or the ``image_ids`` given), minus those that
already have a label (any row of ``current_labels``) unless ``include_labeled`` is set. Each is
reproducible under its ``seed`` and each sample is saved in ``samples`` (strategy + parameters as
JSON) and ``sample_images``.

- ``random``: ``size`` images uniformly at random.
- ``subjects``: ``subjects`` subjects at random and all of their pool images across time, so
  every stage of each chosen subject is covered (the structure-aware sample).
- ``time-stratified``: ``size`` images spread evenly over ``bins`` equal-width bins of days since
  each subject's first image (``time="add"``: of accumulated degree-days, with a weather table);
  inside a bin the picks alternate between subjects.
- ``uncertainty``: the ``size`` images a model is least sure about, by ``measure`` (``entropy``:
  highest entropy; ``margin``: smallest top-1/top-2 margin; ``least-confidence``: lowest top-1
  confidence), read from the ``predictions`` table of ``model`` (default: the latest model with
  predictions).
- ``coreset``: greedy k-center on the vectors of feature set ``features``: each pick is the pool
  image farthest from everything picked so far and from the labeled images (a diverse sample).
  With no labeled images to start from, the first pick is random (seeded).
"""
from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
from sklearn.metrics import pairwise_distances_argmin_min

from serieslabeler.errors import PipelineError
from serieslabeler.ingest.weather_store import degree_days
from serieslabeler.store.collection import collection_times, labeled_image_ids
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace

UNCERTAINTY_MEASURES = ("entropy", "margin", "least-confidence")


DEFAULT_TIME_BINS = 10


TIME_AXES = ("days", "add")


@dataclass
class Sample:
    """A saved sample: its id, how it was drawn, and the image ids it holds (sorted)."""

    id: int | None
    strategy: str
    params: dict
    image_ids: np.ndarray = field(repr=False)
    created_at: str = ""

    @property
    def size(self) -> int:
        return len(self.image_ids)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["image_ids"] = [int(i) for i in self.image_ids]
        data["size"] = self.size
        return data


@dataclass(frozen=True)
class Pool:
    """The images a strategy may pick from, with their subject and days since its first image."""

    ids: np.ndarray
    subjects: np.ndarray
    days: np.ndarray


# --- the pool ---------------------------------------------------------------------------------
def sample_pool(workspace: Workspace, include_labeled: bool = False, image_ids=None) -> Pool:
    """All images (or ``image_ids``), minus labeled ones unless ``include_labeled``, sorted by id.

    The collection's times are read once per ingest (:func:`collection_times`); only which images
    are labeled is read each time."""
    times = collection_times(workspace)
    keep = np.ones(len(times.ids), dtype=bool)
    if not include_labeled:
        keep &= ~np.isin(times.ids, labeled_image_ids(workspace), assume_unique=True)
    if image_ids is not None:
        keep &= np.isin(times.ids, np.asarray(image_ids, dtype=np.int64))
    return Pool(times.ids[keep], times.subjects[keep], times.days[keep])


def _require_size(size: int | None, available: int, strategy: str) -> int:
    if size is None or size < 1:
        raise PipelineError(f"strategy '{strategy}' needs a sample size of at least 1 (--size N)")
    if size > available:
        raise PipelineError(
            f"strategy '{strategy}': asked for {size} images but only {available} are available "
            f"(unlabeled, in the pool); ask for at most {available} or pass --include-labeled"
        )
    return size


# --- strategies -------------------------------------------------------------------------------
def pick_random(workspace: Workspace, pool: Pool, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    size = _require_size(size, len(pool.ids), "random")
    return rng.choice(pool.ids, size=size, replace=False)


def pick_subjects(workspace: Workspace, pool: Pool, rng: np.random.Generator, subjects: int | None = None) -> np.ndarray:
    available = np.unique(pool.subjects)
    if subjects is None or subjects < 1:
        raise PipelineError("strategy 'subjects' needs the number of subjects to take (--subjects K), at least 1")
    if subjects > len(available):
        raise PipelineError(
            f"strategy 'subjects': asked for {subjects} subjects but only {len(available)} have unlabeled "
            f"images in the pool; ask for at most {len(available)}"
        )
    chosen = rng.choice(available, size=subjects, replace=False)
    return pool.ids[np.isin(pool.subjects, chosen)]


def pick_time_stratified(
    workspace: Workspace,
    pool: Pool, rng: np.random.Generator, size: int | None = None, bins: int = DEFAULT_TIME_BINS, time: str = "days"
) -> np.ndarray:
    size = _require_size(size, len(pool.ids), "time-stratified")
    if bins < 1:
        raise PipelineError(f"strategy 'time-stratified': bins must be at least 1, not {bins}")
    if time not in TIME_AXES:
        raise PipelineError(f"strategy 'time-stratified': time must be one of {', '.join(TIME_AXES)}, not '{time}'")
    if time == "add":
        pool = replace(pool, days=degree_days(workspace, pool.ids))
    edges = np.linspace(pool.days.min(), pool.days.max(), bins + 1)
    bin_of = np.clip(np.searchsorted(edges, pool.days, side="right") - 1, 0, bins - 1)
    members = [np.flatnonzero(bin_of == b) for b in range(bins)]
    quotas = _even_quotas(np.array([len(m) for m in members]), size, rng)
    picked = [m[_alternate_subjects(pool.subjects[m], rng)[:q]] for m, q in zip(members, quotas) if q]
    return pool.ids[np.concatenate(picked)]


def _even_quotas(capacity: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over bins as evenly as their capacities allow (the remainder goes to random bins)."""
    quotas = np.zeros_like(capacity)
    while quotas.sum() < total:
        remaining = total - quotas.sum()
        open_bins = np.flatnonzero(quotas < capacity)
        share = remaining // len(open_bins)
        if share:
            quotas[open_bins] = np.minimum(quotas[open_bins] + share, capacity[open_bins])
        else:
            quotas[rng.choice(open_bins, size=remaining, replace=False)] += 1
    return quotas


def _alternate_subjects(subjects: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of positions in which subjects take turns (each subject's 1st, then 2nd, ...)."""
    order = rng.permutation(len(subjects))
    turn = np.zeros(len(subjects), dtype=np.int64)
    seen: dict[int, int] = {}
    for position in order:
        subject = int(subjects[position])
        turn[position] = seen.get(subject, 0)
        seen[subject] = turn[position] + 1
    return order[np.argsort(turn[order], kind="stable")]


def pick_uncertain(
    workspace: Workspace,
    pool: Pool,
    rng: np.random.Generator,
    size: int | None = None,
    model: int | None = None,
    measure: str = "entropy",
) -> np.ndarray:
    if measure not in UNCERTAINTY_MEASURES:
        raise PipelineError(f"unknown uncertainty measure '{measure}'; choose one of {', '.join(UNCERTAINTY_MEASURES)}")
    model = latest_predicting_model(workspace) if model is None else model
    rows = workspace.db.execute(
        "SELECT image_id, confidence, margin, entropy FROM predictions WHERE model_id=? ORDER BY image_id", (model,)
    ).fetchall()
    if not rows:
        raise PipelineError(
            f"model {model} has no predictions in {workspace.root}; run 'serieslabeler predict --model {model}' first"
        )
    table = np.array([tuple(r) for r in rows], dtype=float)
    table = table[np.isin(table[:, 0].astype(np.int64), pool.ids)]
    size = _require_size(size, len(table), "uncertainty (images with predictions)")
    uncertainty = {"entropy": table[:, 3], "margin": -table[:, 2], "least-confidence": 1.0 - table[:, 1]}[measure]
    shuffled = rng.permutation(len(table))  # equal scores are ordered by the seed, not by id
    most_uncertain = shuffled[np.argsort(-uncertainty[shuffled], kind="stable")]
    return table[most_uncertain[:size], 0].astype(np.int64)


def predicting_model(workspace: Workspace) -> int | None:
    """The newest model with stored predictions, or None."""
    return workspace.db.execute("SELECT MAX(model_id) FROM predictions").fetchone()[0]


def latest_predicting_model(workspace: Workspace) -> int:
    model_id = predicting_model(workspace)
    if model_id is None:
        raise PipelineError(
            f"no predictions yet in {workspace.root}: uncertainty sampling needs a model's predictions; "
            "label some images, train a model ('serieslabeler train') and predict ('serieslabeler predict') first"
        )
    return int(model_id)


def pick_coreset(
    workspace: Workspace,
    pool: Pool,
    rng: np.random.Generator,
    size: int | None = None,
    features: str | None = None,
) -> np.ndarray:
    if not features:
        raise PipelineError("strategy 'coreset' needs a feature set (--features NAME, e.g. efficientnet_lite0)")
    store = FeatureStore(workspace)
    name = store.resolve(features)
    candidates = pool.ids[np.isin(pool.ids, store.ids(name))]
    size = _require_size(size, len(candidates), f"coreset (images with '{name}' features)")
    _, X = store.load(name, candidates)
    labeled = np.array([r[0] for r in workspace.db.execute("SELECT image_id FROM current_labels")], dtype=np.int64)
    anchors = np.setdiff1d(labeled[np.isin(labeled, store.ids(name))], candidates)
    anchor_vectors = store.load(name, anchors)[1] if len(anchors) else None
    return candidates[greedy_k_center(X, size, rng, anchor_vectors)]


def greedy_k_center(X: np.ndarray, size: int, rng: np.random.Generator, anchors: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``size`` rows of ``X``, each the farthest from the rows picked before it and the anchors.

    Memory is O(len(X)): one running minimum distance per row.
    """

    X = np.asarray(X, dtype=np.float32)
    if anchors is not None and len(anchors):
        nearest = pairwise_distances_argmin_min(X, anchors)[1].astype(np.float64)
        first = int(np.argmax(nearest))
    else:
        nearest = np.full(len(X), np.inf)
        first = int(rng.integers(len(X)))
    picked = [first]
    for _ in range(size - 1):
        nearest = np.minimum(nearest, np.linalg.norm(X - X[picked[-1]], axis=1))
        nearest[picked[-1]] = -1.0
        picked.append(int(np.argmax(nearest)))
    return np.array(picked, dtype=np.int64)


STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "random": pick_random,
    "subjects": pick_subjects,
    "time-stratified": pick_time_stratified,
    "uncertainty": pick_uncertain,
    "coreset": pick_coreset,
}


# --- draw, save, load -------------------------------------------------------------------------
def draw_sample(
    workspace: Workspace,
    strategy: str,
    size: int | None = None,
    subjects: int | None = None,
    seed: int = 0,
    include_labeled: bool = False,
    image_ids=None,
    save: bool = True,
    **params,
) -> Sample:
    """Draw a sample with ``strategy`` and save it; ``params`` are the strategy's own options.

    With ``save=False`` nothing is written and the returned sample has no id (a preview).

    ``image_ids`` limits the pool (e.g. to a previous sample). ``random``, ``time-stratified``,
    ``uncertainty`` and ``coreset`` take ``size``; ``subjects`` takes ``subjects``.
    """
    if strategy not in STRATEGIES:
        raise PipelineError(f"unknown sampling strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    pool = sample_pool(workspace, include_labeled, image_ids)
    if len(pool.ids) == 0:
        raise PipelineError(
            f"no images to sample from in {workspace.root}: every image in the pool is labeled "
            "(pass --include-labeled to sample labeled images too)"
        )
    rng = np.random.default_rng(seed)
    amount = {"subjects": subjects} if strategy == "subjects" else {"size": size}
    pick = STRATEGIES[strategy]
    check_options(pick, f"strategy '{strategy}'", workspace, pool, rng, **amount, **params)
    params = _resolve_sources(workspace, strategy, params)
    picked = np.sort(np.asarray(pick(workspace, pool, rng, **amount, **params), dtype=np.int64))
    recorded = {**amount, **params, "seed": seed, "include_labeled": include_labeled}
    if image_ids is not None:
        recorded["pool"] = len(np.unique(np.asarray(image_ids)))
    if not save:
        return Sample(None, strategy, recorded, picked)
    return save_sample(workspace, strategy, recorded, picked)


def _resolve_sources(workspace: Workspace, strategy: str, params: dict) -> dict:
    """The full feature-set name and the model id actually used, so the saved parameters say them."""

    if params.get("features"):
        params = {**params, "features": FeatureStore(workspace).resolve(params["features"])}
    if strategy == "uncertainty" and params.get("model") is None:
        params = {**params, "model": latest_predicting_model(workspace)}
    return params


def check_options(function: Callable, what: str, *args, **options) -> None:
    """Raise a clear error when ``options`` has a name that ``function`` does not take."""
    try:
        inspect.signature(function).bind(*args, **options)
    except TypeError:
        known = [p for p in inspect.signature(function).parameters][len(args):]
        raise PipelineError(
            f"{what} does not take option(s) {', '.join(sorted(set(options) - set(known)))}; "
            f"it takes {', '.join(known) or 'none'}"
        ) from None


def save_sample(workspace: Workspace, strategy: str, params: dict, image_ids: np.ndarray) -> Sample:
    with workspace.transaction() as db:
        cursor = db.execute("INSERT INTO samples(strategy, params) VALUES (?, ?)", (strategy, json.dumps(params)))
        sample_id = cursor.lastrowid
        db.executemany(
            "INSERT INTO sample_images(sample_id, image_id) VALUES (?, ?)", [(sample_id, int(i)) for i in image_ids]
        )
    return load_sample(workspace, sample_id)


def find_sample(workspace: Workspace, strategy: str, image_ids, params: dict | None = None) -> int | None:
    """The newest saved sample of ``strategy`` holding exactly ``image_ids`` (and, when given, saved
    with ``params``): saving or routing the same thing again reuses it instead of making a copy."""
    wanted_ids = np.sort(np.asarray(image_ids, dtype=np.int64))
    wanted = None if params is None else json.loads(json.dumps(params))
    for row in workspace.db.execute("SELECT id, params FROM samples WHERE strategy=? ORDER BY id DESC", (strategy,)).fetchall():
        if (wanted is None or json.loads(row["params"]) == wanted) and np.array_equal(load_sample(workspace, row["id"]).image_ids, wanted_ids):
            return int(row["id"])
    return None


def load_sample(workspace: Workspace, sample_id: int) -> Sample:
    row = workspace.db.execute("SELECT * FROM samples WHERE id=?", (int(sample_id),)).fetchone()
    if row is None:
        raise PipelineError(f"no sample {sample_id} in {workspace.root}; list them with 'serieslabeler samples'")
    ids = [r[0] for r in workspace.db.execute("SELECT image_id FROM sample_images WHERE sample_id=? ORDER BY image_id", (row["id"],))]
    return Sample(row["id"], row["strategy"], json.loads(row["params"]), np.array(ids, dtype=np.int64), row["created_at"])


def list_samples(workspace: Workspace) -> list[dict]:
    """Every saved sample, newest first: id, strategy, params, size, created_at."""
    rows = workspace.db.execute(
        "SELECT s.id, s.strategy, s.params, s.created_at, COUNT(si.image_id) AS size FROM samples s "
        "LEFT JOIN sample_images si ON si.sample_id = s.id GROUP BY s.id ORDER BY s.id DESC"
    ).fetchall()
    return [{**dict(r), "params": json.loads(r["params"])} for r in rows]
