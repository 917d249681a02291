"""loop.routing"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import pending_labels
from serieslabeler.labels.pseudo import add_pseudo_labels
from serieslabeler.labels.rejections import rejected_labels
from serieslabeler.labels.series import require_order
from serieslabeler.loop.calibrate import calibrated_proba
from serieslabeler.loop.support import SUPPORT_QUANTILE, check_quantile, inside_support
from serieslabeler.models.files import load_model_record
from serieslabeler.models.monotone import decode_series
from serieslabeler.models.predictions import load_predictions, unlabeled_image_ids
from serieslabeler.sampling import find_sample, save_sample
from serieslabeler.store.queries import image_times
from serieslabeler.store.series import series_groups
from serieslabeler.store.workspace import Workspace


# --- routing on arrays ------------------------------------------------------------------------
def thresholds_for(labels, threshold: float | dict) -> np.ndarray:
    """The threshold that applies to each predicted label; a class missing from a per-class dict,
    or mapped to None, is never auto-labeled (infinite threshold)."""
    labels = np.asarray(labels)
    if isinstance(threshold, dict):
        return np.array([math.inf if threshold.get(str(v)) is None else float(threshold[str(v)]) for v in labels])
    return np.full(len(labels), float(threshold))


def check_threshold(threshold: float | dict) -> None:
    values = threshold.values() if isinstance(threshold, dict) else [threshold]
    for value in values:
        if value is not None and not 0.0 <= float(value) <= 1.0:
            raise PipelineError(f"a confidence threshold must be between 0 and 1, not {value}")


def check_smoothing_window(window: int, name: str = "the smoothing window") -> int:
    """0 (off) or an odd window: the vote is centred on each image, so an even one would vote
    over one prediction more than asked."""
    if window < 0 or (window > 1 and window % 2 == 0):
        raise PipelineError(f"{name} must be 0 (off) or an odd number of predictions (a window centred on each image, "
                            f"e.g. {max(3, window + 1)}), not {window}")
    return window


def route_mask(labels, confidence, threshold: float | dict) -> np.ndarray:
    """True where a prediction becomes a pseudo-label (confidence at or above its threshold)."""
    check_threshold(threshold)
    return np.asarray(confidence, dtype=float) >= thresholds_for(labels, threshold)


def smooth_along_series(proba: np.ndarray, classes, subjects, times, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote of the top-1 labels in a centred window along each subject's time order.

    Returns ``(labels, confidence)``; confidence is the mean probability of the voted label
    over the window. Ties keep the image's own prediction. ``window`` <= 1 changes nothing.
    """
    classes = np.asarray(classes)
    proba = np.asarray(proba, dtype=float)
    top = np.argmax(proba, axis=1)
    labels, confidence = classes[top], proba[np.arange(len(top)), top]
    if window <= 1 or len(proba) == 0:
        return labels, confidence
    labels, confidence = labels.copy(), confidence.copy()
    subjects, times = np.asarray(subjects), np.asarray(times)
    half = window // 2
    for subject in np.unique(subjects):
        rows = np.flatnonzero(subjects == subject)
        rows = rows[np.argsort(times[rows], kind="stable")]
        for position, row in enumerate(rows):
            members = rows[max(0, position - half) : position + half + 1]
            votes = Counter(top[members].tolist())
            best = max(votes.values())
            winner = top[row] if votes[top[row]] == best else min(c for c, v in votes.items() if v == best)
            labels[row] = classes[winner]
            confidence[row] = proba[members, winner].mean()
    return labels, confidence


# --- routing in a workspace -------------------------------------------------------------------
@dataclass
class Routing:
    """Where a model's predictions went: pseudo-labels, or the next batch to cluster."""

    model_id: int
    threshold: float | dict
    smoothing_window: int
    pseudo_ids: np.ndarray = field(repr=False)
    to_cluster_ids: np.ndarray = field(repr=False)
    sample_id: int | None
    event_id: int | None
    monotone: bool = False
    support: float | None = None
    outside_support: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    rejected: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    def summary(self) -> dict:
        return {
            "model_id": self.model_id,
            "threshold": self.threshold,
            "smoothing_window": self.smoothing_window,
            "pseudo_labeled": len(self.pseudo_ids),
            "to_cluster": len(self.to_cluster_ids),
            "routed_sample": self.sample_id,
            "event_id": self.event_id,
            "monotone": self.monotone,
            "support_quantile": self.support,
            "outside_support": len(self.outside_support),
            "rejected": len(self.rejected),
        }

    def held_back(self) -> str:
        """In words, the confident predictions that went to clustering instead (empty when none)."""
        reasons = []
        if len(self.outside_support):
            reasons.append(f"{len(self.outside_support)} confident but unlike every labeled image, so the curve says nothing about them")
        if len(self.rejected):
            reasons.append(f"{len(self.rejected)} confident in a label the expert rejected for them: clicked out, or a rejected pseudo-label")
        return "; ".join(reasons)


@dataclass(frozen=True)
class RoutingLabels:
    """What routing thresholds: per predicted image, its label and confidence; ``classes``: how
    many the model knows (one: it routes nothing)."""

    image_ids: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    confidence: np.ndarray = field(repr=False)
    classes: int


def routing_labels(
    workspace: Workspace, model_id: int, image_ids=None, monotone: bool = False, smoothing_window: int = 0, rejections=None,
) -> RoutingLabels:
    """The labels and confidences routing thresholds: the model's
    stored predictions of ``image_ids`` (default: the unlabeled images) calibrated, then decoded
    monotone along each series or smoothed, as :func:`route_predictions` describes. What a page
    previews before routing is this, so the count it shows is the count it routes."""
    if image_ids is None:
        routed = unlabeled_image_ids(workspace)
        # pending pseudo-labels are read along with them, as the model's predictions they are, so a
        # second routing decodes each series as the first did instead of decoding what it left
        read = np.union1d(routed, pending_labels(workspace)["image_id"].to_numpy(dtype=np.int64))
    else:
        routed = read = np.asarray(image_ids, dtype=np.int64)
    predictions = load_predictions(workspace, model_id, read)
    ids = predictions.image_ids
    if len(ids) == 0:
        return RoutingLabels(ids, np.zeros(0, dtype=str), np.zeros(0), len(predictions.classes))
    proba = calibrated_proba(workspace, model_id, predictions.proba)
    subjects, times = series_groups(workspace, ids), image_times(workspace, ids)  # one series per subject, or per part
    if monotone:
        # an image clicked out of its series says nothing about its neighbours' stages
        rejections = rejected_labels(workspace, ids) if rejections is None else rejections
        evidence = np.where(rejections.no_stage(ids)[:, None], 1.0 / proba.shape[1], proba)
        labels, confidence = decode_series(evidence, predictions.classes, require_order(workspace), subjects, times)
    else:
        labels, confidence = smooth_along_series(proba, predictions.classes, subjects, times, smoothing_window)
    keep = np.isin(ids, routed)
    return RoutingLabels(ids[keep], labels[keep], confidence[keep], len(predictions.classes))


def route_predictions(
    workspace: Workspace,
    model_id: int,
    threshold: float | dict,
    image_ids=None,
    smoothing_window: int = 0,
    iteration: int | None = None,
    monotone: bool = False,
    support: float | None = SUPPORT_QUANTILE,
) -> Routing:
    """Route a model's stored predictions for ``image_ids`` (default: its predicted images that
    are still unlabeled): pseudo-labels at or above ``threshold``, a ``routed`` sample below
    (routing again with the same model and threshold reuses that sample instead of copying it).

    Confidences are calibrated with the model's stored calibration first (when it has one:
    :mod:`serieslabeler.loop.calibrate`), so the threshold means what the curves say.
    ``monotone=True`` (an ordered vocabulary) then decodes each subject's predictions as the most
    probable non-decreasing stage sequence; a decoded label's confidence is its posterior
    probability, and that is what the threshold applies to (instead of smoothing).

    ``support``: only predictions of images inside the support of the model's labels become
    pseudo-labels (:mod:`serieslabeler.loop.support`, at this quantile); a confident prediction
    of an image unlike every labeled one goes to clustering too. None: no such check (nor for
    a model whose feature set lacks some of the images).

    A prediction the expert already rejected for that image (clicked out of a cluster of that
    label, a rejected pseudo-label, clicked out of a series: :mod:`serieslabeler.labels.rejections`)
    never becomes a pseudo-label either; the image goes to clustering.
    """

    check_threshold(threshold)
    check_smoothing_window(smoothing_window)
    if support is not None:
        check_quantile(support)
    rejections = rejected_labels(workspace)  # all of them: as many as the expert made, however many images are routed
    routed = routing_labels(workspace, model_id, image_ids, monotone, smoothing_window, rejections)
    ids, labels, confidence = routed.image_ids, routed.labels, routed.confidence
    if len(ids) == 0:
        raise PipelineError(f"model {model_id} has no predictions for these images; run 'serieslabeler predict --model {model_id}' first")
    # a model that knows a single class is certain of everything and informative about nothing
    confident = route_mask(labels, confidence, threshold) & (routed.classes > 1)
    inside = None if support is None else inside_support(workspace, load_model_record(workspace, model_id), ids, support)
    applied, outside = (None, np.zeros(0, dtype=np.int64)) if inside is None else (support, ids[confident & ~inside])
    if inside is not None:
        confident &= inside
    contradicted = confident & rejections.mask(ids, labels)
    confident &= ~contradicted
    event_id = sample_id = None
    with workspace.transaction():
        if confident.any():
            event = add_pseudo_labels(
                workspace, ids[confident], labels[confident], np.clip(confidence[confident], 0.0, 1.0), model_id, iteration
            )
            event_id = event.id
        if (~confident).any():
            params = {"model": model_id, "threshold": threshold, "smoothing_window": smoothing_window, "monotone": monotone,
                      "support": applied}
            sample_id = find_sample(workspace, "routed", ids[~confident], params) or save_sample(workspace, "routed", params, ids[~confident]).id
    return Routing(model_id, threshold, smoothing_window, ids[confident], ids[~confident], sample_id, event_id, monotone,
                   applied, outside, ids[contradicted])
