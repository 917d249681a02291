"""store.series: a series is the images of one subject, optionally of one attribute value, in time order.

A series is named by its key: ``SUBJECT`` (all of the subject's images) or
``SUBJECT/ATTR=VALUE`` (those whose attribute ``ATTR`` is ``VALUE``, e.g. one body part or one
camera view). Images are ordered by time, then by id.

A workspace can save the attribute that splits its subjects into series (:func:`save_split`):
where each body part or view goes through the stages at its own pace, routing, held-out scores
and the oracle's rounds then decode each part's series on its own (:func:`series_groups`), not
the photos of all parts interleaved.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.store.workspace import Workspace

SPLIT_KEY = "series_split"
_SERIES_SQL = (
    "SELECT i.id, i.taken_at FROM images i JOIN subjects s ON s.id = i.subject_id WHERE s.name = ?{} "
    "ORDER BY i.taken_at, i.id"
)


@dataclass(frozen=True)
class Series:
    """One series: its key, subject, optional attribute split, and image ids in time order."""

    key: str
    subject: str
    attribute: str | None
    value: str | None
    image_ids: tuple[int, ...]
    taken_at: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.image_ids)

    def position(self, image_id: int) -> int:
        """The image's place in the series (0 = first photo); a clear error for a stranger."""
        try:
            return self.image_ids.index(int(image_id))
        except ValueError:
            raise PipelineError(f"image {image_id} is not in series '{self.key}' ({len(self)} images)") from None

    def to_dict(self) -> dict:
        return {"key": self.key, "subject": self.subject, "attribute": self.attribute, "value": self.value,
                "images": len(self), "first": self.taken_at[0] if self.taken_at else None,
                "last": self.taken_at[-1] if self.taken_at else None}


def series_key(subject: str, attribute: str | None = None, value: str | None = None) -> str:
    return subject if attribute is None else f"{subject}/{attribute}={value}"


def parse_series_key(key: str) -> tuple[str, str | None, str | None]:
    """``"F03"`` -> ``("F03", None, None)``; ``"F03/part=arm"`` -> ``("F03", "part", "arm")``.

    The split is at the last ``/`` before the first ``=``, so a value may hold slashes
    (``"F03/view=front/left"``) and so may a subject (``"site/F03/part=arm"``)."""
    key = str(key).strip()
    if not key:
        raise PipelineError("name a series: SUBJECT or SUBJECT/ATTR=VALUE")
    head, eq, value = key.partition("=")
    subject, sep, attribute = head.rpartition("/")
    if not (eq and sep):
        return key, None, None
    if subject and attribute.strip():
        return subject, attribute.strip(), value.strip()
    raise PipelineError(f"series '{key}' is not SUBJECT or SUBJECT/ATTR=VALUE")


def get_series(workspace: Workspace, key: str) -> Series:
    """The series named ``key``; a clear error naming what is unknown."""
    subject, attribute, value = parse_series_key(key)
    if workspace.db.execute("SELECT 1 FROM subjects WHERE name=?", (subject,)).fetchone() is None:
        raise PipelineError(f"unknown series '{key}': no subject '{subject}' in {workspace.root}")
    if attribute is None:
        rows = workspace.db.execute(_SERIES_SQL.format(""), (subject,)).fetchall()
    else:
        attribute_id = _attribute_id(workspace, attribute, f"unknown series '{key}'")
        rows = workspace.db.execute(
            _SERIES_SQL.format(" AND i.id IN (SELECT image_id FROM image_attributes WHERE attribute_id=? AND value=?)"),
            (subject, attribute_id, value),
        ).fetchall()
        if not rows:
            raise PipelineError(f"unknown series '{key}': subject '{subject}' has no image with {attribute}={value}")
    return Series(series_key(subject, attribute, value), subject, attribute, value,
                  tuple(int(r[0]) for r in rows), tuple(r[1] for r in rows))


def list_series(workspace: Workspace, split_by: str | None = None) -> list[Series]:
    """Every series of the workspace: one per subject, or one per (subject, value of ``split_by``)."""
    return [get_series(workspace, key) for key in series_keys(workspace, split_by)]


def series_keys(workspace: Workspace, split_by: str | None = None, without_series_labels: bool = False) -> list[str]:
    """The keys of :func:`list_series`, in its order, from one query (no series' images read:
    a picker of thousands of series reads only the one chosen). ``without_series_labels``: only
    the series none of whose images is labeled by series boundaries yet (those left to label)."""
    if split_by is None:
        keys = [r[0] for r in workspace.db.execute("SELECT name FROM subjects ORDER BY name")]
    else:
        pairs = workspace.db.execute(
            "SELECT DISTINCT s.name, a.value FROM images i JOIN subjects s ON s.id = i.subject_id "
            "JOIN image_attributes a ON a.image_id = i.id AND a.attribute_id = ? WHERE a.value IS NOT NULL "
            "ORDER BY s.name, a.value",
            (_attribute_id(workspace, split_by, f"split by '{split_by}'"),),
        ).fetchall()
        keys = [series_key(name, split_by, value) for name, value in pairs]
    if not without_series_labels:
        return keys
    labeled = series_with_series_labels(workspace, split_by)
    return [key for key in keys if key not in labeled]


def series_with_series_labels(workspace: Workspace, split_by: str | None = None) -> set[str]:
    """The keys of the series holding a series label, found from the series labels (not by
    reading every image)."""
    if split_by is None:
        rows = workspace.db.execute(
            "SELECT DISTINCT s.name FROM current_labels c JOIN images j ON j.id = c.image_id "
            "JOIN subjects s ON s.id = j.subject_id WHERE c.source = 'series'"
        )
        return {name for (name,) in rows}
    rows = workspace.db.execute(
        "SELECT DISTINCT s.name, b.value FROM current_labels c JOIN images j ON j.id = c.image_id "
        "JOIN subjects s ON s.id = j.subject_id JOIN image_attributes b ON b.image_id = j.id AND b.attribute_id = ? "
        "WHERE c.source = 'series' AND b.value IS NOT NULL",
        (_attribute_id(workspace, split_by, f"split by '{split_by}'"),),
    )
    return {series_key(name, split_by, value) for name, value in rows}


def next_series_to_label(keys: list[str], left, current: str) -> str | None:
    """The first of ``left`` (the series left to label) after ``current`` in ``keys`` (every
    series, in order), wrapping round; None when no other series is left."""
    left = set(left) - {current}
    start = keys.index(current) + 1 if current in keys else 0
    return next((key for key in keys[start:] + keys[:start] if key in left), None)


def _attribute_id(workspace: Workspace, attribute: str, what: str) -> int:
    row = workspace.db.execute("SELECT id FROM attributes WHERE name=?", (attribute,)).fetchone()
    if row is None:
        known = ", ".join(r[0] for r in workspace.db.execute("SELECT name FROM attributes ORDER BY name")) or "none"
        raise PipelineError(f"{what}: no attribute '{attribute}' (attributes: {known})")
    return int(row[0])


def saved_split(workspace: Workspace) -> str | None:
    """The attribute the workspace splits its subjects into series by (None: one per subject)."""
    return workspace.get_meta(SPLIT_KEY) or None


def save_split(workspace: Workspace, attribute: str | None) -> None:
    """Split every subject into series by ``attribute`` from now on (None: one series per subject)."""
    if attribute is None:
        with workspace.transaction():
            workspace.db.execute("DELETE FROM meta WHERE key=?", (SPLIT_KEY,))
        return
    _attribute_id(workspace, attribute, f"split by '{attribute}'")
    workspace.set_meta(SPLIT_KEY, attribute)


def series_groups(workspace: Workspace, image_ids) -> np.ndarray:
    """Each image's series key under the saved split: ``SUBJECT/ATTR=VALUE``, or its subject's
    name when no split is saved or the image has no value of the attribute."""
    ids = [int(i) for i in image_ids]
    split = saved_split(workspace)
    rows = workspace.query_in("SELECT i.id, s.name FROM images i JOIN subjects s ON s.id = i.subject_id WHERE i.id IN ({})", ids)
    subject = dict(rows)
    value = {} if split is None else dict(workspace.query_in(
        "SELECT image_id, value FROM image_attributes WHERE attribute_id = " + str(_attribute_id(workspace, split, "the saved series split"))
        + " AND value IS NOT NULL AND image_id IN ({})", ids,
    ))
    return np.array([subject[i] if i not in value else series_key(subject[i], split, value[i]) for i in ids], dtype=object)
