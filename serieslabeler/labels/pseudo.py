"""labels.pseudo"""
from __future__ import annotations

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import (
    _check_confidence,
    _current_states,
    _image_ids,
    _record,
    _require_images,
    _state,
)
from serieslabeler.labels.records import LabelEvent, LabelState
from serieslabeler.labels.vocabulary import VocabularyChange, _resolve_label
from serieslabeler.labels.vocabulary_events import _require_vocabulary_name
from serieslabeler.store.workspace import Workspace


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
    return {row["image_id"]: _state(row["label"], row["source"], row["confidence"], row["status"]) for row in rows}


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
