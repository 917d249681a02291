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
    vocabulary_order,
)
from serieslabeler.store.summary import label_counts
from serieslabeler.store.workspace import Workspace


def add_labels(workspace: Workspace, names, author: str = "cli", ordered: bool = False) -> LabelEvent | None:
    """Add names to the vocabulary (an event); None when nothing changes.

    ``ordered=True`` also declares ``names`` the stages in that order, first to last (names
    already in the vocabulary keep their spelling; the event is ``vocab_order`` when none is new).
    """
    names = [clean_label(n) for n in names]
    with workspace.transaction():
        new = tuple(dict.fromkeys(n for n in names if _vocabulary_name(workspace, n) is None))
        order = _declared_order(workspace, names) if ordered else None
        if order is not None and not new and list(order[1]) == vocabulary_order(workspace):
            return None
        if not new and order is None:
            return None
        action = "vocab_add" if new else "vocab_order"
        label = new[0] if len(new) == 1 else None
        return _record(workspace, action, {}, author=author, label=label, vocabulary=VocabularyChange(added=new, order=order))


def declare_unordered(workspace: Workspace, author: str = "cli") -> LabelEvent | None:
    """Drop the stage order (an event); None when the vocabulary was not ordered."""
    with workspace.transaction():
        if vocabulary_order(workspace) is None:
            return None
        return _record(workspace, "vocab_order", {}, author=author, vocabulary=VocabularyChange(order=(None, None)))


def _declared_order(workspace: Workspace, names: list[str]) -> tuple[None, tuple[str, ...]]:
    """``names`` as an order (vocabulary spellings); refuses repeats and fewer than two stages."""
    spelled = [_vocabulary_name(workspace, n) or n for n in names]
    folded = [n.casefold() for n in spelled]
    repeated = next((n for i, n in enumerate(spelled) if folded[i] in folded[:i]), None)
    if repeated is not None:
        raise PipelineError(f"stage '{repeated}' appears twice in the order; name each stage once, first to last")
    if len(spelled) < 2:
        raise PipelineError("an ordered vocabulary needs at least two stages (e.g. U,R,V,O)")
    return None, tuple(spelled)


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


def remove_labels(workspace: Workspace, names, author: str = "cli") -> LabelEvent:
    """Remove labels no image has from the vocabulary (and from the stage order); undo puts them
    back. A class the collection does not hold would otherwise keep the threshold suggestion off
    (:func:`serieslabeler.loop.threshold.classes_without_labels`)."""
    with workspace.transaction():
        spelled = list(dict.fromkeys(_require_vocabulary_name(workspace, n) for n in names))
        if not spelled:
            raise PipelineError("name the labels to remove from the vocabulary")
        counts = label_counts(workspace)["labels"]
        used = [(name, counts[name]) for name in spelled if counts.get(name)]
        if used:
            name, count = used[0]
            raise PipelineError(f"label '{name}' is the label of {count} image(s); merge it into another label "
                                "(vocab --merge) or unlabel them before removing it")
        return _record(
            workspace, "vocab_remove", {}, author=author, label=spelled[0] if len(spelled) == 1 else None,
            details={"removed": spelled}, vocabulary=VocabularyChange(removed=tuple(spelled)),
        )
