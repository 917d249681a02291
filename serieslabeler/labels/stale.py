"""Stale pages: an action is refused when newer events touched its images than the page saw.

Two tabs (or two labelers) may show one cluster. Each page remembers the latest event that
touched the cluster's images when it drew them (:func:`latest_event_touching`) and passes it as
``expected_event_id``; an action finding a newer one is refused, naming who changed what, so
nobody overwrites a label they never saw.
"""
from __future__ import annotations

from serieslabeler.errors import PipelineError
from serieslabeler.store.queries import id_array
from serieslabeler.store.workspace import Workspace


def latest_event_touching(workspace: Workspace, image_ids, clustering_id: int | None = None, cluster: int | None = None) -> int:
    """The newest event that changed one of ``image_ids`` or acted on the cluster (0: none)."""
    row = workspace.db.execute(
        "SELECT MAX(i.event_id) FROM json_each(?) j CROSS JOIN label_event_images i ON i.image_id = j.value",
        (id_array(image_ids),),
    ).fetchone()
    newest = row[0] or 0
    if clustering_id is not None and cluster is not None:
        row = workspace.db.execute("SELECT MAX(id) FROM label_events WHERE clustering_id=? AND cluster=?", (clustering_id, cluster)).fetchone()
        newest = max(newest, row[0] or 0)
    return int(newest)


def refuse_if_stale(
    workspace: Workspace, expected_event_id: int | None, image_ids, what: str,
    clustering_id: int | None = None, cluster: int | None = None,
) -> None:
    """Raise when an event newer than ``expected_event_id`` touched the images (None: no check)."""
    if expected_event_id is None:
        return
    newest = latest_event_touching(workspace, image_ids, clustering_id, cluster)
    if newest <= int(expected_event_id):
        return
    row = workspace.db.execute("SELECT id, at, author, action, label FROM label_events WHERE id=?", (newest,)).fetchone()
    changed = workspace.db.execute("SELECT COUNT(*) FROM label_event_images WHERE event_id=?", (newest,)).fetchone()[0]
    label = f" as '{row['label']}'" if row["label"] else ""
    raise PipelineError(
        f"{what} changed since this page showed it: {row['author']} did {row['action'].replace('_', ' ')}{label} "
        f"({changed} image(s), event {row['id']} at {row['at']}); nothing was changed, look again and redo your action"
    )
