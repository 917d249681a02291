"""The model's proposals of a series' stage boundaries, and how good they can get.

Why a ceiling: a proposal costs the expert 1 interaction to accept plus one per boundary
moved, so how many images each interaction labels depends on how close the model's boundaries
come to the expert's. :func:`proposal_ceiling` proposes every subject's series with a model
trained on every other subject's true stages (far more labels than any labeling run has),
which bounds what better sampling or more labels can achieve with the same features and
classifier: a target above it needs better features or a better classifier, not a better loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.loop.oracle import Oracle
from serieslabeler.models.base import CV_FOLDS
from serieslabeler.models.head import HeadClassifier, grouped_oof_proba
from serieslabeler.models.monotone import boundaries as stage_boundaries
from serieslabeler.models.monotone import decode, stage_columns
from serieslabeler.models.time_prior import StageTimePrior, fit_time_prior, no_time_prior
from serieslabeler.simulation.records import Collection, SimulationConfig, json_safe, offset_counts


def propose_boundaries(model, collection: Collection, rows: np.ndarray, prior: StageTimePrior) -> list[tuple[str, int]]:
    """``model``'s monotone boundaries ``(stage, row)`` along ``rows`` (one series in time
    order), its stage probabilities weighed by ``prior`` before decoding."""
    order = collection.order
    evidence = stage_columns(model.predict_proba(collection.X[rows]), model.classes_, order)
    stages = decode(evidence * prior.ratio(collection.series_times()[rows])).stages
    return [(order[stage], int(rows[p])) for p, stage in stage_boundaries(stages)]


def labeled_time_prior(collection: Collection, index: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                       config: SimulationConfig, seed: int) -> StageTimePrior:
    """When each stage occurs, from the labels ``labels`` of rows ``index`` (those in the order),
    weighted as their held-out subjects say (:func:`~serieslabeler.models.time_prior.fit_time_prior`,
    on grouped out-of-fold probabilities); no prior with labels of fewer than two subjects."""
    order = list(collection.order)
    staged = np.isin(labels, order)
    index, labels, weights = index[staged], labels[staged], weights[staged]
    subjects = collection.subjects[index]
    if len(np.unique(subjects)) < 2:
        return no_time_prior(len(order))
    proba, classes = grouped_oof_proba(
        collection.X[index], labels, subjects, weights, lambda: HeadClassifier(C=config.C, random_state=seed), CV_FOLDS, seed,
    )
    stages = np.array([order.index(label) for label in labels])
    return fit_time_prior(stage_columns(proba, classes, order), stages, collection.series_times()[index], subjects, subjects, len(order))


@dataclass(frozen=True)
class ProposalCeiling:
    """Every subject's series proposed by a model trained on all the other subjects' true stages:
    the boundaries corrected per subject, how far each proposed boundary was from the true one
    (None: a stage missed or invented), the images labeled over the interactions spent, and how
    many of those labels are wrong (boundaries the oracle's tolerance left a photo or two off)."""

    corrections: dict
    offsets: list
    images: int
    interactions: int
    errors: int = 0

    @property
    def corrections_per_series(self) -> float:
        return float(np.mean(list(self.corrections.values())))

    @property
    def images_per_interaction(self) -> float:
        return self.images / self.interactions

    @property
    def label_precision(self) -> float:
        return 1.0 - self.errors / self.images if self.images else 1.0

    @property
    def offset_counts(self) -> dict[str, int]:
        """The proposed boundaries by how far each was from the true one (:data:`~.records.OFFSET_BINS`)."""
        return offset_counts(self.offsets)

    def summary(self) -> dict:
        return json_safe({"corrections_per_series": self.corrections_per_series, "images_per_interaction": self.images_per_interaction,
                          "label_precision": self.label_precision, "corrections": {str(k): v for k, v in self.corrections.items()},
                          "proposal_boundary_offsets": self.offset_counts})

    def format(self) -> str:
        return (f"proposals from a model trained on every other subject's true stages (a ceiling for these features): "
                f"{self.corrections_per_series:.2f} boundaries corrected per series, {self.images_per_interaction:.1f} images per interaction "
                f"at {100 * self.label_precision:.1f}% label precision")


def proposal_ceiling(collection: Collection, config: SimulationConfig | None = None, seed: int = 0) -> ProposalCeiling:
    """Propose each subject's series from the true stages of every other subject (leave one
    subject out) and let the oracle accept and correct it, at the scenarios' costs."""
    if collection.order is None:
        raise PipelineError(f"collection '{collection.name}': the proposal ceiling needs ordered stages (--order U,R,V,O or an ordered vocabulary)")
    config = config or SimulationConfig()
    order = list(collection.order)
    staged = np.isin(collection.truth, order)
    times = collection.series_times()
    corrections, offsets, images, interactions, errors = {}, [], 0, 0, 0
    for subject in np.unique(collection.subjects).tolist():
        others = np.flatnonzero(staged & (collection.subjects != subject))
        model = HeadClassifier(C=config.C, random_state=seed).fit(collection.X[others], collection.truth[others])
        prior = labeled_time_prior(collection, others, collection.truth[others], np.ones(len(others)), config, seed)
        rows = np.flatnonzero(collection.subjects == subject)
        rows = rows[np.argsort(times[rows], kind="stable")]
        oracle = Oracle(rows, collection.truth[rows], boundary_tolerance=config.boundary_tolerance)
        answer = oracle.answer_series(rows, order, propose_boundaries(model, collection, rows, prior))
        corrections[subject] = answer.proposal_changes
        offsets.extend(answer.proposal_offsets)
        images += len(answer.kept)
        interactions += answer.interactions
        errors += int((answer.stages != collection.truth[answer.kept]).sum())
    return ProposalCeiling(corrections, offsets, images, interactions, errors)
