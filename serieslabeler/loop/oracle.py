"""loop.oracle"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.series import boundary_changes, boundary_offsets
from serieslabeler.models.monotone import stages_from_boundaries


# --- the oracle -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterAnswer:
    """The oracle's decision on a cluster: its label (None: skipped), the images clicked out, the cost."""

    label: str | None
    excluded: np.ndarray
    interactions: int


@dataclass(frozen=True)
class CentreAnswer:
    """The oracle's decision on a centre it sees alone: its label and confidence (None: split it)."""

    label: str | None
    confidence: float
    interactions: int = 1


@dataclass(frozen=True)
class SeriesAnswer:
    """The oracle's reading of a series (images in time order): the true boundaries as
    ``(stage, image_id)``, the images it clicks out (stage not in the order), each kept image's
    stage, the cost (see :meth:`Oracle.answer_series`) and, given a proposal, how many of its
    boundaries were wrong (placed, moved or removed to reach the truth) and how far each was
    from the truth (:func:`~serieslabeler.labels.series.boundary_offsets`)."""

    boundaries: list[tuple[str, int]]
    excluded: np.ndarray
    kept: np.ndarray
    stages: np.ndarray
    interactions: int
    proposal_changes: int | None = None
    proposal_offsets: list[int | None] | None = None


class Oracle:
    """The expert, played by the ground truth of ``image_ids`` (and only those)."""

    def __init__(self, image_ids, labels, purity: float = 0.8, boundary_tolerance: int = 0):
        if not 0.0 < purity <= 1.0:
            raise PipelineError(f"oracle purity must be in (0, 1], not {purity}")
        if boundary_tolerance < 0:
            raise PipelineError(f"the oracle's boundary tolerance must be 0 or more photos, not {boundary_tolerance}")
        self._truth = {int(i): str(v) for i, v in zip(image_ids, labels)}
        self.purity = purity
        self.boundary_tolerance = int(boundary_tolerance)
        self.asked: set[int] = set()

    def _look(self, image_ids) -> list[str]:
        labels = []
        for i in image_ids:
            i = int(i)
            if i not in self._truth:
                raise PipelineError(f"the oracle was asked about image {i}, whose label it may not see (a held-out test image?)")
            self.asked.add(i)
            labels.append(self._truth[i])
        return labels

    def answer_cluster(self, image_ids) -> ClusterAnswer:
        """The modal class if it holds at least ``purity`` of the cluster (misfits clicked out), else skip."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        labels = np.asarray(self._look(image_ids))
        label, share = _modal(labels)
        if share < self.purity:
            return ClusterAnswer(None, np.zeros(0, dtype=np.int64), 1)
        excluded = image_ids[labels != label]
        return ClusterAnswer(label, excluded, 1 + len(excluded))

    def answer_centre(self, image_ids) -> CentreAnswer:
        """A cluster judged from its (decoded) centre alone: the modal class with its share as the
        confidence, or a request to split when that share is under ``purity`` (1 interaction)."""
        label, share = _modal(np.asarray(self._look(image_ids)))
        return CentreAnswer(label if share >= self.purity else None, share)

    def answer_series(self, image_ids, order, proposal=None) -> SeriesAnswer:
        """Place the true boundaries of a series (``image_ids`` in time order): one interaction per
        boundary, or, given the model's ``proposal`` boundaries, 1 to accept it plus one per
        boundary moved, placed or removed, unless placing every boundary by hand is cheaper (a
        proposal that is mostly wrong is ignored); plus one per image whose true stage is not in
        ``order`` (clicked out). Labels that go back in time are each a new boundary (placed by hand).

        With a ``boundary_tolerance`` of k photos, a proposed boundary at most k photos from the
        true start of its stage is left where it is (the expert does not move a stage change a
        photo early or late): the images between get the neighbouring stage, an error the
        labels' precision shows. ``proposal_changes`` still counts every boundary that was not
        exact; ``interactions`` counts the ones moved."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        truth = np.asarray(self._look(image_ids))
        inside = np.isin(truth, list(order))
        kept, stages = image_ids[inside], truth[inside]
        bounds = _starts(kept, stages)
        if proposal is None:
            return SeriesAnswer(bounds, image_ids[~inside], kept, stages, len(bounds) + int((~inside).sum()))
        changes, offsets = boundary_changes(proposal, bounds), boundary_offsets(proposal, bounds, image_ids)
        left = _tolerated(proposal, bounds, kept, self.boundary_tolerance)
        moved = boundary_changes(proposal, left)
        cost = len(bounds)
        if 1 + moved < cost:
            if left != bounds:  # a boundary left off: the photos between keep the proposal's stage
                bounds, stages = left, _stages_from(left, kept)
            cost = 1 + moved
        return SeriesAnswer(bounds, image_ids[~inside], kept, stages, cost + int((~inside).sum()), changes, offsets)

    def answer_images(self, image_ids) -> np.ndarray:
        """The label of each image (1 interaction each)."""
        return np.asarray(self._look(image_ids))


def _starts(kept: np.ndarray, stages: np.ndarray) -> list[tuple[str, int]]:
    """The first image of each run of one stage along ``kept``: the series' boundaries."""
    return [(str(stages[i]), int(kept[i])) for i in range(len(stages)) if i == 0 or stages[i] != stages[i - 1]]


def _tolerated(proposal, bounds, kept: np.ndarray, tolerance: int) -> list[tuple[str, int]]:
    """The boundaries an expert tolerating ``tolerance`` photos ends with: each true boundary, or
    the proposal's boundary of the same stage when it is a kept image at most ``tolerance``
    photos (along ``kept``) from it. The true boundaries when that would not keep the first
    image labeled and the boundaries in time order."""
    position = {int(image): k for k, image in enumerate(kept)}
    proposed = {stage: position.get(int(image)) for stage, image in proposal}
    left = [(stage, int(kept[proposed[stage]])) if proposed.get(stage) is not None and abs(proposed[stage] - position[image]) <= tolerance
            else (stage, image) for stage, image in bounds]
    places = [position[image] for _, image in left]
    return left if places and places[0] == 0 and all(a < b for a, b in zip(places, places[1:])) else list(bounds)


def _stages_from(bounds, kept: np.ndarray) -> np.ndarray:
    """Each kept image's stage: that of the last boundary at or before it (``bounds`` in time order)."""
    position = {int(image): k for k, image in enumerate(kept)}
    runs = stages_from_boundaries(len(kept), [(position[image], run) for run, (_, image) in enumerate(bounds)])
    return np.array([stage for stage, _ in bounds])[runs]


def _modal(labels: np.ndarray) -> tuple[str, float]:
    """The most frequent label (ties: the first in sort order) and its share."""
    counts = Counter(labels.tolist())
    label, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return label, count / len(labels)
