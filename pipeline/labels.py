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
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from .errors import PipelineError
from .workspace import Workspace

SOURCES = ("manual", "cluster", "pseudo", "import")
DEFAULT_VOCABULARY = ["Arm", "Hand", "Foot", "Legs", "Full Body", "Head", "Backside", "Torso", "Stake", "Plastic"]
REVIEW_MODES = ("atypical", "typical", "interleaved")
# Actions that give images a label a person decided on (for images labeled per session).
LABELING_ACTIONS = ("label_cluster", "label_images", "accept_pseudo")
# Actions that change a label's name or status but not whose decision it is.
KEEPS_ORIGIN = ("vocab_rename", "vocab_merge", "accept_pseudo")
MAX_LABEL_LENGTH = 100


@dataclass(frozen=True)
class LabelState:
    """An image's label as it is in ``current_labels`` (no row: no label)."""

    label: str
    source: str
    confidence: float
    status: str = "accepted"


@dataclass(frozen=True)
class LabelEvent:
    """One row of the log, and how many images it changed."""

    id: int
    action: str
    author: str
    at: str
    label: str | None
    source: str | None
    iteration: int | None
    clustering_id: int | None
    cluster: int | None
    interactions: int
    reverses: int | None
    session_id: int | None
    details: dict
    changed: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VocabularyChange:
    """Names an event adds to, removes from, or renames in the vocabulary."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.renamed)

    def inverse(self) -> "VocabularyChange":
        return VocabularyChange(self.removed, self.added, tuple((new, old) for old, new in self.renamed))

    def to_dict(self) -> dict:
        return {"added": list(self.added), "removed": list(self.removed), "renamed": [list(p) for p in self.renamed]}

    @classmethod
    def from_dict(cls, data: dict | None) -> "VocabularyChange":
        data = data or {}
        return cls(tuple(data.get("added", ())), tuple(data.get("removed", ())), tuple(tuple(p) for p in data.get("renamed", ())))


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
    event_id = db.execute(
        "INSERT INTO label_events(author, action, label, source, iteration, clustering_id, cluster, "
        "interactions, reverses, session_id, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (author, action, label, source, iteration, clustering_id, cluster, interactions, reverses, session_id, json.dumps(details)),
    ).lastrowid
    log_rows, upserts, deletes = [], [], []
    for image_id, new in changes.items():
        prev, prev_origin = previous.get(image_id, (None, None))
        restored = (restored_origins or {}).get(image_id)
        log_rows.append((event_id, image_id, *_state_columns(new), *_state_columns(prev), prev_origin))
        if new is None:
            deletes.append((image_id,))
        else:
            origin = _origin(action, event_id, prev_origin, restored)
            upserts.append((image_id, new.label, new.source, new.confidence, new.status, origin))
    db.executemany(
        "INSERT INTO label_event_images(event_id, image_id, label, source, confidence, status, "
        "prev_label, prev_source, prev_confidence, prev_status, prev_event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        log_rows,
    )
    db.executemany("DELETE FROM current_labels WHERE image_id=?", deletes)
    db.executemany(
        "INSERT INTO current_labels(image_id, label, source, confidence, status, event_id) VALUES (?,?,?,?,?,?) "
        "ON CONFLICT(image_id) DO UPDATE SET label=excluded.label, source=excluded.source, "
        "confidence=excluded.confidence, status=excluded.status, event_id=excluded.event_id",
        upserts,
    )
    _apply_vocabulary(workspace, vocabulary)
    return _event(db.execute("SELECT * FROM label_events WHERE id=?", (event_id,)).fetchone(), len(changes))


def _origin(action: str, event_id: int, prev_origin: int | None, restored: int | None) -> int | None:
    """The event a label's decision comes from after ``action`` (see the module docstring)."""
    if action == "undo":
        return restored
    if action in KEEPS_ORIGIN:
        return prev_origin
    return event_id


def _state_columns(state: LabelState | None) -> tuple:
    return (None, None, None, None) if state is None else (state.label, state.source, state.confidence, state.status)


def _row_state(row, prefix: str = "") -> LabelState | None:
    if row[f"{prefix}label"] is None:
        return None
    return LabelState(row[f"{prefix}label"], row[f"{prefix}source"], row[f"{prefix}confidence"], row[f"{prefix}status"])


def _current_states(workspace: Workspace, image_ids) -> dict[int, tuple[LabelState, int]]:
    rows = workspace.query_in("SELECT * FROM current_labels WHERE image_id IN ({})", image_ids)
    return {row["image_id"]: (_row_state(row), row["event_id"]) for row in rows}


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
            if number != float(value):
                raise ValueError
        except (TypeError, ValueError):
            raise PipelineError(f"{what}: '{value}' is not an image id (a whole number)") from None
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


# --- vocabulary ----------------------------------------------------------------------------------
def vocabulary(workspace: Workspace) -> list[str]:
    """The workspace's label names in the order they were added."""
    return [row[0] for row in workspace.db.execute("SELECT name FROM vocabulary ORDER BY rowid")]


def clean_label(name: str) -> str:
    """A label name with surrounding space removed; rejects empty, over-long or unprintable names."""
    name = unicodedata.normalize("NFC", str(name)).strip()
    if not name:
        raise PipelineError("a label name cannot be empty")
    if len(name) > MAX_LABEL_LENGTH:
        raise PipelineError(f"label '{name[:20]}...' is longer than {MAX_LABEL_LENGTH} characters")
    if "," in name or any(unicodedata.category(c).startswith("C") for c in name):
        raise PipelineError(f"label '{name}' contains a comma or a control character; choose another name")
    return name


def _vocabulary_name(workspace: Workspace, name: str) -> str | None:
    """The vocabulary's spelling of ``name`` (compared without case), or None."""
    row = workspace.db.execute("SELECT name FROM vocabulary WHERE name = ? COLLATE NOCASE ORDER BY rowid", (name,)).fetchone()
    return None if row is None else row[0]


def _resolve_label(workspace: Workspace, name: str) -> tuple[str, VocabularyChange]:
    """A label as the vocabulary spells it; a new name is added by the event that uses it."""
    name = clean_label(name)
    known = _vocabulary_name(workspace, name)
    return (known, VocabularyChange()) if known else (name, VocabularyChange(added=(name,)))


def _effective_vocabulary(
    workspace: Workspace,
    planned: VocabularyChange,
    changes: dict[int, LabelState | None],
    previous: dict[int, tuple[LabelState, int]],
) -> VocabularyChange:
    """The part of ``planned`` that applies: names are removed only if no label uses them after."""
    known = set(vocabulary(workspace))
    renamed = []
    for old, new in planned.renamed:
        if old in known and new not in known:
            renamed.append((old, new))
            known = (known - {old}) | {new}
    added = tuple(dict.fromkeys(n for n in planned.added if n not in known))
    removed = tuple(n for n in planned.removed if n in known and n not in added and _uses_after(workspace, n, changes, previous) == 0)
    return VocabularyChange(added, removed, tuple(renamed))


def _uses_after(workspace: Workspace, name: str, changes, previous) -> int:
    now = workspace.db.execute("SELECT COUNT(*) FROM current_labels WHERE label=?", (name,)).fetchone()[0]
    leaving = sum(1 for image_id in changes if image_id in previous and previous[image_id][0].label == name)
    arriving = sum(1 for state in changes.values() if state is not None and state.label == name)
    return now - leaving + arriving


def _apply_vocabulary(workspace: Workspace, change: VocabularyChange) -> None:
    db = workspace.db
    db.executemany("UPDATE vocabulary SET name=? WHERE name=?", [(new, old) for old, new in change.renamed])
    db.executemany("INSERT INTO vocabulary(name) VALUES (?)", [(n,) for n in change.added])
    db.executemany("DELETE FROM vocabulary WHERE name=?", [(n,) for n in change.removed])


def add_labels(workspace: Workspace, names, author: str = "cli") -> LabelEvent | None:
    """Add names to the vocabulary (an event); None when all were there already."""
    names = [clean_label(n) for n in names]
    with workspace.transaction():
        new = tuple(dict.fromkeys(n for n in names if _vocabulary_name(workspace, n) is None))
        if not new:
            return None
        return _record(workspace, "vocab_add", {}, author=author, label=new[0] if len(new) == 1 else None, vocabulary=VocabularyChange(added=new))


def add_default_vocabulary(workspace: Workspace, author: str = "cli") -> LabelEvent | None:
    """Offer the default vocabulary for decomposition photos (:data:`DEFAULT_VOCABULARY`)."""
    return add_labels(workspace, DEFAULT_VOCABULARY, author)


def _require_vocabulary_name(workspace: Workspace, name: str) -> str:
    known = _vocabulary_name(workspace, clean_label(name))
    if known is None:
        raise PipelineError(f"label '{name}' is not in the vocabulary ({', '.join(vocabulary(workspace)) or 'empty'})")
    return known


def _relabel(workspace: Workspace, old_names, new: str) -> dict[int, LabelState]:
    """Every current label named one of ``old_names``, renamed to ``new`` (other fields kept)."""
    rows = workspace.query_in("SELECT * FROM current_labels WHERE label IN ({})", list(old_names))
    return {row["image_id"]: LabelState(new, row["source"], row["confidence"], row["status"]) for row in rows}


def rename_label(workspace: Workspace, old: str, new: str, author: str = "cli") -> LabelEvent:
    """Rename a vocabulary label; current labels follow, the history keeps the old name."""
    new = clean_label(new)
    with workspace.transaction():
        old = _require_vocabulary_name(workspace, old)
        clash = _vocabulary_name(workspace, new)
        if clash is not None and clash != old:
            raise PipelineError(f"label '{clash}' already exists; merge '{old}' into it instead of renaming")
        if new == old:
            raise PipelineError(f"label '{old}' already has that name")
        return _record(
            workspace, "vocab_rename", _relabel(workspace, [old], new), author=author, label=new,
            details={"old": old, "new": new}, vocabulary=VocabularyChange(renamed=((old, new),)),
        )


def merge_labels(workspace: Workspace, sources, into: str, author: str = "cli") -> LabelEvent:
    """Merge labels into ``into``: their images get ``into`` and the names leave the vocabulary."""
    with workspace.transaction():
        into = _require_vocabulary_name(workspace, into)
        names = list(dict.fromkeys(_require_vocabulary_name(workspace, s) for s in sources))
        if not names or into in names:
            raise PipelineError(f"name the labels to merge into '{into}' (other than '{into}' itself)")
        return _record(
            workspace, "vocab_merge", _relabel(workspace, names, into), author=author, label=into,
            details={"merged": names, "into": into}, vocabulary=VocabularyChange(removed=tuple(names)),
        )


# --- clusters ------------------------------------------------------------------------------------
def cluster_members(workspace: Workspace, clustering_id: int, cluster: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids, distances)`` of one cluster, ids ascending; distance to the cluster centre."""
    db = workspace.db
    if db.execute("SELECT 1 FROM clusterings WHERE id=?", (clustering_id,)).fetchone() is None:
        known = ", ".join(str(r[0]) for r in db.execute("SELECT id FROM clusterings ORDER BY id")) or "none yet"
        raise PipelineError(f"no clustering {clustering_id} in {workspace.root} (known: {known})")
    rows = db.execute(
        "SELECT image_id, distance FROM cluster_members WHERE clustering_id=? AND cluster=? ORDER BY image_id",
        (clustering_id, cluster),
    ).fetchall()
    if not rows:
        clusters = [r[0] for r in db.execute("SELECT DISTINCT cluster FROM cluster_members WHERE clustering_id=? ORDER BY cluster", (clustering_id,))]
        raise PipelineError(f"clustering {clustering_id} has no cluster {cluster} (clusters: {_ranges(clusters)})")
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float64)


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return f"{numbers[0]}..{numbers[-1]}" if numbers == list(range(numbers[0], numbers[-1] + 1)) else ", ".join(map(str, numbers))


def cluster_confidences(distances: np.ndarray, cluster_confidence: float = 1.0, a: float = 1.0) -> np.ndarray:
    """``p_c * exp(-a * d)`` with ``d`` each distance over the cluster's median distance.

    A cluster whose median distance is 0 (one image, or identical images) gives every member ``p_c``.
    """
    distances = np.asarray(distances, dtype=np.float64)
    median = float(np.median(distances)) if len(distances) else 0.0
    d = distances / median if median > 0 else np.zeros_like(distances)
    return cluster_confidence * np.exp(-a * d)


def review_order(workspace: Workspace, clustering_id: int, cluster: int, mode: str = "atypical") -> np.ndarray:
    """A cluster's image ids in review order.

    ``atypical``: farthest from the centre first, so misfits show at the top; ``typical``: the
    reverse; ``interleaved``: alternately from both ends (farthest, closest, 2nd farthest, ...).
    """
    if mode not in REVIEW_MODES:
        raise PipelineError(f"review order must be one of {', '.join(REVIEW_MODES)}, not '{mode}'")
    ids, distances = cluster_members(workspace, clustering_id, cluster)
    farthest_first = ids[np.argsort(-distances, kind="stable")]
    if mode == "atypical":
        return farthest_first
    if mode == "typical":
        return farthest_first[::-1].copy()
    ends = np.empty_like(farthest_first)
    half = (len(ids) + 1) // 2
    ends[0::2] = farthest_first[:half]
    ends[1::2] = farthest_first[::-1][: len(ids) - half]
    return ends


def representatives(workspace: Workspace, clustering_id: int, cluster: int, n: int = 24, random_state: int = 0) -> np.ndarray:
    """``n`` image ids covering a cluster: the one closest to the centre, then farthest-point picks.

    Each further pick is the member farthest, in the space that made the clustering, from every
    image picked before, so a few images show the whole spread of a very large cluster.
    """
    from .cluster import load_clustering, space_matrix
    from .sampling import greedy_k_center

    if n < 1:
        raise PipelineError(f"the number of representatives must be at least 1, not {n}")
    ids, distances = cluster_members(workspace, clustering_id, cluster)
    if len(ids) <= n:
        return ids[np.argsort(distances, kind="stable")]
    clustering = load_clustering(workspace, clustering_id)
    X = space_matrix(workspace, clustering)[np.searchsorted(clustering.image_ids, ids)]
    centre = int(np.argmin(distances))
    picks = greedy_k_center(X, n - 1, np.random.default_rng(random_state), anchors=X[[centre]])
    return np.concatenate([[ids[centre]], ids[picks]])


# --- actions -------------------------------------------------------------------------------------
def label_cluster(
    workspace: Workspace,
    clustering_id: int,
    cluster: int,
    label: str,
    excluded=(),
    author: str = "cli",
    cluster_confidence: float = 1.0,
    a: float = 1.0,
    iteration: int | None = None,
    session_id: int | None = None,
) -> LabelEvent:
    """Label every member of a cluster except ``excluded`` (source ``cluster``).

    Each gets confidence ``p_c * exp(-a * d)`` (:func:`cluster_confidences`). Excluded images are
    left as they were (unlabeled ones stay in the pool). Interactions: 1 + one per excluded image.
    """
    cluster_confidence = _check_confidence(cluster_confidence, "the cluster confidence p_c")
    if not (math.isfinite(a) and a >= 0):
        raise PipelineError(f"the distance weight a must be a number >= 0, not {a}")
    excluded = _image_ids(excluded, "excluded images")
    with workspace.transaction():
        ids, distances = cluster_members(workspace, clustering_id, cluster)
        strangers = sorted(set(excluded) - set(ids.tolist()))
        if strangers:
            raise PipelineError(
                f"image {strangers[0]} is not a member of cluster {cluster} of clustering {clustering_id}; "
                f"exclude only images shown in that cluster"
            )
        keep = ~np.isin(ids, excluded)
        if not keep.any():
            raise PipelineError(
                f"every image of cluster {cluster} is excluded; skip the cluster instead, or label images one by one"
            )
        label, vocabulary_change = _resolve_label(workspace, label)
        confidences = cluster_confidences(distances, cluster_confidence, a)
        changes = {int(i): LabelState(label, "cluster", float(c)) for i, c in zip(ids[keep], confidences[keep])}
        return _record(
            workspace, "label_cluster", changes, author=author, interactions=1 + len(excluded), label=label,
            source="cluster", iteration=iteration, clustering_id=clustering_id, cluster=cluster, session_id=session_id,
            details={"excluded": sorted(excluded), "cluster_confidence": cluster_confidence, "a": a},
            vocabulary=vocabulary_change,
        )


def label_images(
    workspace: Workspace,
    image_ids,
    label: str,
    author: str = "cli",
    source: str = "manual",
    confidence: float = 1.0,
    iteration: int | None = None,
    session_id: int | None = None,
) -> LabelEvent:
    """Label images one by one (source ``manual``, 1 interaction each; ``import``: none)."""
    _check_source(source, ("manual", "import"))
    confidence = _check_confidence(confidence, "a label's confidence")
    image_ids = _image_ids(image_ids)
    if not image_ids:
        raise PipelineError("name at least one image to label")
    with workspace.transaction():
        _require_images(workspace, image_ids)
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


def skip_cluster(
    workspace: Workspace,
    clustering_id: int,
    cluster: int,
    author: str = "cli",
    iteration: int | None = None,
    session_id: int | None = None,
    reason: str | None = None,
) -> LabelEvent:
    """Record that a cluster has no dominant class; its images stay unlabeled (1 interaction)."""
    with workspace.transaction():
        cluster_members(workspace, clustering_id, cluster)
        return _record(
            workspace, "skip", {}, author=author, interactions=1, iteration=iteration, clustering_id=clustering_id,
            cluster=cluster, session_id=session_id, details={"reason": reason} if reason else None,
        )


# --- pseudo-labels -------------------------------------------------------------------------------
def add_pseudo_labels(
    workspace: Workspace,
    image_ids,
    labels,
    confidences,
    model_id: int,
    iteration: int | None = None,
    author: str = "model",
) -> LabelEvent:
    """A model's confident predictions as pending labels (source ``pseudo``) for review.

    An image that already has an accepted label keeps it (listed in ``details['kept']``); a
    pending pseudo-label is replaced.
    """
    image_ids = _image_ids(image_ids)
    labels, confidences = list(labels), [float(c) for c in confidences]
    if not len(image_ids) == len(labels) == len(confidences):
        raise PipelineError(f"pseudo-labels: {len(image_ids)} images, {len(labels)} labels and {len(confidences)} confidences differ in number")
    for value in confidences:
        _check_confidence(value, "a pseudo-label's confidence", low_inclusive=True)
    with workspace.transaction():
        _require_images(workspace, image_ids)
        current = _current_states(workspace, image_ids)
        kept = [i for i in image_ids if i in current and current[i][0].status == "accepted"]
        names: dict[str, str] = {}
        added: list[str] = []
        for raw in dict.fromkeys(labels):
            names[raw], change = _resolve_label(workspace, raw)
            added += change.added
        changes = {
            i: LabelState(names[raw], "pseudo", c, "pending")
            for i, raw, c in zip(image_ids, labels, confidences)
            if i not in kept
        }
        return _record(
            workspace, "add_pseudo", changes, author=author, source="pseudo", iteration=iteration,
            details={"model_id": model_id, "kept": kept}, vocabulary=VocabularyChange(added=tuple(added)),
        )


def _pending(workspace: Workspace, image_ids, label: str | None) -> dict[int, LabelState]:
    """Pending pseudo-labels chosen by ids and/or class; named ids must all be pending."""
    name = None if label is None else _require_vocabulary_name(workspace, label)
    if image_ids is None:
        rows = workspace.db.execute("SELECT * FROM current_labels WHERE status='pending'").fetchall()
    else:
        image_ids = _image_ids(image_ids)
        rows = workspace.query_in("SELECT * FROM current_labels WHERE status='pending' AND image_id IN ({})", image_ids)
    of_class = "" if name is None else f" of class '{name}'"
    rows = [row for row in rows if name is None or row["label"] == name]
    found = {row["image_id"] for row in rows}
    missing = [i for i in image_ids or () if i not in found]
    if missing:
        raise PipelineError(f"image {missing[0]} has no pending pseudo-label{of_class}")
    if not rows:
        raise PipelineError(f"no pending pseudo-labels{of_class}")
    return {row["image_id"]: _row_state(row) for row in rows}


def _review_pseudo(workspace, action, image_ids, label, author, session_id, accept: bool) -> LabelEvent:
    with workspace.transaction():
        pending = _pending(workspace, image_ids, label)
        changes = {i: (LabelState(s.label, s.source, s.confidence, "accepted") if accept else None) for i, s in pending.items()}
        return _record(
            workspace, action, changes, author=author, interactions=1 if image_ids is None else len(changes),
            label=label, source="pseudo", session_id=session_id,
        )


def accept_pseudo(workspace: Workspace, image_ids=None, label: str | None = None, author: str = "cli", session_id: int | None = None) -> LabelEvent:
    """Accept pending pseudo-labels: the ones named, or a whole class, or all (``image_ids=None``)."""
    return _review_pseudo(workspace, "accept_pseudo", image_ids, label, author, session_id, accept=True)


def reject_pseudo(workspace: Workspace, image_ids=None, label: str | None = None, author: str = "cli", session_id: int | None = None) -> LabelEvent:
    """Reject pending pseudo-labels (the images go back to the unlabeled pool)."""
    return _review_pseudo(workspace, "reject_pseudo", image_ids, label, author, session_id, accept=False)


# --- undo and redo -------------------------------------------------------------------------------
_LIVE = "NOT EXISTS (SELECT 1 FROM label_events u WHERE u.action='undo' AND u.reverses=e.id)"


def _last_live_event(workspace: Workspace):
    return workspace.db.execute(f"SELECT * FROM label_events e WHERE e.action != 'undo' AND {_LIVE} ORDER BY e.id DESC LIMIT 1").fetchone()


def _last_redoable_undo(workspace: Workspace):
    """The latest undo not yet redone, if no new action came after it."""
    return workspace.db.execute(
        "SELECT * FROM label_events e WHERE e.action='undo' "
        "AND e.id > COALESCE((SELECT MAX(id) FROM label_events WHERE reverses IS NULL), 0) "
        "AND NOT EXISTS (SELECT 1 FROM label_events r WHERE r.reverses=e.id) ORDER BY e.id DESC LIMIT 1"
    ).fetchone()


def _image_rows(workspace: Workspace, event_id: int):
    return workspace.db.execute("SELECT * FROM label_event_images WHERE event_id=? ORDER BY image_id", (event_id,)).fetchall()


def _matches(current: tuple[LabelState, int] | None, state: LabelState | None, origin: int | None) -> bool:
    return current is None if state is None else current == (state, origin)


def undo(workspace: Workspace, n: int = 1, author: str = "cli", session_id: int | None = None) -> list[LabelEvent]:
    """Undo the last ``n`` events still in force, newest first (one stack for the workspace).

    Each undo is a new event restoring every image's exact previous state (label, source,
    confidence, status, or no label). Undo and redo always take the newest event, so the images
    are as that event left them; should one not be, it keeps its label (``details['kept']``).
    """
    if n < 1:
        raise PipelineError(f"the number of events to undo must be at least 1, not {n}")
    done = []
    with workspace.transaction():
        for _ in range(n):
            target = _last_live_event(workspace)
            if target is None:
                break
            done.append(_undo_event(workspace, target, author, session_id))
        if not done:
            raise PipelineError("nothing to undo")
    return done


def _undo_event(workspace: Workspace, target, author: str, session_id: int | None) -> LabelEvent:
    rows = _image_rows(workspace, target["id"])
    current = _current_states(workspace, [r["image_id"] for r in rows])
    changes, origins, kept = {}, {}, []
    for row in rows:
        image_id = row["image_id"]
        origin = _origin(target["action"], target["id"], row["prev_event_id"], None)
        if _matches(current.get(image_id), _row_state(row), origin):
            changes[image_id] = _row_state(row, "prev_")
            origins[image_id] = row["prev_event_id"]
        else:
            kept.append(image_id)
    return _record(
        workspace, "undo", changes, author=author, label=target["label"], source=target["source"],
        iteration=target["iteration"], clustering_id=target["clustering_id"], cluster=target["cluster"],
        reverses=target["id"], session_id=session_id, details={"undoes": target["action"], "kept": kept},
        vocabulary=VocabularyChange.from_dict(json.loads(target["details"]).get("vocabulary")).inverse(),
        restored_origins=origins,
    )


def redo(workspace: Workspace, author: str = "cli", session_id: int | None = None) -> LabelEvent:
    """Re-apply the last undone event as a new event (same action, ``reverses`` = the undo)."""
    with workspace.transaction():
        undo_row = _last_redoable_undo(workspace)
        if undo_row is None:
            raise PipelineError("nothing to redo")
        target = workspace.db.execute("SELECT * FROM label_events WHERE id=?", (undo_row["reverses"],)).fetchone()
        rows = _image_rows(workspace, target["id"])
        current = _current_states(workspace, [r["image_id"] for r in rows])
        changes, kept = {}, []
        for row in rows:
            if _matches(current.get(row["image_id"]), _row_state(row, "prev_"), row["prev_event_id"]):
                changes[row["image_id"]] = _row_state(row)
            else:
                kept.append(row["image_id"])
        details = json.loads(target["details"])
        vocabulary_change = VocabularyChange.from_dict(details.pop("vocabulary", None))
        return _record(
            workspace, target["action"], changes, author=author, label=target["label"], source=target["source"],
            iteration=target["iteration"], clustering_id=target["clustering_id"], cluster=target["cluster"],
            reverses=undo_row["id"], session_id=session_id, details={**details, "redo_of": target["id"], "kept": kept},
            vocabulary=vocabulary_change,
        )


# --- reading -------------------------------------------------------------------------------------
LABEL_COLUMNS = ["image_id", "label", "source", "confidence", "status", "event_id"]


def _frame(rows, columns: list[str]):
    import pandas as pd

    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def current_labels(workspace: Workspace, include_pending: bool = True):
    """DataFrame of the current labels (image_id, label, source, confidence, status, event_id)."""
    where = "" if include_pending else " WHERE status='accepted'"
    rows = workspace.db.execute(f"SELECT {', '.join(LABEL_COLUMNS)} FROM current_labels{where} ORDER BY image_id")
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


def cluster_status(workspace: Workspace, clustering_id: int) -> list[dict]:
    """Per cluster of a clustering: size, members labeled (accepted), the most common label and
    its count, and the state the live events left it in (``labeled``, ``skipped`` or ``open``)."""
    db = workspace.db
    rows = db.execute(
        "SELECT m.cluster, COUNT(*) AS size, COUNT(c.image_id) AS labeled FROM cluster_members m "
        "LEFT JOIN current_labels c ON c.image_id = m.image_id AND c.status='accepted' "
        "WHERE m.clustering_id=? GROUP BY m.cluster ORDER BY m.cluster",
        (clustering_id,),
    ).fetchall()
    top = {}
    for row in db.execute(
        "SELECT m.cluster, c.label, COUNT(*) AS n FROM cluster_members m JOIN current_labels c ON c.image_id = m.image_id "
        "WHERE m.clustering_id=? AND c.status='accepted' GROUP BY m.cluster, c.label ORDER BY m.cluster, n DESC, c.label",
        (clustering_id,),
    ):
        top.setdefault(row[0], (row[1], row[2]))
    states = {}
    for row in db.execute(
        f"SELECT e.cluster, e.action FROM label_events e WHERE e.clustering_id=? "
        f"AND e.action IN ('label_cluster', 'skip') AND {_LIVE} ORDER BY e.id",
        (clustering_id,),
    ):
        states[row[0]] = "labeled" if row[1] == "label_cluster" else "skipped"
    out = []
    for row in rows:
        top_label, top_count = top.get(row["cluster"], (None, 0))
        out.append({**dict(row), "top_label": top_label, "top_count": top_count, "state": states.get(row["cluster"], "open")})
    return out


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
    """Interactions, images labeled (by actions of the session not undone), minutes, and rates."""
    db = workspace.db
    session = db.execute("SELECT * FROM labeling_sessions WHERE id=?", (session_id,)).fetchone()
    if session is None:
        raise PipelineError(f"no labeling session {session_id} in {workspace.root}")
    actions = ",".join(f"'{a}'" for a in LABELING_ACTIONS)
    images = db.execute(
        "SELECT COUNT(DISTINCT i.image_id) FROM label_event_images i JOIN label_events e ON e.id = i.event_id "
        f"WHERE e.session_id=? AND e.action IN ({actions}) AND i.label IS NOT NULL AND {_LIVE}",
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
