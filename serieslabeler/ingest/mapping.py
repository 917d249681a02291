"""Column mapping that refuses to guess: which roles a CSV's columns may take, and what looks wrong.

A role is only pre-filled when a column's name says it outright (``subject``, ``date``...) or,
for dates, when every value reads as a date; anything else stays unchosen and the person picks.
Suspicious mappings (as many subjects as images, a stage-like column kept as an attribute) are
warnings, not refusals: the person may know better.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from serieslabeler.ingest import dates
from serieslabeler.ingest.tables import (
    ROLE_NAMES,
    ROLES,
    ColumnMapping,
    CsvTable,
    is_number,
)

# Whole words of a column name that make its role clear (``Donor ID`` -> subject).
ROLE_WORDS = {
    "subject": ("subject", "donor", "individual", "specimen", "plant", "fruit", "body", "case", "animal"),
    "date": ("date", "taken", "datetime", "timestamp"),
    "time": ("time", "hour", "clock"),
    "label": ("label", "class", "stage", "truth", "phase", "ground_truth", "category"),
    "file": ("file", "filename", "image", "path", "photo"),
}

# A text column with at most this many distinct values (and fewer than a fifth of the rows) looks like a stage/class.
CLASS_LIKE_MAX_VALUES = 12
SAMPLED_VALUES = 200


@dataclass(frozen=True)
class Guess:
    """A column proposed for a role, and why (shown to the person as a guess to confirm)."""

    column: str
    reason: str


def name_words(column: str) -> set[str]:
    """A column name's lower-case words (``DonorID`` and ``donor_id`` -> donor, id)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", column)
    words = set(re.split(r"[^a-z0-9]+", spaced.lower())) - {""}
    return words | {column.strip().lower()}


def values_are_dates(table: CsvTable, column: str) -> bool:
    values = [row.get(column, "") for _, row in table.rows[:SAMPLED_VALUES]]
    order = dates.infer_order(values)
    return bool(values) and all(v and not dates.parse_date(v, order).error for v in values) and not all(is_number(v) for v in values)


def guess_roles(table: CsvTable) -> dict[str, Guess]:
    """The roles whose column is clear from its name (or, for the date, its values); each column
    is proposed for one role at most, and a role no column clearly fits is left out."""
    guesses: dict[str, Guess] = {}
    taken: set[str] = set()
    for role in ROLES:
        for column in table.columns:
            if column in taken:
                continue
            if name_words(column) & set(ROLE_WORDS[role]):
                guesses[role] = Guess(column, f"the column is named '{column}'")
                taken.add(column)
                break
    if "date" not in guesses:
        found = next((c for c in table.columns if c not in taken and values_are_dates(table, c)), None)
        if found:
            guesses["date"] = Guess(found, f"every value of '{found}' reads as a date")
    return guesses


def missing_roles(roles: dict[str, str | None]) -> list[str]:
    """Messages for the required roles (Subject, Date) not chosen yet."""
    return [f"choose the {ROLE_NAMES[role]} column" for role in ("subject", "date") if not roles.get(role)]


BOOLEAN_VALUES = {"true", "false", "yes", "no", "y", "n", "0", "1"}


def class_like(table: CsvTable, column: str, subject: str) -> bool:
    """Text with few distinct values, each shared by many rows, that changes within a subject over
    time: a stage or class, not a measurement, a yes/no flag or a per-subject group."""
    values = [(row.get(subject, ""), row.get(column, "")) for _, row in table.rows if row.get(column, "")]
    distinct = {value for _, value in values}
    if not values or all(is_number(v) for v in distinct) or {v.lower() for v in distinct} <= BOOLEAN_VALUES:
        return False
    per_subject: dict[str, set[str]] = {}
    for who, value in values:
        per_subject.setdefault(who, set()).add(value)
    changes = any(len(seen) > 1 for seen in per_subject.values())
    return changes and 1 < len(distinct) <= CLASS_LIKE_MAX_VALUES and len(distinct) * 5 <= len(values)


def mapping_warnings(table: CsvTable, mapping: ColumnMapping) -> list[str]:
    """What looks wrong in a complete mapping, in plain words (ingest still may go ahead)."""
    warnings = []
    subjects = {row.get(mapping.subject, "") for _, row in table.rows}
    if len(table.rows) > 1 and len(subjects) == len(table.rows):
        warnings.append(
            f"'{mapping.subject}' has a different value on each of the {len(table.rows)} rows, so every photo would be its "
            "own subject: choose the column that names the individual photographed over time."
        )
    for column in mapping.attributes:
        if class_like(table, column, mapping.subject):
            values = sorted({row.get(column, "") for _, row in table.rows} - {""})
            warnings.append(
                f"'{column}' looks like a stage or class ({len(values)} values: {', '.join(values[:6])}) but is kept as an "
                "attribute: if these are known labels, choose it as Ground truth."
            )
    return warnings
