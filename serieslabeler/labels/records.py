"""labels.records"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

SOURCES = ("manual", "cluster", "pseudo", "import", "series")


class LabelState(NamedTuple):
    """An image's label as it is in ``current_labels`` (no row: no label), its four columns in
    order. A named tuple: a click makes one per image, and a frozen dataclass takes ten times as
    long to make (a twentieth of a 5,000-image click)."""

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
