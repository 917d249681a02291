"""Auditing the routed pseudo-labels: the one precision estimate that assumes nothing.

An audit draws a seeded random sample of the pending pseudo-labels, stratified by predicted
class (:func:`serieslabeler.metrics.audit.stratified_audit_sample`, 30 by default), and records
it with each image's predicted label and confidence and the number of pending labels per class
(the population the estimate is about). The expert answers each audited image: correct (the
pseudo-label is accepted) or a corrected label (the image is labeled by hand). Either way the
answer is a label event like any other, 1 interaction per image, and the image becomes a label.
The answers give the precision of everything routed with a 95% Wilson interval (stratified by
class, weighted by the population, see :func:`serieslabeler.metrics.audit.audit_precision`),
and per class when a class has at least 5 answers.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import label_images
from serieslabeler.labels.pseudo import accept_pseudo
from serieslabeler.metrics.audit import (
    audit_precision,
    stratified_audit_sample,
    threshold_for_lower_bound,
)
from serieslabeler.store.workspace import Workspace

DEFAULT_AUDIT_SIZE = 30


@dataclass
class AuditItem:
    image_id: int
    predicted: str
    confidence: float
    answer: str | None = None
    event_id: int | None = None

    @property
    def correct(self) -> bool | None:
        return None if self.answer is None else self.answer == self.predicted


@dataclass
class Audit:
    """A drawn audit (row of ``audits``) and its items."""

    id: int
    created_at: str
    author: str
    model_id: int | None
    size: int
    seed: int | None
    population: dict[str, int]
    items: list[AuditItem] = field(default_factory=list)

    @property
    def answered(self) -> list[AuditItem]:
        return [item for item in self.items if item.answer is not None]

    @property
    def unanswered_ids(self) -> list[int]:
        return [item.image_id for item in self.items if item.answer is None]

    def to_dict(self) -> dict:
        return {**asdict(self), "answered": len(self.answered), "routed": sum(self.population.values())}


def _pending_pseudo(workspace: Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """``(image_ids, labels, confidences, model_id)`` of the pending pseudo-labels (model: the newest
    that routed any of them)."""
    rows = workspace.db.execute(
        "SELECT c.image_id, c.label, c.confidence, e.details FROM current_labels c JOIN label_events e ON e.id = c.event_id "
        "WHERE c.status='pending' ORDER BY c.image_id"
    ).fetchall()
    models = [json.loads(r["details"]).get("model_id") for r in rows]
    models = [m for m in models if m is not None]
    return (
        np.array([r["image_id"] for r in rows], dtype=np.int64),
        np.array([r["label"] for r in rows], dtype=object),
        np.array([r["confidence"] for r in rows], dtype=float),
        max(models) if models else None,
    )


def draw_audit(workspace: Workspace, size: int = DEFAULT_AUDIT_SIZE, seed: int = 0, author: str = "cli") -> Audit:
    """Draw and record a class-stratified random sample of ``size`` pending pseudo-labels."""
    if size < 1:
        raise PipelineError(f"an audit needs at least 1 image, not {size}")
    ids, labels, confidences, model_id = _pending_pseudo(workspace)
    if len(ids) == 0:
        raise PipelineError("no pending pseudo-labels to audit; route a model's predictions first ('serieslabeler route ...')")
    chosen = stratified_audit_sample(labels.astype(str), size, random_state=seed)
    population = {str(k): int(v) for k, v in zip(*np.unique(labels.astype(str), return_counts=True))}
    with workspace.transaction() as db:
        audit_id = db.execute(
            "INSERT INTO audits(author, model_id, size, seed, population) VALUES (?,?,?,?,?)",
            (author, model_id, len(chosen), seed, json.dumps(population)),
        ).lastrowid
        db.executemany(
            "INSERT INTO audit_items(audit_id, image_id, predicted, confidence) VALUES (?,?,?,?)",
            [(audit_id, int(ids[i]), str(labels[i]), float(confidences[i])) for i in chosen],
        )
    return load_audit(workspace, audit_id)


def load_audit(workspace: Workspace, audit_id: int | None = None) -> Audit:
    """An audit (default: the latest)."""
    if audit_id is None:
        row = workspace.db.execute("SELECT * FROM audits ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise PipelineError(f"no audit in {workspace.root} yet; draw one with 'serieslabeler audit --workspace ... draw'")
    else:
        row = workspace.db.execute("SELECT * FROM audits WHERE id=?", (int(audit_id),)).fetchone()
        if row is None:
            raise PipelineError(f"no audit {audit_id} in {workspace.root}")
    items = [
        AuditItem(r["image_id"], r["predicted"], r["confidence"], r["answer"], r["event_id"])
        for r in workspace.db.execute("SELECT * FROM audit_items WHERE audit_id=? ORDER BY image_id", (row["id"],))
    ]
    return Audit(row["id"], row["created_at"], row["author"], row["model_id"], row["size"], row["seed"],
                 json.loads(row["population"]), items)


def answer_audit(workspace: Workspace, image_ids, correct: bool = False, label: str | None = None, author: str = "cli") -> Audit:
    """Record the expert's answer for audited images of the latest audit: ``correct`` accepts their
    pseudo-labels, ``label`` labels them by hand (1 interaction per image either way)."""
    if correct == (label is not None):
        raise PipelineError("answer an audit with either correct (the pseudo-labels are right) or a corrected label, not both")
    audit = load_audit(workspace)
    by_id = {item.image_id: item for item in audit.items}
    ids = [int(i) for i in image_ids]
    if not ids:
        raise PipelineError("name at least one audited image")
    outside = [i for i in ids if i not in by_id]
    if outside:
        raise PipelineError(f"image {outside[0]} is not in audit {audit.id} (its images: {', '.join(map(str, sorted(by_id)))})")
    done = [i for i in ids if by_id[i].answer is not None]
    if done:
        raise PipelineError(f"image {done[0]} of audit {audit.id} is answered already ({by_id[done[0]].answer})")
    with workspace.transaction() as db:
        if correct:
            event = accept_pseudo(workspace, image_ids=ids, author=author)
            answers = [(by_id[i].predicted, event.id, audit.id, i) for i in ids]
        else:
            event = label_images(workspace, ids, label, author=author)
            answers = [(event.label, event.id, audit.id, i) for i in ids]
        db.executemany("UPDATE audit_items SET answer=?, event_id=? WHERE audit_id=? AND image_id=?", answers)
    return load_audit(workspace, audit.id)


def audit_report(audit: Audit) -> dict | None:
    """Precision of the routed labels from the answers so far (None before the first answer).

    The overall estimate is stratified by predicted class and weighted by the routed counts of
    the classes answered so far (``complete`` False while some class has no answer yet).
    """
    answered = audit.answered
    if not answered:
        return None
    predicted = np.array([item.predicted for item in answered])
    answers = np.array([item.answer for item in answered])
    seen = set(predicted.tolist())
    population = {label: count for label, count in audit.population.items() if label in seen}
    result = audit_precision(predicted, answers, population_counts=population)
    return {
        "audit_id": audit.id, "model_id": audit.model_id, "drawn": len(audit.items), "answered": len(answered),
        "routed": sum(audit.population.values()), "complete": len(population) == len(audit.population), **result,
    }


def _latest_for_model(workspace: Workspace, model_id: int) -> Audit | None:
    row = workspace.db.execute(
        "SELECT a.id FROM audits a WHERE a.model_id=? AND EXISTS (SELECT 1 FROM audit_items i WHERE i.audit_id=a.id "
        "AND i.answer IS NOT NULL) ORDER BY a.id DESC LIMIT 1", (model_id,),
    ).fetchone()
    return None if row is None else load_audit(workspace, row[0])


def audit_answers_version(workspace: Workspace, model_id: int) -> int:
    """The latest label event that answered an audit of ``model_id`` (0: none): all that a model's
    threshold curves read from the label log (its out-of-fold predictions and routed pool are
    fixed when it is trained and predicts), so a page caches them on this, not on every label."""
    row = workspace.db.execute(
        "SELECT COALESCE(MAX(i.event_id), 0) FROM audits a JOIN audit_items i ON i.audit_id = a.id WHERE a.model_id = ?",
        (int(model_id),),
    ).fetchone()
    return int(row[0])


def audited_precision(workspace: Workspace, model_id: int) -> dict | None:
    """The report of the latest answered audit of ``model_id``'s routed labels (None: none)."""
    audit = _latest_for_model(workspace, model_id)
    return None if audit is None else audit_report(audit)


def audited_threshold(workspace: Workspace, model_id: int, target: float) -> dict | None:
    """The lowest confidence among the audited images of the latest answered audit such that the
    ones at or above it have a 95% lower precision bound reaching ``target`` (``threshold`` None:
    none does). Only thresholds at or above the one that routed them can be judged this way."""
    audit = _latest_for_model(workspace, model_id)
    if audit is None:
        return None
    answered = audit.answered
    confidence = np.array([item.confidence for item in answered])
    correct = np.array([item.correct for item in answered], dtype=bool)
    threshold, estimate = threshold_for_lower_bound(confidence, correct, target)
    return {**estimate, "threshold": threshold, "target": target, "audit_id": audit.id}
