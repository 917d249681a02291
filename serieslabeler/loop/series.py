"""loop.series: a model's predictions along a series, decoded as one monotone stage sequence.

Used to propose boundaries to the expert (:func:`propose_series`), to route (``route
--monotone``) and to evaluate (raw and decoded scores side by side). The decoding is
:func:`serieslabeler.models.monotone.decode`: the most probable non-decreasing stage sequence
(Viterbi) and each image's posterior probability of its decoded stage (forward-backward).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.ingest.weather_store import has_weather
from serieslabeler.labels.rejections import Rejections, rejected_labels
from serieslabeler.labels.series import require_order
from serieslabeler.loop.threshold import model_seed
from serieslabeler.models.evaluation import stored_oof
from serieslabeler.models.files import latest_model_id
from serieslabeler.models.monotone import boundaries as stage_boundaries
from serieslabeler.models.monotone import decode, stage_columns
from serieslabeler.models.predictions import load_predictions, predict
from serieslabeler.models.time_prior import StageTimePrior, fit_time_prior, no_time_prior
from serieslabeler.space.metadata import DEGREE_DAYS, metadata_frame
from serieslabeler.store.series import Series, get_series, series_groups
from serieslabeler.store.workspace import Workspace


@dataclass(frozen=True)
class SeriesProposal:
    """A model's monotone reading of one series: boundaries and per-image stage and confidence."""

    series: str
    model_id: int
    image_ids: tuple[int, ...]
    boundaries: list[tuple[str, int]]
    stages: tuple[str, ...]
    confidence: np.ndarray = field(repr=False)
    time_weight: float = 0.0  # the weight of the stage-timing prior in the proposal (0: none)

    def to_dict(self) -> dict:
        return {
            "series": self.series, "model_id": self.model_id, "boundaries": [list(b) for b in self.boundaries],
            "time_prior_weight": self.time_weight,
            "images": [{"image_id": i, "stage": s, "confidence": round(float(c), 4)}
                       for i, s, c in zip(self.image_ids, self.stages, self.confidence)],
        }


def series_evidence(workspace: Workspace, series: Series, model_id: int, order: list[str]) -> np.ndarray:
    """Stage likelihoods along the series: the model's stored probabilities; an image without a
    prediction counts its accepted label (if any) as certain. The unlabeled images the model has
    not predicted yet (a model trained since the last ``predict``) are predicted now and stored:
    read as "every stage equally likely", they would turn into a proposal of the first stage
    throughout."""
    labels = dict(workspace.query_in(
        "SELECT image_id, label FROM current_labels WHERE status='accepted' AND image_id IN ({})", list(series.image_ids)
    ))
    predictions = load_predictions(workspace, model_id, list(series.image_ids))
    unpredicted = sorted(set(series.image_ids) - set(predictions.image_ids.tolist()) - set(labels))
    if unpredicted:
        predict(workspace, model_id, unpredicted)
        predictions = load_predictions(workspace, model_id, list(series.image_ids))
    row_of = {int(i): r for r, i in enumerate(predictions.image_ids)}
    stages = stage_columns(predictions.proba, predictions.classes, order)
    evidence = np.full((len(series), len(order)), 1.0 / len(order))
    for position, image_id in enumerate(series.image_ids):
        if image_id in row_of:
            evidence[position] = stages[row_of[image_id]]
        elif labels.get(image_id) in order:
            evidence[position] = np.eye(len(order))[order.index(labels[image_id])]
    return evidence


def propose_series(workspace: Workspace, series: Series | str, model_id: int | None = None, left_out=None) -> SeriesProposal:
    """The latest (or a given) model's proposal for a series, decoded monotone.

    ``left_out``: the images clicked out of the series (default: those clicked out of it
    before); a draft that clicks out more, or takes some back in, passes its own, so that no
    stage of the proposal starts on an image the draft leaves out."""
    series = series if isinstance(series, Series) else get_series(workspace, series)
    order = require_order(workspace)
    model_id = latest_model_id(workspace) if model_id is None else int(model_id)
    evidence = series_evidence(workspace, series, model_id, order)
    if not evidence.any(axis=1).all():
        raise PipelineError(f"model {model_id} gives no probability to any stage of {' < '.join(order)} for series '{series.key}'")
    prior, times = stage_time_prior(workspace, model_id, order, series.image_ids)
    evidence = evidence * prior.ratio(times)
    # an image clicked out of the series (a stake, another body part) says nothing about its stages
    # and cannot start one
    rejections = rejected_labels(workspace, series.image_ids) if left_out is None else Rejections(everything=frozenset(map(int, left_out)))
    outside = rejections.no_stage(series.image_ids)
    evidence[outside] = 1.0 / len(order)
    decoded = decode(evidence)
    kept = np.flatnonzero(~outside)
    starts = stage_boundaries(decoded.stages[kept])
    return SeriesProposal(
        series.key, model_id, series.image_ids, [(order[stage], series.image_ids[kept[p]]) for p, stage in starts],
        tuple(order[s] for s in decoded.stages), decoded.confidence, prior.weight,
    )


def stage_time_prior(workspace: Workspace, model_id: int, order: list[str], image_ids) -> tuple[StageTimePrior, np.ndarray]:
    """When each stage occurs, learned from the labels the model was trained on
    (:func:`serieslabeler.models.time_prior.fit_time_prior`, on the grouped out-of-fold
    probabilities stored with the model), and the times of ``image_ids`` on the same axis.
    Weight 0 (no prior) for a model stored without them (labels of a single subject)."""
    oof = stored_oof(workspace, model_id, "labels", model_seed(workspace, model_id))
    if oof is not None:
        oof = oof.subset(np.flatnonzero(np.isin(oof.labels, order)))
    if oof is None or len(np.unique(oof.subjects)) < 2:
        return no_time_prior(len(order)), np.zeros(len(image_ids))
    times = stage_times(workspace, [*oof.image_ids.tolist(), *image_ids])
    stages = np.array([order.index(label) for label in oof.labels])
    prior = fit_time_prior(stage_columns(oof.proba, oof.classes, order), stages, times[:len(oof)],
                           series_groups(workspace, oof.image_ids), oof.subjects, len(order))
    return prior, times[len(oof):]


def stage_times(workspace: Workspace, image_ids) -> np.ndarray:
    """Each image's place on the time line stages follow: accumulated degree-days where the
    workspace's weather gives them for every one of ``image_ids``, else days since its subject's
    first photo."""
    if has_weather(workspace):
        add = metadata_frame(workspace, image_ids, [DEGREE_DAYS])[DEGREE_DAYS].to_numpy(dtype=float)
        if np.isfinite(add).all():
            return add
    return metadata_frame(workspace, image_ids, ["days"])["days"].to_numpy(dtype=float)
