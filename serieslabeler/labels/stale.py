"""Stale pages: an action is refused when newer events touched its images than the page saw.

Two tabs (or two labelers) may show one cluster. Each page remembers the log's latest event
when it drew the cluster (:func:`latest_event_id`) and passes it as ``expected_event_id``; an
action finding a newer event that touched its images (or the cluster) is refused, naming who
changed what, so nobody overwrites a label they never saw. Events on other images pass.
"""
from __future__ import annotations

from serieslabeler.errors import PipelineError
from serieslabeler.store.queries import id_array
from serieslabeler.store.workspace import Workspace


def latest_event_id(workspace: Workspace) -> int:
    """The log's newest event (0: none): a page shows the labels as of this event, and passes it
    as ``expected_event_id`` with an action on what it showed."""
    return int(workspace.db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0])


def latest_event_touching(
    workspace: Workspace, image_ids, clustering_id: int | None = None, cluster: int | None = None, after: int = 0,
) -> int:
    """The newest event after ``after`` that changed one of ``image_ids`` or acted on the cluster
    (0: none). Reads the per-image rows of those later events only (their key range), so a check
    right after the page was drawn costs what happened since, not the log's size."""
    row = workspace.db.execute(
        "SELECT MAX(i.event_id) FROM label_event_images i "
        "WHERE i.event_id > ? AND i.image_id IN (SELECT value FROM json_each(?))",
        (int(after), id_array(image_ids)),
    ).fetchone()
    newest = row[0] or 0
    if clustering_id is not None and cluster is not None:
        row = workspace.db.execute(
            "SELECT MAX(id) FROM label_events WHERE clustering_id=? AND cluster=? AND id > ?", (clustering_id, cluster, int(after))
        ).fetchone()
        newest = max(newest, row[0] or 0)
    return int(newest)


def refuse_if_stale(
    workspace: Workspace, expected_event_id: int | None, image_ids, what: str,
    clustering_id: int | None = None, cluster: int | None = None,
) -> None:
    """Raise when an event newer than ``expected_event_id`` touched the images (None: no check)."""
    if expected_event_id is None:
        return
    newest = latest_event_touching(workspace, image_ids, clustering_id, cluster, after=expected_event_id)
    if newest == 0:
        return
    row = workspace.db.execute("SELECT id, at, author, action, label FROM label_events WHERE id=?", (newest,)).fetchone()
    changed = workspace.db.execute("SELECT COUNT(*) FROM label_event_images WHERE event_id=?", (newest,)).fetchone()[0]
    label = f" as '{row['label']}'" if row["label"] else ""
    raise PipelineError(
        f"{what} changed since this page showed it: {row['author']} did {row['action'].replace('_', ' ')}{label} "
        f"({changed} image(s), event {row['id']} at {row['at']}); nothing was changed, look again and redo your action"
    )
