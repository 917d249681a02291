"""store.queries"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from serieslabeler.errors import PipelineError
from serieslabeler.store.workspace import Workspace

IMAGE_COLUMNS = ["image_id", "file", "subject", "taken_at"]


def id_array(image_ids) -> str:
    """Ids as one JSON array parameter: ``FROM json_each(?) j CROSS JOIN t ON t.id = j.value``
    reads exactly those rows through the tables' keys in one query (no chunked IN lists); ``j.key``
    is each id's position in the list. ``CROSS JOIN`` keeps the id list the outer loop: with a
    plain JOIN SQLite may scan the table by another index and the list for every row."""
    return json.dumps([int(i) for i in image_ids])


def image_table(workspace: Workspace, image_ids=None, subject: str | None = None):
    """One row per image: image_id, file, subject, taken_at; all images (by subject and time),
    one subject's, or those of ``image_ids`` in that order."""

    columns = "SELECT i.id AS image_id, i.file_name AS file, s.name AS subject, i.taken_at FROM "
    sql = columns + "images i JOIN subjects s ON s.id = i.subject_id"
    if image_ids is not None:
        rows = workspace.db.execute(
            columns + "json_each(?) j CROSS JOIN images i ON i.id = j.value JOIN subjects s ON s.id = i.subject_id",
            (id_array(image_ids),),
        ).fetchall()
        frame = pd.DataFrame([dict(r) for r in rows], columns=IMAGE_COLUMNS).set_index("image_id")
        return frame.reindex([int(i) for i in image_ids]).reset_index()
    where, params = (" WHERE s.name = ?", (subject,)) if subject is not None else ("", ())
    rows = workspace.db.execute(sql + where + " ORDER BY s.name, i.taken_at, i.id", params).fetchall()
    return pd.DataFrame([dict(r) for r in rows], columns=IMAGE_COLUMNS)


def subject_names(workspace: Workspace) -> list[str]:
    return [r[0] for r in workspace.db.execute("SELECT name FROM subjects ORDER BY name")]


def images_per_subject_day(workspace: Workspace, subjects: int | None = None):
    """How many images each subject has on each calendar day (the collection's timeline), for
    every subject or the first ``subjects`` by name (read through the subject index: the cost
    follows the subjects shown, not the collection)."""
    rows = workspace.db.execute(
        "SELECT s.name AS subject, substr(i.taken_at, 1, 10) AS day, COUNT(*) AS images "
        "FROM (SELECT id, name FROM subjects ORDER BY name LIMIT ?) s JOIN images i ON i.subject_id = s.id "
        "GROUP BY s.id, day ORDER BY s.name, day",
        (-1 if subjects is None else int(subjects),),
    ).fetchall()
    return pd.DataFrame([dict(r) for r in rows], columns=["subject", "day", "images"])


def interactions_until(workspace: Workspace, when: str) -> int:
    """Interactions spent in label events up to a moment (ISO time), e.g. a model's creation."""
    row = workspace.db.execute("SELECT COALESCE(SUM(interactions), 0) FROM label_events WHERE at <= ?", (when,)).fetchone()
    return int(row[0])


def session_ids(workspace: Workspace) -> list[int]:
    return [r[0] for r in workspace.db.execute("SELECT id FROM labeling_sessions ORDER BY id")]


def has_ground_truth(workspace: Workspace) -> bool:
    """Ground truth on at least 2 subjects: enough for a subject-grouped evaluation."""
    truth = "SELECT i.subject_id FROM ground_truth g JOIN images i ON i.id = g.image_id"
    first = workspace.db.execute(f"{truth} LIMIT 1").fetchone()
    return first is not None and workspace.db.execute(f"{truth} WHERE i.subject_id != ? LIMIT 1", (first[0],)).fetchone() is not None


def sample_ids(workspace: Workspace, sample_id: int) -> np.ndarray:
    """The image ids of a saved sample, sorted."""
    if workspace.db.execute("SELECT 1 FROM samples WHERE id=?", (int(sample_id),)).fetchone() is None:
        raise PipelineError(f"no sample {sample_id} in {workspace.root}; list them with 'serieslabeler samples'")
    rows = workspace.db.execute("SELECT image_id FROM sample_images WHERE sample_id=? ORDER BY image_id", (int(sample_id),))
    return np.array([r[0] for r in rows], dtype=np.int64)


def image_times(workspace: Workspace, image_ids) -> np.ndarray:
    """Each image's timestamp (ISO text), in the order given."""
    rows = workspace.query_in("SELECT id, taken_at FROM images WHERE id IN ({})", image_ids)
    by_id = {r[0]: r[1] for r in rows}
    return np.array([by_id[int(i)] for i in image_ids])
