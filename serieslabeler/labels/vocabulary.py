"""labels.vocabulary: label names, and their order when the labels are stages.

An ordered vocabulary (``U < R < V < O``, ``fresh < early < advanced < skeletonized``) is stored
as the catalog setting ``vocabulary_order`` (a JSON list; absent: unordered) and changed only by
vocabulary events, whose :class:`VocabularyChange` carries the order before and after: undo
restores the previous order, redo the new one. Renaming a label renames it inside the order;
merging labels drops the merged names from it (and undoing the merge puts them back in place).
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

from serieslabeler.errors import PipelineError
from serieslabeler.labels.records import LabelState
from serieslabeler.store.workspace import Workspace

DEFAULT_VOCABULARY = ["Arm", "Hand", "Foot", "Legs", "Full Body", "Head", "Backside", "Torso", "Stake", "Plastic"]


MAX_LABEL_LENGTH = 100


ORDER_KEY = "vocabulary_order"

Order = tuple[str, ...] | None


@dataclass(frozen=True)
class VocabularyChange:
    """Names an event adds to, removes from, or renames in the vocabulary; ``order`` is
    ``(before, after)`` when it changes the stage order (None: the order is not touched)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    order: tuple[Order, Order] | None = None

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.renamed or self.order)

    def inverse(self) -> "VocabularyChange":
        order = None if self.order is None else (self.order[1], self.order[0])
        return VocabularyChange(self.removed, self.added, tuple((new, old) for old, new in self.renamed), order)

    def to_dict(self) -> dict:
        data = {"added": list(self.added), "removed": list(self.removed), "renamed": [list(p) for p in self.renamed]}
        if self.order is not None:
            data["order"] = {"before": _order_list(self.order[0]), "after": _order_list(self.order[1])}
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> "VocabularyChange":
        data = data or {}
        order = data.get("order")
        return cls(
            tuple(data.get("added", ())), tuple(data.get("removed", ())), tuple(tuple(p) for p in data.get("renamed", ())),
            None if order is None else (_order_tuple(order["before"]), _order_tuple(order["after"])),
        )


def _order_list(order: Order) -> list[str] | None:
    return None if order is None else list(order)


def _order_tuple(order) -> Order:
    return None if order is None else tuple(order)


# --- vocabulary ----------------------------------------------------------------------------------
def vocabulary(workspace: Workspace) -> list[str]:
    """The workspace's label names in the order they were added."""
    return [row[0] for row in workspace.db.execute("SELECT name FROM vocabulary ORDER BY rowid")]


def vocabulary_order(workspace: Workspace) -> list[str] | None:
    """The stages in order (first to last) when the vocabulary is ordered, else None."""
    stored = workspace.get_meta(ORDER_KEY)
    return None if stored is None else list(json.loads(stored))


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
    """A label as the vocabulary spells it; a new name is added by the event that uses it,
    except to an ordered vocabulary, where a new name is more likely a mistyped stage than a
    new class: it must be added first (as a stage, or as a label outside the order)."""
    name = clean_label(name)
    known = _vocabulary_name(workspace, name)
    if known:
        return known, VocabularyChange()
    order = vocabulary_order(workspace)
    if order is not None:
        raise PipelineError(f"'{name}' is not in the vocabulary, whose stages are ordered ({' < '.join(order)}); "
                            f"add it first (serieslabeler vocab --add '{name}', or --ordered with every stage) if it is meant")
    return name, VocabularyChange(added=(name,))


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
    return VocabularyChange(added, removed, tuple(renamed), _effective_order(workspace, planned.order, removed))


def _effective_order(workspace: Workspace, planned: tuple[Order, Order] | None, removed: tuple[str, ...]) -> tuple[Order, Order] | None:
    """The order change an event makes: the planned one, or the current order minus removed names."""
    current = vocabulary_order(workspace)
    current = None if current is None else tuple(current)
    if planned is not None:
        return None if planned[1] == current else (current, planned[1])
    if current is not None and set(removed) & set(current):
        return current, tuple(n for n in current if n not in removed) or None
    return None


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
    if change.order is not None:
        _store_order(workspace, change.order[1])
    elif change.renamed and (order := vocabulary_order(workspace)) is not None:
        names = dict(change.renamed)
        _store_order(workspace, tuple(names.get(n, n) for n in order))


def _store_order(workspace: Workspace, order: Order) -> None:
    if order is None:
        workspace.db.execute("DELETE FROM meta WHERE key=?", (ORDER_KEY,))
    else:
        workspace.set_meta(ORDER_KEY, json.dumps(list(order)))
