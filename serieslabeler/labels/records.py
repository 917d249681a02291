"""labels.records"""
from __future__ import annotations

from dataclasses import asdict, dataclass

SOURCES = ("manual", "cluster", "pseudo", "import", "series")


@dataclass(frozen=True, slots=True)
class LabelState:
    """An image's label as it is in ``current_labels`` (no row: no label); slots: a click makes
    one per image."""

    label: str
    source: str
    confidence: float
    status: str = "accepted"


@dataclass(frozen=True)
class LabelEvent:
    """One row of the log (``labeled``: the images it gave a label), and how many images it changed."""

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
    labeled: int
    details: dict
    changed: int

    def to_dict(self) -> dict:
        return asdict(self)
