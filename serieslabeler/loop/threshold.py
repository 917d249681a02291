"""Threshold tuning: how precise the auto-labels are, and how many images they cover, per threshold.

An image is *auto-labeled* (becomes a pseudo-label) when the model's top-1 probability is at or
above the threshold. On a labeled validation set (predicted out-of-fold, folds grouped by
subject, so no image is scored by a model that saw its subject):

- *precision(t)*: the share of auto-labeled images whose predicted label is right;
- *coverage(t)*: the share of images auto-labeled.

Per class, the curve is over the images *predicted* as that class (a per-class threshold acts on
them): precision is the share of them that truly are that class, coverage the share of them
auto-labeled. Coverage falls as the threshold rises, so the threshold reaching a target
precision with the largest coverage is the lowest threshold whose precision reaches the target.

**Measured honestly** (:func:`validation_curves`). Three things made the old curve promise 82%
precision where the routed labels were right 40% of the time, and each is handled here:

1. *Who scores an image.* Every labeled image is predicted out of fold by a head fitted on the
   other folds' subjects (GroupKFold by subject), never by a model that saw it or its subject
   (:func:`model_oof`, the one place that obtains a model's out-of-fold probabilities).
2. *Which images the labels are.* Cluster labels are the typical images; what gets routed is
   the rest. Each labeled image is weighted by how representative it is of the routed pool
   (the unlabeled images the model predicted): importance weights ``p_pool(x) / p_labeled(x)``
   on two covariates, the out-of-fold confidence and the distance to the nearest labeled image
   of another subject (:mod:`serieslabeler.metrics.shift`). Precision at a threshold is the
   weighted share right among labeled images at or above it; coverage is the share of the
   *pool* at or above it. The effective sample size (Kish) of the images above the threshold
   gives a 95% Wilson interval: how far to trust the figure. Weighting cannot invent images
   that were never labeled: where the pool holds images unlike any label, the weights grow,
   the effective sample size falls and the interval widens, which is the honest answer.
3. *What the confidence means.* Confidences are calibrated on the same out-of-fold
   predictions (:mod:`serieslabeler.loop.calibrate`); thresholds are in calibrated units and
   routing applies the stored calibration.

   The intervals count subjects, not only images (:func:`serieslabeler.metrics.shift.clustered_effective_sizes`):
   a model that misreads one subject misreads many of its images, so 200 labeled images of
   6 subjects are worth far fewer than 200 independent ones.

4. *What the labels cannot see.* Weighting only reweights labeled images; kinds of image no
   label resembles (a class never named, the hard images the expert left out) stay invisible.
   :func:`precision_floor` says what the labels alone can guarantee: the precision if every
   routed image unlike the labels were wrong. The estimate and the floor bracket the truth
   only under assumptions; the audit needs none.
5. *A class never labeled.* A model cannot predict a class it was not trained on, so the images
   of a vocabulary class without labels are all routed into other classes, and every curve
   measured on the labels is blind to them (on bananas labeled through clusters, the classes
   left unnamed made most of the wrong pseudo-labels: the curve promised 81% where 43% were
   right). While the vocabulary names such classes (:func:`classes_without_labels`), the curve
   suggests no threshold and says why; an answered audit still can. The same holds while a class
   has fewer than :data:`MIN_CLASS_LABELS` labels (:func:`classes_short_of_labels`): one or
   three labels of a stage say nothing about how often its images are routed into others.

A random audit of the routed labels (:mod:`serieslabeler.loop.audit`) needs none of these
assumptions; when one has answers it is reported as the trusted estimate, and the threshold
suggestion can target the lower bound of its interval.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.vocabulary import vocabulary
from serieslabeler.loop.audit import audited_precision, audited_threshold
from serieslabeler.loop.calibrate import model_confidences, normalized, save_calibration
from serieslabeler.metrics.calibration import calibration_report
from serieslabeler.metrics.intervals import proportion_intervals
from serieslabeler.metrics.shift import (
    clustered_effective_sizes,
    effective_sample_size,
    importance_weights,
    nearest_other_subject_distance,
    unit_rows,
)
from serieslabeler.models.base import (
    ModelRecord,
    image_subjects,
)
from serieslabeler.models.evaluation import OutOfFold, out_of_fold, stored_value
from serieslabeler.models.features import ensure_features
from serieslabeler.models.files import latest_model_id, load_model_record
from serieslabeler.models.predictions import load_predictions
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace

POOL_SAMPLE = 5000
# labeled images a model's curves are measured on: above this, a seeded random sample of them
# (the importance weights compare every one with every other labeled image; 10,000 keep that
# to seconds, and a precision measured on 10,000 images is within a point)
CURVE_SAMPLE = 10_000



@dataclass(frozen=True)
class ThresholdCurve:
    """Precision and coverage at each candidate threshold (ascending), for all images or one class.

    ``precision`` is weighted when the images carry weights (see the module docstring);
    ``effective_n`` is the effective number of images at or above each threshold and
    ``low``/``high`` the 95% Wilson interval of the precision computed on it.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    coverage: np.ndarray
    count: np.ndarray
    total: int
    label: str | None = None
    effective_n: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    floor: np.ndarray | None = None

    def to_dict(self) -> dict:
        out = {
            "label": self.label,
            "total": self.total,
            "thresholds": self.thresholds.tolist(),
            "precision": self.precision.tolist(),
            "coverage": self.coverage.tolist(),
            "count": self.count.tolist(),
        }
        for name in ("effective_n", "low", "high", "floor"):
            values = getattr(self, name)
            out[name] = None if values is None else values.tolist()
        return out


@dataclass(frozen=True)
class ThresholdChoice:
    """The lowest threshold reaching ``target`` precision (``threshold`` None: never reached).

    With ``lower_bound`` the target is for the lower end of the 95% interval, not the estimate.
    """

    target: float
    threshold: float | None
    precision: float | None
    coverage: float
    label: str | None = None
    effective_n: float | None = None
    low: float | None = None
    high: float | None = None
    lower_bound: bool = False
    floor: float | None = None
    withheld: str | None = None  # why no threshold is suggested although the curve may reach the target


@dataclass
class ThresholdTuning:
    """Curves and chosen thresholds, overall and per predicted class."""

    overall: ThresholdCurve
    per_class: dict[str, ThresholdCurve]
    choice: ThresholdChoice
    per_class_choice: dict[str, ThresholdChoice]
    details: dict = field(default_factory=dict)

    def per_class_thresholds(self) -> dict[str, float | None]:
        """A routing threshold per class; None means: never auto-label that class."""
        return {label: c.threshold for label, c in self.per_class_choice.items()}

    def to_dict(self) -> dict:
        return {
            "choice": vars(self.choice),
            "per_class_choice": {k: vars(v) for k, v in self.per_class_choice.items()},
            "overall": self.overall.to_dict(),
            "per_class": {k: v.to_dict() for k, v in self.per_class.items()},
            **self.details,
        }

    def format(self) -> str:
        lines = [_describe_choice(self.choice)]
        if self.choice.withheld is None:
            lines += ["  " + _describe_choice(c) for c in self.per_class_choice.values()]
        lines.append("threshold  precision  95% interval   coverage   (overall)")
        for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99):
            p, c = curve_at(self.overall, t)
            low, high = interval_at(self.overall, t)
            span = "-" if low is None else f"{_pct(low)}-{_pct(high)}"
            lines.append(f"{t:9.2f}  {_pct(p):>9}  {span:>13}  {_pct(c):>8}")
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def _describe_choice(choice: ThresholdChoice) -> str:
    who = "overall" if choice.label is None else f"class {choice.label}"
    goal = f"{'lower bound of the 95% interval' if choice.lower_bound else 'precision'} {_pct(choice.target)}"
    if choice.withheld is not None:
        return f"{who}: no threshold suggested for {goal}: {choice.withheld}"
    if choice.threshold is None:
        return f"{who}: no threshold reaches {goal}"
    trust = "" if choice.low is None else f" [95% interval {_pct(choice.low)}-{_pct(choice.high)}, effective n {choice.effective_n:.0f}]"
    return (
        f"{who}: threshold {choice.threshold:.3f} reaches precision {_pct(choice.precision)}{trust} "
        f"with coverage {_pct(choice.coverage)} (target: {goal})"
    )


def precision_coverage_curve(correct, confidence, label: str | None = None, weights=None, pool_confidence=None, groups=None) -> ThresholdCurve:
    """The curve at every distinct confidence value (each one a threshold).

    ``correct[i]`` says whether prediction ``i`` is right; ``confidence[i]`` is its top-1
    probability; ``weights[i]`` how many routed images it stands for (default 1). With
    ``pool_confidence`` (the confidences of the images routing acts on) coverage is the share of
    those at or above the threshold; otherwise the share of the scored images. ``groups`` (each
    image's subject): the interval counts what the subjects are worth, not only the images
    (:func:`serieslabeler.metrics.shift.clustered_effective_sizes`); without, Kish's size.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=float)
    weights = np.ones(len(confidence)) if weights is None else np.asarray(weights, dtype=float)
    total = len(confidence)
    if total == 0:
        empty = np.zeros(0)
        return ThresholdCurve(empty, empty, empty, empty.astype(np.int64), 0, label, empty, empty, empty)
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(weights[order] * correct[order])
    mass = np.cumsum(weights[order])
    squares = np.cumsum(weights[order] ** 2)
    thresholds = np.unique(confidence)
    # images at or above threshold t = the first (number of confidences >= t) of the sorted list
    count = total - np.searchsorted(np.sort(confidence), thresholds, side="left")
    last = count - 1
    precision = np.divide(hits[last], mass[last], out=np.zeros(len(last)), where=mass[last] > 0)
    if groups is None:
        effective_n = np.divide(mass[last] ** 2, squares[last], out=np.zeros(len(last)), where=squares[last] > 0)
    else:
        effective_n = clustered_effective_sizes(correct[order], weights[order], np.asarray(groups)[order])[last]
    low, high = proportion_intervals(np.minimum(precision * effective_n, effective_n), effective_n)
    if pool_confidence is None:
        coverage = count / total
    else:
        pool = np.sort(np.asarray(pool_confidence, dtype=float))
        coverage = (len(pool) - np.searchsorted(pool, thresholds, side="left")) / max(1, len(pool))
    return ThresholdCurve(thresholds, precision.astype(float), coverage.astype(float), count.astype(np.int64), total, label,
                          effective_n, low, high)


def _position(curve: ThresholdCurve, threshold: float) -> int | None:
    position = int(np.searchsorted(curve.thresholds, threshold, side="left"))
    return None if position >= len(curve.thresholds) else position


def curve_at(curve: ThresholdCurve, threshold: float) -> tuple[float | None, float]:
    """Precision and coverage at any threshold (precision None when nothing is auto-labeled)."""
    position = _position(curve, threshold)
    if position is None:
        return None, 0.0
    return float(curve.precision[position]), float(curve.coverage[position])


def interval_at(curve: ThresholdCurve, threshold: float) -> tuple[float | None, float | None]:
    """The 95% interval of the precision at any threshold (None when nothing is auto-labeled)."""
    position = _position(curve, threshold)
    if position is None or curve.low is None:
        return None, None
    return float(curve.low[position]), float(curve.high[position])


def floor_at(curve: ThresholdCurve, threshold: float) -> float | None:
    """The precision floor (:func:`precision_floor`) at any threshold (None when not measured)."""
    position = _position(curve, threshold)
    return None if position is None or curve.floor is None else float(curve.floor[position])


def threshold_for_precision(curve: ThresholdCurve, target: float = 0.95, lower_bound: bool = False) -> ThresholdChoice:
    """The lowest threshold whose precision (or, with ``lower_bound``, the lower end of its 95%
    interval) reaches ``target``: the largest coverage at that precision."""
    if not 0.0 < target <= 1.0:
        raise PipelineError(f"target precision must be in (0, 1], not {target}")
    measure = curve.low if lower_bound and curve.low is not None else curve.precision
    reaching = np.flatnonzero(measure >= target)
    if len(reaching) == 0:
        return ThresholdChoice(target, None, None, 0.0, curve.label, lower_bound=lower_bound)
    best = reaching[0]
    trust = {} if curve.low is None else {
        "effective_n": float(curve.effective_n[best]), "low": float(curve.low[best]), "high": float(curve.high[best])
    }
    if curve.floor is not None:
        trust["floor"] = float(curve.floor[best])
    return ThresholdChoice(
        target, float(curve.thresholds[best]), float(curve.precision[best]), float(curve.coverage[best]), curve.label,
        lower_bound=lower_bound, **trust,
    )


def tune_thresholds(
    y_true, y_pred, confidence, target: float = 0.95, details: dict | None = None, weights=None,
    pool_labels=None, pool_confidence=None, lower_bound: bool = False, groups=None,
) -> ThresholdTuning:
    """Curves overall and per predicted class, and the thresholds reaching ``target`` precision.

    ``weights``: how many routed images each scored image stands for; ``pool_labels`` and
    ``pool_confidence``: the predictions routing acts on, for the coverage; ``groups``: each
    scored image's subject, for the intervals (see :func:`precision_coverage_curve`).
    """
    y_true = np.asarray([str(v) for v in y_true])
    y_pred = np.asarray([str(v) for v in y_pred])
    confidence = np.asarray(confidence, dtype=float)
    weights = np.ones(len(confidence)) if weights is None else np.asarray(weights, dtype=float)
    correct = y_true == y_pred
    has_pool = pool_confidence is not None
    pool_labels = np.asarray([str(v) for v in pool_labels]) if has_pool else None
    pool_confidence = np.asarray(pool_confidence, dtype=float) if has_pool else None
    groups = None if groups is None else np.asarray(groups)
    overall = precision_coverage_curve(correct, confidence, None, weights, pool_confidence, groups)
    per_class = {
        label: precision_coverage_curve(
            correct[y_pred == label], confidence[y_pred == label], label, weights[y_pred == label],
            pool_confidence[pool_labels == label] if has_pool else None, None if groups is None else groups[y_pred == label],
        )
        for label in sorted(set(y_pred))
    }
    return ThresholdTuning(
        overall=overall,
        per_class=per_class,
        choice=threshold_for_precision(overall, target, lower_bound),
        per_class_choice={label: threshold_for_precision(c, target, lower_bound) for label, c in per_class.items()},
        details=details or {},
    )


def precision_floor(thresholds, precision, labeled_confidence, pool_confidence, pool_in_labeled_subjects) -> np.ndarray:
    """The precision of the routed images if those unlike any label were all wrong (a floor).

    The labeled subjects were sampled at random, so their images show what the collection is
    made of: the labeled (typical) ones and the rest, which the expert left unlabeled (skipped
    clusters, misfits) and which are now in the pool. At threshold ``t``, ``r(t)`` is the share of
    the labeled subjects' images at or above ``t`` that are labeled; the pool images of labeled
    subjects are all of the other kind, those of other subjects are typical in share ``r(t)``.
    The weighted precision speaks for the typical share only; the floor counts the rest as wrong
    (a Manski-style bound: what the labels alone can guarantee, whatever the unlabeled kind is).
    """
    thresholds = np.asarray(thresholds, dtype=float)
    labeled = np.sort(np.asarray(labeled_confidence, dtype=float))
    pool = np.asarray(pool_confidence, dtype=float)
    inside = np.asarray(pool_in_labeled_subjects, dtype=bool)

    def at_or_above(values: np.ndarray) -> np.ndarray:
        values = np.sort(values)
        return len(values) - np.searchsorted(values, thresholds, side="left")

    typical, untypical, others = at_or_above(labeled), at_or_above(pool[inside]), at_or_above(pool[~inside])
    share = np.divide(typical, typical + untypical, out=np.ones(len(thresholds)), where=typical + untypical > 0)
    routed = untypical + others
    typical_routed = np.divide(share * others, routed, out=np.ones(len(thresholds)), where=routed > 0)
    return typical_routed * np.asarray(precision, dtype=float)


TRUTH_SOURCES = ("labels", "ground_truth")
# labels of every vocabulary class a curve needs before it suggests a threshold (fewer: it cannot
# see the errors routing makes on that class; bench/threshold_honesty.py measures the effect)
MIN_CLASS_LABELS = 10
INTERVAL_NOTE = ("95% Wilson interval on the effective number of images above the threshold, counting the images of one "
                 "subject as going together (right or wrong with their subject), so few subjects give a wide interval")


# --- a model's out-of-fold predictions -------------------------------------------------------
def model_oof(workspace: Workspace, record: ModelRecord, truth: str = "labels", seed: int = 0) -> OutOfFold:
    """The model's grouped out-of-fold probabilities on its validation set: the one place they
    are obtained. They are the ones stored with the model when it was trained
    (:func:`serieslabeler.models.evaluation.out_of_fold`: every image predicted by a head fitted
    on the other folds' subjects, GroupKFold by subject; ``labels``: the labels it learned from),
    so a new label changes neither them nor the curves."""
    return out_of_fold(workspace, record.id, truth, seed)


def curve_sample(oof: OutOfFold, seed: int = 0, limit: int | None = None) -> OutOfFold:
    """``oof`` itself, or a seeded random sample of ``limit`` (default :data:`CURVE_SAMPLE`) of
    its images when it has more."""
    limit = CURVE_SAMPLE if limit is None else limit
    if len(oof) <= limit:
        return oof
    return oof.subset(np.sort(np.random.default_rng(seed).choice(len(oof), size=limit, replace=False)))


# --- the routed pool and the weights that make the labels represent it -----------------------
@dataclass
class Pool:
    """The predictions routing acts on: the model's stored predictions of the unlabeled images."""

    image_ids: np.ndarray
    labels: np.ndarray
    proba: np.ndarray = field(repr=False)

    @property
    def confidence(self) -> np.ndarray:
        return self.proba.max(axis=1) if len(self.proba) else np.zeros(0)


def routed_pool(workspace: Workspace, model_id: int, seed: int = 0, limit: int = POOL_SAMPLE) -> Pool:
    """The model's predictions of the images it was not trained on (a seeded sample of ``limit``
    of them): what routing acts on. Fixed by the model and its predictions, so a new label
    elsewhere changes neither the pool nor the curves weighted to it. Which images it holds is
    stored with the model per prediction run (drawing them reads every prediction)."""
    predicted = workspace.db.execute("SELECT COUNT(*) FROM predictions WHERE model_id=?", (int(model_id),)).fetchone()[0]
    ids = np.asarray(stored_value(workspace, model_id, f"routed-pool-{predicted}-seed{seed}-limit{limit}",
                                  lambda: draw_pool_ids(workspace, model_id, seed, limit).tolist()), dtype=np.int64)
    predictions = load_predictions(workspace, model_id, ids)
    return Pool(predictions.image_ids, predictions.labels, normalized(predictions.proba) if len(predictions) else predictions.proba)


def draw_pool_ids(workspace: Workspace, model_id: int, seed: int = 0, limit: int = POOL_SAMPLE) -> np.ndarray:
    """:func:`routed_pool`'s images: those the model predicted and was not trained on, a seeded
    sample of ``limit`` when there are more, ascending."""
    trained_on = np.asarray(load_model_record(workspace, model_id).training_set, dtype=np.int64)
    predicted = np.array([r[0] for r in workspace.plain_rows(
        "SELECT image_id FROM predictions WHERE model_id=? ORDER BY image_id", (int(model_id),))], dtype=np.int64)
    ids = np.setdiff1d(predicted, trained_on)
    if len(ids) > limit:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=limit, replace=False))
    return ids


def representativeness_weights(workspace: Workspace, record: ModelRecord, oof: OutOfFold, pool: Pool, seed: int = 0) -> np.ndarray:
    """Importance weights of the labeled images for the routed pool (module docstring, point 2),
    computed once per model, labeled set and pool and stored with the model (a page view reads
    them and loads no features)."""
    key = hashlib.sha256(np.concatenate([oof.image_ids, [-1], pool.image_ids]).astype(np.int64).tobytes()).hexdigest()[:16]
    weights = stored_value(workspace, record.id, f"representativeness-{key}-seed{seed}",
                           lambda: compute_representativeness_weights(workspace, record, oof, pool, seed).tolist())
    return np.asarray(weights, dtype=float)


def compute_representativeness_weights(workspace: Workspace, record: ModelRecord, oof: OutOfFold, pool: Pool, seed: int = 0) -> np.ndarray:
    store = FeatureStore(workspace)
    _, X_labeled = store.load(record.feature_set, oof.image_ids)
    ensure_features(workspace, record.feature_set, pool.image_ids)
    _, X_pool = store.load(record.feature_set, pool.image_ids)
    # cosine geometry: standardizing by the labeled set's spread blows up the features that are
    # (nearly) constant on a few labels, and every pool image then looks infinitely far away
    X_labeled, X_pool = unit_rows(X_labeled), unit_rows(X_pool)
    pool_subjects = image_subjects(workspace, pool.image_ids)
    labeled_distance = nearest_other_subject_distance(X_labeled, oof.subjects, X_labeled, oof.subjects)
    pool_distance = nearest_other_subject_distance(X_pool, pool_subjects, X_labeled, oof.subjects)
    labeled = np.c_[oof.proba.max(axis=1), np.log1p(labeled_distance)]
    routed = np.c_[pool.confidence, np.log1p(pool_distance)]
    return importance_weights(labeled, routed, random_state=seed)


# --- the curves in a workspace -----------------------------------------------------------------
def validation_curves(
    workspace, model_id: int | None = None, target: float = 0.95, truth: str = "labels", seed: int = 0,
    lower_bound: bool = False,
) -> ThresholdTuning:
    """Threshold curves for a model, measured as the module docstring says.

    ``truth="labels"``: the accepted labels (what an analyst has), corrected for how they were
    chosen, and the calibration fitted on them is stored with the model; ``"ground_truth"``:
    the ground-truth column (every image, so no correction), for checking the tool. With an
    answered audit of the model's routed labels, its precision is reported as the trusted
    estimate, and ``lower_bound`` then targets the audit interval's lower bound.
    """
    if truth not in TRUTH_SOURCES:
        raise PipelineError(f"truth must be one of {', '.join(TRUTH_SOURCES)}, not '{truth}'")
    record = load_model_record(workspace, latest_model_id(workspace) if model_id is None else model_id)
    everything = model_oof(workspace, record, truth, seed)
    oof = curve_sample(everything, seed)
    calibration, calibration_summary = _calibrate(workspace, record, oof, store=truth == "labels", seed=seed)
    confidence = calibration.calibrated_confidence(oof.proba) if calibration is not None else oof.proba.max(axis=1)
    pool = routed_pool(workspace, record.id, seed)
    correct_for_selection = truth == "labels" and len(pool.image_ids) > 0 and len(oof.classes) > 1
    weights = representativeness_weights(workspace, record, oof, pool, seed) if correct_for_selection else np.ones(len(oof.labels))
    pool_confidence = calibration.calibrated_confidence(pool.proba) if calibration is not None and len(pool.image_ids) else pool.confidence
    details = {
        "model_id": record.id, "feature_set": record.feature_set, "truth": truth, "images": len(everything),
        "subjects": len(np.unique(oof.subjects)), "split": oof.split,
        "measured_on": {**_measured_on(truth, oof, weights, pool, correct_for_selection), "sampled_from": len(everything)},
        "calibration": calibration_summary,
        "lower_bound": lower_bound,
        "model_classes": [str(c) for c in record.classes],
        "labels_per_class": {str(k): int(v) for k, v in zip(*np.unique(everything.labels, return_counts=True))},
    }
    tuning = tune_thresholds(
        oof.labels, oof.predicted, confidence, target, details, weights,
        pool.labels if len(pool.image_ids) else None, pool_confidence if len(pool.image_ids) else None, lower_bound,
        oof.subjects,
    )
    if correct_for_selection:
        in_labeled = np.isin(image_subjects(workspace, pool.image_ids), oof.subjects)
        floor = precision_floor(tuning.overall.thresholds, tuning.overall.precision, confidence, pool_confidence, in_labeled)
        tuning.overall = replace(tuning.overall, floor=floor)
    return choose_thresholds(workspace, tuning, target, lower_bound)


def classes_without_labels(workspace: Workspace, model_classes) -> list[str]:
    """The vocabulary's classes the model was not trained on (it cannot predict them); read at
    each choice, so a page's stored curves follow the vocabulary."""
    known = {str(c) for c in model_classes}
    return [name for name in vocabulary(workspace) if name not in known]


def classes_below_minimum(names, counts: dict) -> dict[str, int]:
    """Of the classes ``names``, those with fewer than :data:`MIN_CLASS_LABELS` labels in
    ``counts`` (``{class: labels}``), and how many each has (0 included)."""
    return {str(name): int(counts.get(name, 0)) for name in names if counts.get(name, 0) < MIN_CLASS_LABELS}


def classes_short_of_labels(workspace: Workspace, counts: dict) -> dict[str, int]:
    """:func:`classes_below_minimum` of the vocabulary's classes."""
    return classes_below_minimum(vocabulary(workspace), counts)


def few_labels_reason(short: dict[str, int]) -> str:
    """Why a curve cannot promise a precision while the classes of ``short`` have only a few labels each."""
    names = ", ".join(f"{name} ({count})" for name, count in short.items())
    return (f"the curve has fewer than {MIN_CLASS_LABELS} labels of {names}. With so few of a class it cannot see how often "
            "routing puts that class's images into the others, and it promises more than the routed labels reach. Label more of each (the coreset sample shows the images least "
            "like any label) and train again, or audit the routed labels and target the audit's lower bound.")


def unseen_classes_reason(missing: list[str]) -> str:
    """Why a curve measured on the labels cannot promise a precision while ``missing`` have none."""
    names = ", ".join(missing)
    return (f"the model was trained on no label of {names} (in the vocabulary), so it would route every image of "
            f"{'that class' if len(missing) == 1 else 'those classes'} into another one, and a curve measured on the labels "
            "cannot see those errors. Label a few images of each first (the coreset sample shows the images least like "
            "any label) and train again, remove from the vocabulary the classes the collection does not hold, or audit the "
            "routed labels and target the audit's lower bound.")


def withhold(choice: ThresholdChoice, reason: str) -> ThresholdChoice:
    """The choice with no threshold and no promised precision, saying why."""
    return replace(choice, threshold=None, precision=None, coverage=0.0, effective_n=None, low=None, high=None,
                   floor=None, withheld=reason)


def model_seed(workspace: Workspace, model_id: int) -> int:
    """The seed a model was trained with: its curves' folds and samples are drawn with it."""
    return int(load_model_record(workspace, model_id).params.get("seed", 0))


def prepare_curves(workspace: Workspace, model_id: int) -> str | None:
    """Compute and store what a model's threshold curves need (the representativeness weights,
    the calibration, the calibrated predictions) right after it predicted, so the first view of
    its curves reads them instead of spending that time; with the model's seed, as the Train page
    asks. Returns why there are no curves yet (too few labels, one class), else None."""
    try:
        validation_curves(workspace, model_id, seed=model_seed(workspace, model_id))
    except PipelineError as error:
        return str(error)
    model_confidences(workspace, model_id)
    return None


def choose_thresholds(workspace: Workspace, tuning: ThresholdTuning, target: float, lower_bound: bool = False) -> ThresholdTuning:
    """The thresholds a model's curves (:func:`validation_curves`) give for ``target`` (the
    curves do not depend on it): overall, per class, the audit's when it has answers, and the
    suggested one. A page computes the curves once and moves the target at no cost."""
    model_id = tuning.details["model_id"]
    details = {key: value for key, value in tuning.details.items() if key != "audit_threshold"}
    details["lower_bound"] = lower_bound
    chosen = replace(
        tuning,
        choice=threshold_for_precision(tuning.overall, target, lower_bound),
        per_class_choice={label: threshold_for_precision(curve, target, lower_bound) for label, curve in tuning.per_class.items()},
        details=details,
    )
    on_labels = details["truth"] == "labels"
    missing = classes_without_labels(workspace, details["model_classes"]) if on_labels else []
    short = classes_short_of_labels(workspace, details.get("labels_per_class", {})) if on_labels else {}
    details["classes_without_labels"] = missing
    details["classes_short_of_labels"] = {name: count for name, count in short.items() if name not in missing}
    if missing or details["classes_short_of_labels"]:
        reason = unseen_classes_reason(missing) if missing else few_labels_reason(details["classes_short_of_labels"])
        chosen = replace(chosen, choice=withhold(chosen.choice, reason),
                         per_class_choice={label: withhold(c, reason) for label, c in chosen.per_class_choice.items()})
    details["audit"] = audited_precision(workspace, model_id)
    details["trusted"] = _trusted_estimate(chosen)
    details["suggested"] = {"threshold": chosen.choice.threshold, "source": "curve" if chosen.choice.withheld is None else "withheld"}
    if lower_bound and details["audit"] is not None:
        audit = audited_threshold(workspace, model_id, target)
        details["audit_threshold"] = audit
        if audit["threshold"] is not None:
            details["suggested"] = {"threshold": audit["threshold"], "source": "audit"}
    return chosen


def _calibrate(workspace: Workspace, record: ModelRecord, oof: OutOfFold, store: bool, seed: int):
    """The calibrator fitted on the out-of-fold predictions (stored with the model for routing
    when ``store``) and its before/after report; ``(None, None)`` for a single class, or when the
    labels' classes are no longer the model's (labels changed since it was trained)."""
    if len(oof.classes) < 2 or [str(c) for c in oof.classes] != [str(c) for c in record.classes]:
        return None, None
    calibrator, report = calibration_report(oof.proba, oof.class_index, method="auto", random_state=seed)
    if store:
        save_calibration(workspace, record.id, calibrator, report.to_dict())
    summary = {**report.to_dict(), "fitted_on": "the grouped out-of-fold predictions; ece_after measured out of fold",
               "applied_when_routing": store}
    return calibrator, summary


def _measured_on(truth: str, oof: OutOfFold, weights: np.ndarray, pool: Pool, corrected: bool) -> dict:
    """Which labels the curve is measured against, how many, and how the selection was corrected."""
    what = "your accepted labels" if truth == "labels" else "the ground-truth column"
    if corrected:
        estimator = ("importance-weighted: each labeled image weighted by p_pool/p_labeled of (out-of-fold confidence, "
                     "distance to the nearest labeled image of another subject), estimated by logistic regression")
    elif truth == "labels":
        estimator = "unweighted: no predictions of the unlabeled pool yet to correct for (predict first)"
    else:
        estimator = "unweighted (the ground truth is not chosen by clustering)"
    return {
        "labels": what, "images": len(oof.image_ids), "subjects": len(np.unique(oof.subjects)),
        "by_label": {str(k): int(v) for k, v in zip(*np.unique(oof.labels, return_counts=True))},
        "pool_images": len(pool.image_ids), "estimator": estimator,
        "effective_n": effective_sample_size(weights), "max_weight": float(weights.max()) if len(weights) else None,
        "interval": INTERVAL_NOTE,
    }


def measured_images(measured: dict) -> str:
    """How many labeled images a curve is measured on, in words (``details["measured_on"]``)."""
    if measured.get("sampled_from", 0) > measured["images"]:
        return f"a random {measured['images']:,} of {measured['sampled_from']:,} images"
    return f"{measured['images']} images"


def _trusted_estimate(tuning: ThresholdTuning) -> dict:
    """The figure to trust: the audit when it has answers, else the weighted curve at the choice."""
    audit = tuning.details.get("audit")
    if audit is not None:
        return {"source": "audit", **audit["overall"]}
    choice = tuning.choice
    return {"source": "curve", "threshold": choice.threshold, "estimate": choice.precision, "low": choice.low,
            "high": choice.high, "effective_n": choice.effective_n}
