"""The collection in time: each image's subject and days since its subject's first photo.

Sampling reads this for the whole pool (a million rows at 1M images, about a second), yet it
changes only when images are ingested. So each process keeps the table it last read per
catalog, keyed by the catalog file and the collection version that every ingest moves
(:func:`serieslabeler.store.summary.collection_version`); which images are labeled is read
fresh each time (:func:`labeled_image_ids`, one JSON array).
"""
from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass

import numpy as np

from serieslabeler.store.checkpoints import file_id
from serieslabeler.store.summary import collection_version
from serieslabeler.store.workspace import CATALOG, Workspace

# Catalogs whose table a process keeps (the oldest read goes first).
KEPT_CATALOGS = 4

_kept: dict[str, tuple[tuple, CollectionTimes]] = {}
_kept_lock = threading.Lock()


@dataclass(frozen=True)
class CollectionTimes:
    """Every image by id (ascending), its subject and its days since the subject's first photo;
    read-only arrays, shared by the callers of one process."""

    ids: np.ndarray
    subjects: np.ndarray
    days: np.ndarray


def collection_times(workspace: Workspace) -> CollectionTimes:
    """The collection's :class:`CollectionTimes`, read again only after an ingest."""
    catalog = workspace.root / CATALOG
    key = (collection_version(workspace), file_id(catalog))  # the version before the rows: never a newer key on older rows
    place = str(catalog.resolve())
    with _kept_lock:
        kept = _kept.get(place)
    if kept is not None and kept[0] == key:
        return kept[1]
    times = _read_times(workspace)
    with _kept_lock:
        _kept.pop(place, None)
        _kept[place] = (key, times)
        while len(_kept) > KEPT_CATALOGS:
            _kept.pop(next(iter(_kept)))
    return times


def _read_times(workspace: Workspace) -> CollectionTimes:
    """One pass over the subject-and-time index (it covers the three columns); each subject's
    start and the order by id are found in numpy, not by a second pass and a sort in SQLite."""
    rows = workspace.plain_cursor("SELECT id, subject_id, julianday(taken_at) FROM images")
    table = np.fromiter(itertools.chain.from_iterable(rows), dtype=float).reshape(-1, 3)  # no list of a million tuples
    subjects = table[:, 1].astype(np.int64)
    start = np.full(subjects.max(initial=0) + 1, np.inf)
    np.minimum.at(start, subjects, table[:, 2])
    order = np.argsort(table[:, 0], kind="stable")
    arrays = table[order, 0].astype(np.int64), subjects[order], (table[:, 2] - start[subjects])[order]
    for array in arrays:
        array.setflags(write=False)
    return CollectionTimes(*arrays)


def labeled_image_ids(workspace: Workspace) -> np.ndarray:
    """Ids of the images with a current label (pending pseudo-labels too), ascending; read as one
    JSON array, a fifth of the time of a row per id."""
    text = workspace.db.execute("SELECT json_group_array(image_id) FROM (SELECT image_id FROM current_labels ORDER BY image_id)").fetchone()[0]
    return np.array(json.loads(text), dtype=np.int64)
