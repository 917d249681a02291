"""labels.vocabulary_events"""
from __future__ import annotations

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import _record
from serieslabeler.labels.records import LabelEvent, LabelState
from serieslabeler.labels.vocabulary import (
    DEFAULT_VOCABULARY,
    VocabularyChange,
    _vocabulary_name,
    clean_label,
    vocabulary,
)
from serieslabeler.store.workspace import Workspace


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
