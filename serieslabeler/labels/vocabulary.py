"""labels.vocabulary"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from serieslabeler.errors import PipelineError
from serieslabeler.labels.records import LabelState
from serieslabeler.store.workspace import Workspace

DEFAULT_VOCABULARY = ["Arm", "Hand", "Foot", "Legs", "Full Body", "Head", "Backside", "Torso", "Stake", "Plastic"]


MAX_LABEL_LENGTH = 100


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
