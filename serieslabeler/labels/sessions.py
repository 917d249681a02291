"""labels.sessions"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import (
    _LIVE,
    LABELING_ACTIONS,
    _check_session,
    interaction_count,
)
from serieslabeler.store.workspace import Workspace


@dataclass(frozen=True)
class SessionStats:
    """A labeling session's counter and timer, and the rates the app shows."""

    id: int
    author: str
    started_at: str
    ended_at: str | None
    minutes: float
    interactions: int
    images_labeled: int
    images_per_interaction: float | None = None
    images_per_minute: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# --- labeling sessions ---------------------------------------------------------------------------
def start_session(workspace: Workspace, author: str = "cli") -> int:
    """Open a labeling session; pass its id to the actions so they count toward it."""
    with workspace.transaction() as db:
        return int(db.execute("INSERT INTO labeling_sessions(author) VALUES (?)", (author,)).lastrowid)


def open_session(workspace: Workspace, author: str = "cli") -> int:
    """The author's open labeling session (its timer and counters live in the catalog), or a new one."""
    row = workspace.db.execute(
        "SELECT id FROM labeling_sessions WHERE author=? AND ended_at IS NULL ORDER BY id DESC LIMIT 1", (author,)
    ).fetchone()
    return int(row[0]) if row else start_session(workspace, author)


def end_session(workspace: Workspace, session_id: int) -> SessionStats:
    """Stop a session's timer."""
    with workspace.transaction() as db:
        _check_session(workspace, session_id)
        db.execute("UPDATE labeling_sessions SET ended_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id=?", (session_id,))
    return session_stats(workspace, session_id)


def session_stats(workspace: Workspace, session_id: int) -> SessionStats:
    """Interactions, images labeled (by the session's labeling actions not undone, each counting
    the images it labeled: one relabeled counts again, like the interaction it took), minutes, and
    rates. Both counters add up stored per-event numbers, so they cost the session's events, not
    its images."""
    db = workspace.db
    session = db.execute("SELECT * FROM labeling_sessions WHERE id=?", (session_id,)).fetchone()
    if session is None:
        raise PipelineError(f"no labeling session {session_id} in {workspace.root}")
    actions = ",".join(f"'{a}'" for a in LABELING_ACTIONS)
    images = db.execute(
        f"SELECT COALESCE(SUM(e.labeled), 0) FROM label_events e WHERE e.session_id=? AND e.action IN ({actions}) AND {_LIVE}",
        (session_id,),
    ).fetchone()[0]
    interactions = interaction_count(workspace, session_id=session_id)
    end = _parse_time(session["ended_at"]) if session["ended_at"] else datetime.now(timezone.utc)
    minutes = max((end - _parse_time(session["started_at"])).total_seconds() / 60.0, 0.0)
    return SessionStats(
        id=session_id,
        author=session["author"],
        started_at=session["started_at"],
        ended_at=session["ended_at"],
        minutes=minutes,
        interactions=interactions,
        images_labeled=images,
        images_per_interaction=images / interactions if interactions else None,
        images_per_minute=images / minutes if minutes > 0 else None,
    )


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
