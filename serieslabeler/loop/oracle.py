"""loop.oracle"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.series import boundary_changes, boundary_offsets


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

    def __init__(self, image_ids, labels, purity: float = 0.8):
        if not 0.0 < purity <= 1.0:
            raise PipelineError(f"oracle purity must be in (0, 1], not {purity}")
        self._truth = {int(i): str(v) for i, v in zip(image_ids, labels)}
        self.purity = purity
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
        ``order`` (clicked out). Labels that go back in time are each a new boundary (placed by hand)."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        truth = np.asarray(self._look(image_ids))
        inside = np.isin(truth, list(order))
        kept, stages = image_ids[inside], truth[inside]
        starts = [i for i in range(len(stages)) if i == 0 or stages[i] != stages[i - 1]]
        bounds = [(str(stages[i]), int(kept[i])) for i in starts]
        changes = None if proposal is None else boundary_changes(proposal, bounds)
        offsets = None if proposal is None else boundary_offsets(proposal, bounds, image_ids)
        cost = len(bounds) if changes is None else min(len(bounds), 1 + changes)
        return SeriesAnswer(bounds, image_ids[~inside], kept, stages, cost + int((~inside).sum()), changes, offsets)

    def answer_images(self, image_ids) -> np.ndarray:
        """The label of each image (1 interaction each)."""
        return np.asarray(self._look(image_ids))


def _modal(labels: np.ndarray) -> tuple[str, float]:
    """The most frequent label (ties: the first in sort order) and its share."""
    counts = Counter(labels.tolist())
    label, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return label, count / len(labels)
