"""Labels: an append-only log of labeling events, the current labels kept from it, undo and redo,
the label vocabulary, the review order inside a cluster, and labeling sessions.

Every action is one transaction (``BEGIN IMMEDIATE`` with a busy timeout, so two processes
labeling one workspace queue up instead of losing events). It appends one ``label_events`` row,
one ``label_event_images`` row per image it changes (the new state and the exact previous
state), and updates ``current_labels`` to match. Log rows are never updated or deleted: undo is
a new event that restores the previous states, redo a new event that re-applies the undone one.
When two events label the same image, the later one wins and both stay in the log.

``current_labels.event_id`` is the *origin* of a label, the event whose decision it is. Renaming
or merging a label and accepting a pseudo-label keep the origin (the decision stands, only its
name or status changes); an undo restores the origin of the state it restores. The export reads
a label's iteration from its origin. :func:`replay_labels` recomputes everything from the log.

Interactions measure the expert's effort: labeling a cluster is 1, plus 1 per image clicked out
of it; labeling or unlabeling images by hand is 1 per image; skipping a cluster is 1; accepting
or rejecting pseudo-labels is 1 per image chosen, or 1 for a whole class at once. Undo, redo,
vocabulary changes and a model's pseudo-labels cost nothing, and undone actions still count
(the effort was spent).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from serieslabeler.errors import PipelineError
from serieslabeler.labels.records import LabelEvent, LabelState
from serieslabeler.labels.stale import refuse_if_stale
from serieslabeler.labels.vocabulary import (
    VocabularyChange,
    _apply_vocabulary,
    _effective_vocabulary,
    _resolve_label,
)
from serieslabeler.store.queries import id_array
from serieslabeler.store.workspace import Workspace

# SQLite's largest integer: a bigger "id" names no image (and would overflow the query).
MAX_IMAGE_ID = 2**63 - 1


# The four state columns of no label, and the previous state and origin of an unlabeled image.
NO_STATE = (None, None, None, None)
NO_PREVIOUS = (None, None)


# Actions that give images a label a person decided on (for images labeled per session).
LABELING_ACTIONS = ("label_cluster", "label_images", "accept_pseudo", "label_series")


# Actions that change a label's name or status but not whose decision it is.
KEEPS_ORIGIN = ("vocab_rename", "vocab_merge", "accept_pseudo")


# --- the one writer ------------------------------------------------------------------------------
def _record(
    workspace: Workspace,
    action: str,
    changes: dict[int, LabelState | None],
    *,
    author: str,
    interactions: int = 0,
    label: str | None = None,
    source: str | None = None,
    iteration: int | None = None,
    clustering_id: int | None = None,
    cluster: int | None = None,
    reverses: int | None = None,
    session_id: int | None = None,
    details: dict | None = None,
    vocabulary: VocabularyChange = VocabularyChange(),
    restored_origins: dict[int, int | None] | None = None,
) -> LabelEvent:
    """Append one event with its per-image rows and bring ``current_labels`` along.

    Must run inside ``workspace.transaction()``; callers validate their input before.
    """
    db = workspace.db
    _check_session(workspace, session_id)
    previous = _current_states(workspace, list(changes))
    vocabulary = _effective_vocabulary(workspace, vocabulary, changes, previous)
    details = dict(details or {})
    if vocabulary:
        details["vocabulary"] = vocabulary.to_dict()
    labeled = sum(state is not None for state in changes.values())
    event_id = db.execute(
        "INSERT INTO label_events(author, action, label, source, iteration, clustering_id, cluster, "
        "interactions, reverses, session_id, details, labeled) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (author, action, label, source, iteration, clustering_id, cluster, interactions, reverses, session_id, json.dumps(details), labeled),
    ).lastrowid
    log_rows, inserts, updates, deletes = [], [], [], []
    restored_origins = restored_origins or {}
    for image_id, new in changes.items():
        prev, prev_origin = previous.get(image_id, NO_PREVIOUS)
        restored = restored_origins.get(image_id)
        log_rows.append((event_id, image_id, *_state_columns(new), *_state_columns(prev), prev_origin))
        if new is None:
            deletes.append((image_id,))
        else:
            row = (image_id, *new, _origin(action, event_id, prev_origin, restored))
            (inserts if prev is None else updates).append(row)
    db.executemany(
        "INSERT INTO label_event_images(event_id, image_id, label, source, confidence, status, "
        "prev_label, prev_source, prev_confidence, prev_status, prev_event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        log_rows,
    )
    # The previous states were read in this transaction, so each image's row is known to exist or
    # not: a plain INSERT or UPDATE (an upsert tries the insert first; an UPDATE takes a fifth less time).
    db.executemany("DELETE FROM current_labels WHERE image_id=?", deletes)
    db.executemany("INSERT INTO current_labels(image_id, label, source, confidence, status, event_id) VALUES (?,?,?,?,?,?)", inserts)
    db.executemany("UPDATE current_labels SET label=?2, source=?3, confidence=?4, status=?5, event_id=?6 WHERE image_id=?1", updates)
    _move_cluster_counts(workspace, changes, previous)
    _move_label_counts(workspace, changes, previous)
    _apply_vocabulary(workspace, vocabulary)
    return _event(db.execute("SELECT * FROM label_events WHERE id=?", (event_id,)).fetchone(), len(changes))


def _move_cluster_counts(workspace: Workspace, changes: dict[int, LabelState | None], previous: dict) -> None:
    """Bring ``cluster_label_counts`` (accepted labels per cluster and label, see the migration)
    along with an event: each accepted label it took away counts -1 and each it gave +1, in every
    cluster holding the image; one grouped upsert per label and sign (a cluster label: two)."""
    moves: dict[tuple[str, int], list[int]] = {}
    for image_id, prev, new in _transitions(changes, previous):
        gives = new is not None and new.status == "accepted"
        took = prev is not None and prev.status == "accepted"
        if gives and took and new.label == prev.label:
            continue
        if gives:
            moves.setdefault((new.label, 1), []).append(image_id)
        if took:
            moves.setdefault((prev.label, -1), []).append(image_id)
    for (label, sign), image_ids in moves.items():
        workspace.db.execute(
            "INSERT INTO cluster_label_counts(clustering_id, cluster, label, n) "
            "SELECT m.clustering_id, m.cluster, ?, ? * COUNT(*) FROM json_each(?) j CROSS JOIN cluster_members m ON m.image_id = j.value "
            "WHERE true GROUP BY m.clustering_id, m.cluster "
            "ON CONFLICT(clustering_id, cluster, label) DO UPDATE SET n = n + excluded.n",
            (label, sign, id_array(image_ids)),
        )


def _move_label_counts(workspace: Workspace, changes: dict[int, LabelState | None], previous: dict) -> None:
    """Bring ``label_counts`` (current labels per label and source, see the migration) along
    with an event: -1 for each state it replaced, +1 for each it wrote; a count that reaches
    zero is removed."""
    moves: dict[tuple[str, str], int] = {}
    for _, prev, new in _transitions(changes, previous):
        if prev is not None:
            moves[prev.label, prev.source] = moves.get((prev.label, prev.source), 0) - 1
        if new is not None:
            moves[new.label, new.source] = moves.get((new.label, new.source), 0) + 1
    moved = [(label, source, n) for (label, source), n in moves.items() if n]
    if not moved:
        return
    workspace.db.executemany(
        "INSERT INTO label_counts(label, source, n) VALUES (?,?,?) ON CONFLICT(label, source) DO UPDATE SET n = n + excluded.n", moved
    )
    workspace.db.execute("DELETE FROM label_counts WHERE n = 0")


def _transitions(changes: dict[int, LabelState | None], previous: dict):
    """``(image_id, state before, state after)`` for each image an event changes."""
    for image_id, new in changes.items():
        yield image_id, previous.get(image_id, NO_PREVIOUS)[0], new


def _origin(action: str, event_id: int, prev_origin: int | None, restored: int | None) -> int | None:
    """The event a label's decision comes from after ``action`` (see the module docstring)."""
    if action == "undo":
        return restored
    if action in KEEPS_ORIGIN:
        return prev_origin
    return event_id


def _state_columns(state: LabelState | None) -> tuple:
    return NO_STATE if state is None else state


def _state(label, source, confidence, status) -> LabelState | None:
    """A label state from its four columns (no label: None). Rows are read by position: looking
    a column up by name costs a microsecond, four per image of a 5,000-image click."""
    return None if label is None else LabelState(label, source, confidence, status)


def _current_states(workspace: Workspace, image_ids) -> dict[int, tuple[LabelState, int]]:
    """``{image_id: (state, origin event)}`` of the labeled ones among ``image_ids``."""
    rows = workspace.plain_rows(
        "SELECT c.image_id, c.label, c.source, c.confidence, c.status, c.event_id "
        "FROM json_each(?) j CROSS JOIN current_labels c ON c.image_id = j.value",
        (id_array(image_ids),),
    )
    return {row[0]: (LabelState(*row[1:5]), row[5]) for row in rows}


def _event(row, changed: int) -> LabelEvent:
    columns = {key: row[key] for key in row.keys() if key != "details"}
    return LabelEvent(**columns, details=json.loads(row["details"]), changed=changed)


# --- validation ----------------------------------------------------------------------------------
def _image_ids(values, what: str = "image ids") -> list[int]:
    """Distinct integer ids in the order given, with a clear message for anything else."""
    out: dict[int, None] = {}
    for value in values:
        try:
            number = int(value)
            if number != float(value) or not 0 < number <= MAX_IMAGE_ID:
                raise ValueError
        except (TypeError, ValueError):
            raise PipelineError(f"{what}: '{value}' is not an image id (a whole number from 1 to 2**63-1)") from None
        out[number] = None
    return list(out)


def _require_images(workspace: Workspace, image_ids: list[int]) -> None:
    known = {row[0] for row in workspace.query_in("SELECT id FROM images WHERE id IN ({})", image_ids)}
    missing = [i for i in image_ids if i not in known]
    if missing:
        raise PipelineError(f"no image with id {missing[0]} in {workspace.root} ({len(missing)} unknown id(s))")


def _check_confidence(value: float, what: str, low_inclusive: bool = False) -> float:
    value = float(value)
    if not (math.isfinite(value) and (0.0 <= value if low_inclusive else 0.0 < value) and value <= 1.0):
        bounds = "[0, 1]" if low_inclusive else "(0, 1]"
        raise PipelineError(f"{what} must be in {bounds}, not {value}")
    return value


def _check_session(workspace: Workspace, session_id: int | None) -> None:
    if session_id is None:
        return
    row = workspace.db.execute("SELECT ended_at FROM labeling_sessions WHERE id=?", (session_id,)).fetchone()
    if row is None:
        raise PipelineError(f"no labeling session {session_id} in {workspace.root}; start one first")
    if row["ended_at"] is not None:
        raise PipelineError(f"labeling session {session_id} ended at {row['ended_at']}; start a new one")


def _check_source(source: str, allowed: tuple[str, ...]) -> None:
    if source not in allowed:
        raise PipelineError(f"label source must be one of {', '.join(allowed)}, not '{source}'")


def label_images(
    workspace: Workspace,
    image_ids,
    label: str,
    author: str = "cli",
    source: str = "manual",
    confidence: float = 1.0,
    iteration: int | None = None,
    session_id: int | None = None,
    expected_event_id: int | None = None,
) -> LabelEvent:
    """Label images one by one (source ``manual``, 1 interaction each; ``import``: none);
    ``expected_event_id`` as for :func:`serieslabeler.labels.clusters.label_cluster`."""
    _check_source(source, ("manual", "import"))
    confidence = _check_confidence(confidence, "a label's confidence")
    image_ids = _image_ids(image_ids)
    if not image_ids:
        raise PipelineError("name at least one image to label")
    with workspace.transaction():
        _require_images(workspace, image_ids)
        refuse_if_stale(workspace, expected_event_id, image_ids, f"{len(image_ids)} image(s)")
        label, vocabulary_change = _resolve_label(workspace, label)
        changes = {i: LabelState(label, source, confidence) for i in image_ids}
        return _record(
            workspace, "label_images", changes, author=author, interactions=len(image_ids) if source == "manual" else 0,
            label=label, source=source, iteration=iteration, session_id=session_id, vocabulary=vocabulary_change,
        )


def unlabel_images(workspace: Workspace, image_ids, author: str = "cli", session_id: int | None = None) -> LabelEvent:
    """Send labeled images back to the unlabeled pool (1 interaction each)."""
    image_ids = _image_ids(image_ids)
    with workspace.transaction():
        labeled = _current_states(workspace, image_ids)
        missing = [i for i in image_ids if i not in labeled]
        if missing or not image_ids:
            raise PipelineError(f"image {missing[0]} has no label to remove" if missing else "name at least one image to unlabel")
        return _record(workspace, "unlabel", dict.fromkeys(image_ids), author=author, interactions=len(image_ids), session_id=session_id)


# --- undo and redo -------------------------------------------------------------------------------
_LIVE = "NOT EXISTS (SELECT 1 FROM label_events u WHERE u.action='undo' AND u.reverses=e.id)"


def _by(author: str | None, column: str) -> tuple[str, tuple]:
    """An SQL condition keeping one author's events (none: everyone's)."""
    return ("", ()) if author is None else (f" AND {column}=?", (author,))


def _last_live_event(workspace: Workspace, author: str | None = None):
    mine, params = _by(author, "e.author")
    return workspace.db.execute(f"SELECT * FROM label_events e WHERE e.action != 'undo' AND {_LIVE}{mine} ORDER BY e.id DESC LIMIT 1", params).fetchone()


def _last_redoable_undo(workspace: Workspace, author: str | None = None):
    """The latest undo (by ``author``) not yet redone, if no new action (by them) came after it."""
    mine, params = _by(author, "e.author")
    theirs, later = _by(author, "author")
    return workspace.db.execute(
        f"SELECT * FROM label_events e WHERE e.action='undo'{mine} "
        f"AND e.id > COALESCE((SELECT MAX(id) FROM label_events WHERE reverses IS NULL{theirs}), 0) "
        "AND NOT EXISTS (SELECT 1 FROM label_events r WHERE r.reverses=e.id) ORDER BY e.id DESC LIMIT 1",
        (*params, *later),
    ).fetchone()


def _image_rows(workspace: Workspace, event_id: int) -> list[tuple[int, LabelState | None, LabelState | None, int | None]]:
    """An event's per-image rows: (image id, the state it gave, the state before, that state's origin)."""
    rows = workspace.db.execute(
        "SELECT image_id, label, source, confidence, status, prev_label, prev_source, prev_confidence, prev_status, prev_event_id "
        "FROM label_event_images WHERE event_id=? ORDER BY image_id",
        (event_id,),
    ).fetchall()
    return [(row[0], _state(*row[1:5]), _state(*row[5:9]), row[9]) for row in rows]


def _matches(current: tuple[LabelState, int] | None, state: LabelState | None, origin: int | None) -> bool:
    return current is None if state is None else current == (state, origin)


def _decisions(workspace: Workspace, event_ids) -> dict[int | None, int | None]:
    """Each event id mapped to the decision it carries: a redo carries the decision of the event
    it re-applies (``details['redo_of']``, followed through redos of redos), so a label a redo
    gave back counts as the label the redone event had given when a later event is redone."""
    decision: dict[int | None, int | None] = {None: None}
    for event_id in event_ids:
        seen, current = [], event_id
        while current is not None and current not in decision:
            seen.append(current)
            row = workspace.db.execute("SELECT details FROM label_events WHERE id=?", (current,)).fetchone()
            current = json.loads(row[0]).get("redo_of") if row and row[0] else None
        if seen:
            root = decision[current] if current is not None else seen[-1]
            decision.update({event: root for event in seen})
    return decision


def undo(workspace: Workspace, n: int = 1, author: str = "cli", session_id: int | None = None, any_author: bool = False) -> list[LabelEvent]:
    """Undo ``author``'s last ``n`` events still in force, newest first (each labeler has their own
    stack); ``any_author`` takes anyone's, and an undo of someone else's event records whose it
    was (``details['other_author']``).

    Each undo is a new event restoring every image's exact previous state (label, source,
    confidence, status, or no label). Undo and redo always take the newest event, so the images
    are as that event left them; should one not be, it keeps its label (``details['kept']``).
    """
    if n < 1:
        raise PipelineError(f"the number of events to undo must be at least 1, not {n}")
    done = []
    with workspace.transaction():
        for _ in range(n):
            target = _last_live_event(workspace, None if any_author else author)
            if target is None:
                break
            done.append(_undo_event(workspace, target, author, session_id))
        if not done:
            raise PipelineError("nothing to undo" + ("" if any_author else f" by {author} (undoing others' events is a separate choice)"))
    return done


def _undo_event(workspace: Workspace, target, author: str, session_id: int | None) -> LabelEvent:
    rows = _image_rows(workspace, target["id"])
    current = _current_states(workspace, [row[0] for row in rows])
    changes, origins, kept = {}, {}, []
    for image_id, given, before, before_origin in rows:
        origin = _origin(target["action"], target["id"], before_origin, None)
        if _matches(current.get(image_id), given, origin):
            changes[image_id] = before
            origins[image_id] = before_origin
        else:
            kept.append(image_id)
    return _record(
        workspace, "undo", changes, author=author, label=target["label"], source=target["source"],
        iteration=target["iteration"], clustering_id=target["clustering_id"], cluster=target["cluster"],
        reverses=target["id"], session_id=session_id, details={"undoes": target["action"], "kept": kept, **_other_author(target, author)},
        vocabulary=VocabularyChange.from_dict(json.loads(target["details"]).get("vocabulary")).inverse(),
        restored_origins=origins,
    )


def _other_author(target, author: str) -> dict:
    return {} if target["author"] == author else {"other_author": target["author"]}


def redo(workspace: Workspace, author: str = "cli", session_id: int | None = None, any_author: bool = False) -> LabelEvent:
    """Re-apply ``author``'s last undone event (``any_author``: anyone's) as a new event (same
    action, ``reverses`` = the undo)."""
    with workspace.transaction():
        undo_row = _last_redoable_undo(workspace, None if any_author else author)
        if undo_row is None:
            raise PipelineError("nothing to redo" + ("" if any_author else f" by {author}"))
        target = workspace.db.execute("SELECT * FROM label_events WHERE id=?", (undo_row["reverses"],)).fetchone()
        rows = _image_rows(workspace, target["id"])
        current = _current_states(workspace, [row[0] for row in rows])
        decision = _decisions(workspace, {origin for _, origin in current.values()} | {row[3] for row in rows})
        changes, kept = {}, []
        for image_id, given, before, before_origin in rows:
            now = current.get(image_id)
            if _matches(None if now is None else (now[0], decision[now[1]]), before, decision[before_origin]):
                changes[image_id] = given
            else:
                kept.append(image_id)
        details = json.loads(target["details"])
        vocabulary_change = VocabularyChange.from_dict(details.pop("vocabulary", None))
        return _record(
            workspace, target["action"], changes, author=author, label=target["label"], source=target["source"],
            iteration=target["iteration"], clustering_id=target["clustering_id"], cluster=target["cluster"],
            reverses=undo_row["id"], session_id=session_id, details={**details, "redo_of": target["id"], "kept": kept, **_other_author(undo_row, author)},
            vocabulary=vocabulary_change,
        )


# --- reading -------------------------------------------------------------------------------------
LABEL_COLUMNS = ["image_id", "label", "source", "confidence", "status", "event_id"]


def _frame(rows, columns: list[str]):
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def current_labels(workspace: Workspace, include_pending: bool = True):
    """DataFrame of the current labels (image_id, label, source, confidence, status, event_id)."""
    return _labels_frame(workspace, "" if include_pending else " WHERE status='accepted'")


def pending_labels(workspace: Workspace):
    """:func:`current_labels` of the pending pseudo-labels only (read through their own index)."""
    return _labels_frame(workspace, " WHERE status='pending'")


def _labels_frame(workspace: Workspace, where: str):
    rows = workspace.plain_rows(f"SELECT {', '.join(LABEL_COLUMNS)} FROM current_labels{where} ORDER BY image_id")
    return _frame(rows, LABEL_COLUMNS)


def replay_labels(workspace: Workspace):
    """The current labels recomputed from the event log alone (same columns as :func:`current_labels`)."""
    rows = workspace.db.execute(
        "SELECT e.action, e.reverses, i.* FROM label_event_images i JOIN label_events e ON e.id = i.event_id "
        "ORDER BY i.event_id, i.image_id"
    )
    state: dict[int, tuple] = {}
    prev_origin: dict[tuple[int, int], int | None] = {}
    for row in rows:
        image_id = row["image_id"]
        prev_origin[(row["event_id"], image_id)] = row["prev_event_id"]
        if row["label"] is None:
            state.pop(image_id, None)
            continue
        restored = prev_origin.get((row["reverses"], image_id)) if row["action"] == "undo" else None
        origin = _origin(row["action"], row["event_id"], row["prev_event_id"], restored)
        state[image_id] = (image_id, row["label"], row["source"], row["confidence"], row["status"], origin)
    return _frame([state[i] for i in sorted(state)], LABEL_COLUMNS)


def training_labels(workspace: Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_ids, labels, weights)`` of the accepted labels; a label's weight is its confidence
    (manual 1.0, cluster ``p_c * exp(-a * d)``, accepted pseudo the model's confidence)."""
    rows = workspace.db.execute("SELECT image_id, label, confidence FROM current_labels WHERE status='accepted' ORDER BY image_id").fetchall()
    return (
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=object),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


def interaction_count(workspace: Workspace, session_id: int | None = None, author: str | None = None) -> int:
    """Interactions spent so far (in one session, or by one author)."""
    sql, params = "SELECT COALESCE(SUM(interactions), 0) FROM label_events WHERE 1=1", []
    if session_id is not None:
        sql += " AND session_id=?"
        params.append(session_id)
    if author is not None:
        sql += " AND author=?"
        params.append(author)
    return int(workspace.db.execute(sql, params).fetchone()[0])


def events(workspace: Workspace, limit: int | None = None) -> list[dict]:
    """The log, newest first: each event with the number of images it changed and whether it is undone."""
    rows = workspace.db.execute(
        "SELECT e.id, e.at, e.author, e.action, e.label, e.source, e.iteration, e.clustering_id, e.cluster, "
        "e.interactions, e.reverses, e.session_id, "
        "(SELECT COUNT(*) FROM label_event_images i WHERE i.event_id = e.id) AS images, "
        f"NOT {_LIVE} AS undone FROM label_events e ORDER BY e.id DESC LIMIT ?",
        (-1 if limit is None else limit,),
    )
    return [{**dict(row), "undone": bool(row["undone"])} for row in rows]
