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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.models.base import CV_FOLDS
from serieslabeler.models.evaluation import out_of_fold
from serieslabeler.models.files import latest_model_id, load_model_record


@dataclass(frozen=True)
class ThresholdCurve:
    """Precision and coverage at each candidate threshold (ascending), for all images or one class."""

    thresholds: np.ndarray
    precision: np.ndarray
    coverage: np.ndarray
    count: np.ndarray
    total: int
    label: str | None = None

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "total": self.total,
            "thresholds": self.thresholds.tolist(),
            "precision": self.precision.tolist(),
            "coverage": self.coverage.tolist(),
            "count": self.count.tolist(),
        }


@dataclass(frozen=True)
class ThresholdChoice:
    """The lowest threshold reaching ``target`` precision (``threshold`` None: never reached)."""

    target: float
    threshold: float | None
    precision: float | None
    coverage: float
    label: str | None = None


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
        lines += ["  " + _describe_choice(c) for c in self.per_class_choice.values()]
        lines.append("threshold  precision  coverage   (overall)")
        for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99):
            p, c = curve_at(self.overall, t)
            lines.append(f"{t:9.2f}  {_pct(p):>9}  {_pct(c):>8}")
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def _describe_choice(choice: ThresholdChoice) -> str:
    who = "overall" if choice.label is None else f"class {choice.label}"
    if choice.threshold is None:
        return f"{who}: no threshold reaches {_pct(choice.target)} precision"
    return (
        f"{who}: threshold {choice.threshold:.3f} reaches precision {_pct(choice.precision)} "
        f"with coverage {_pct(choice.coverage)} (target {_pct(choice.target)})"
    )


def precision_coverage_curve(correct, confidence, label: str | None = None) -> ThresholdCurve:
    """The curve at every distinct confidence value (each one a threshold).

    ``correct[i]`` says whether prediction ``i`` is right; ``confidence[i]`` is its top-1 probability.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=float)
    total = len(confidence)
    if total == 0:
        empty = np.zeros(0)
        return ThresholdCurve(empty, empty, empty, empty.astype(np.int64), 0, label)
    order = np.argsort(-confidence, kind="stable")
    sorted_conf = confidence[order]
    hits = np.cumsum(correct[order])
    thresholds = np.unique(sorted_conf)
    # images at or above threshold t = the first (number of confidences >= t) of the sorted list
    count = total - np.searchsorted(np.sort(confidence), thresholds, side="left")
    precision = hits[count - 1] / count
    return ThresholdCurve(thresholds, precision.astype(float), count / total, count.astype(np.int64), total, label)


def curve_at(curve: ThresholdCurve, threshold: float) -> tuple[float | None, float]:
    """Precision and coverage at any threshold (precision None when nothing is auto-labeled)."""
    position = np.searchsorted(curve.thresholds, threshold, side="left")
    if position >= len(curve.thresholds):
        return None, 0.0
    return float(curve.precision[position]), float(curve.coverage[position])


def threshold_for_precision(curve: ThresholdCurve, target: float = 0.95) -> ThresholdChoice:
    """The lowest threshold whose precision reaches ``target``: the largest coverage at that precision."""
    if not 0.0 < target <= 1.0:
        raise PipelineError(f"target precision must be in (0, 1], not {target}")
    reaching = np.flatnonzero(curve.precision >= target)
    if len(reaching) == 0:
        return ThresholdChoice(target, None, None, 0.0, curve.label)
    best = reaching[0]
    return ThresholdChoice(
        target, float(curve.thresholds[best]), float(curve.precision[best]), float(curve.coverage[best]), curve.label
    )


def tune_thresholds(y_true, y_pred, confidence, target: float = 0.95, details: dict | None = None) -> ThresholdTuning:
    """Curves overall and per predicted class, and the thresholds reaching ``target`` precision."""
    y_true = np.asarray([str(v) for v in y_true])
    y_pred = np.asarray([str(v) for v in y_pred])
    confidence = np.asarray(confidence, dtype=float)
    correct = y_true == y_pred
    overall = precision_coverage_curve(correct, confidence)
    per_class = {
        label: precision_coverage_curve(correct[y_pred == label], confidence[y_pred == label], label)
        for label in sorted(set(y_pred))
    }
    return ThresholdTuning(
        overall=overall,
        per_class=per_class,
        choice=threshold_for_precision(overall, target),
        per_class_choice={label: threshold_for_precision(c, target) for label, c in per_class.items()},
        details=details or {},
    )


TRUTH_SOURCES = ("labels", "ground_truth")


def validation_curves(
    workspace, model_id: int | None = None, target: float = 0.95, truth: str = "labels", seed: int = 0
) -> ThresholdTuning:
    """Threshold curves for a model's feature set and head parameters on a labeled validation set.

    ``truth="labels"``: the accepted labels (what an analyst has); ``"ground_truth"``: the
    ground-truth column. Every image is predicted out of fold by a head classifier fitted on the
    other folds' subjects (:func:`serieslabeler.models.predictions.grouped_oof_proba`, GroupKFold by subject). For a
    fine-tuned model the head is refitted on its ``model-<id>`` features. The out-of-fold
    probabilities are the ones stored with the model when it was trained
    (:func:`serieslabeler.models.evaluation.out_of_fold`; ``labels``: the labels it learned from).
    """

    if truth not in TRUTH_SOURCES:
        raise PipelineError(f"truth must be one of {', '.join(TRUTH_SOURCES)}, not '{truth}'")
    record = load_model_record(workspace, latest_model_id(workspace) if model_id is None else model_id)
    oof = out_of_fold(workspace, record.id, truth, seed)
    labels, proba, classes = oof.labels, oof.proba, oof.classes
    details = {
        "model_id": record.id, "feature_set": record.feature_set, "truth": truth, "images": len(oof.image_ids),
        "subjects": len(np.unique(oof.subjects)),
        "split": f"{min(CV_FOLDS, len(np.unique(oof.subjects)))}-fold GroupKFold by subject, out-of-fold predictions",
    }
    return tune_thresholds(labels, classes[np.argmax(proba, axis=1)], proba.max(axis=1), target, details)
