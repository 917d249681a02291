"""What a reviewer needs to judge a pseudo-label at a glance: whose photo it is, when it was
taken, and the most similar image that already has a label a person gave."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serieslabeler.labels.log import training_labels
from serieslabeler.metrics.shift import unit_rows
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace


@dataclass(frozen=True)
class ReviewContext:
    image_id: int
    subject: str
    date: str
    day: int
    neighbour_id: int | None
    neighbour_label: str | None


def review_context(workspace: Workspace, image_ids, feature_set: str | None = None) -> list[ReviewContext]:
    """Subject, date, days since the subject's first photo and the nearest accepted label (cosine
    distance in ``feature_set``; none when it is not given or holds no labeled image), per image."""
    ids = [int(i) for i in image_ids]
    rows = workspace.query_in(
        "SELECT i.id, s.name, i.taken_at, (julianday(substr(i.taken_at, 1, 10)) - julianday(substr("
        "(SELECT MIN(j.taken_at) FROM images j WHERE j.subject_id = i.subject_id), 1, 10))) AS day "
        "FROM images i JOIN subjects s ON s.id = i.subject_id WHERE i.id IN ({})", ids,
    )
    by_id = {r[0]: r for r in rows}
    neighbours = _nearest_labeled(workspace, ids, feature_set)
    return [
        ReviewContext(i, by_id[i][1], str(by_id[i][2])[:10], round(by_id[i][3] or 0), *neighbours.get(i, (None, None)))
        for i in ids
    ]


def _nearest_labeled(workspace: Workspace, ids: list[int], feature_set: str | None) -> dict[int, tuple[int, str]]:
    labeled_ids, labels, _ = training_labels(workspace)
    store = FeatureStore(workspace)
    if feature_set is None or feature_set not in store.names() or len(labeled_ids) == 0 or not ids:
        return {}
    have = set(store.ids(feature_set).tolist())
    queries = [i for i in ids if i in have]
    keep = np.array([i in have for i in labeled_ids.tolist()], dtype=bool)
    if not queries or not keep.any():
        return {}
    _, X_query = store.load(feature_set, queries)
    _, X_labeled = store.load(feature_set, labeled_ids[keep])
    similarity = unit_rows(X_query) @ unit_rows(X_labeled).T
    for row, image_id in enumerate(queries):  # an image is not its own neighbour
        similarity[row, labeled_ids[keep] == image_id] = -np.inf
    best = similarity.argmax(axis=1)
    return {i: (int(labeled_ids[keep][b]), str(labels[keep][b])) for i, b in zip(queries, best)}
