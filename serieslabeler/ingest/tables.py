"""ingest.tables"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from serieslabeler.errors import InputError, PipelineError, Problem
from serieslabeler.ingest import dates

ATTRIBUTE_KINDS = ("numeric", "categorical")
# Python's csv module stops at 131,072 characters per field; notes can be longer, but a field of
# megabytes is a broken quote swallowing the rest of the file: refused past this cap.
MAX_FIELD_CHARS = 1_000_000
ROLES = ("subject", "date", "time", "label", "file")
ROLE_NAMES = {"subject": "Subject", "date": "Date", "time": "Time", "label": "Ground truth", "file": "File name", "attribute": "an attribute"}


@dataclass(frozen=True)
class ColumnMapping:
    """Which of the user's CSV columns hold what. Nothing is assumed about their names."""

    subject: str
    date: str
    time: str | None = None
    label: str | None = None
    attributes: tuple[str, ...] = ()
    kinds: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    date_order: str | None = None

    def roles(self) -> dict[str, str | None]:
        """Role -> column, attributes included (``attribute:NAME``), for the one-column-one-role check."""
        return {**{role: getattr(self, role) for role in ROLES}, **{f"attribute:{a}": a for a in self.attributes}}

    def mapped_columns(self) -> list[str]:
        named = [self.subject, self.date, self.time, self.label, self.file, *self.attributes]
        return [c for c in named if c]


@dataclass(frozen=True)
class MetadataRow:
    """One parsed CSV row: the image file it describes and its metadata."""

    line: int
    file: str
    subject: str
    taken_at: str
    label: str | None
    attributes: dict[str, str | None]


# --- reading the CSV -------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvTable:
    """A CSV file as header + rows, each row with its line number in the file."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]


def read_csv(path: str | os.PathLike) -> CsvTable:
    """Read a metadata CSV (UTF-8, delimiter sniffed among ``,;`` and tab)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read the metadata CSV ({error.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise InputError(
            [Problem(f"{path} line {line}", f"not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start})")],
            hint="Save the CSV as UTF-8 (in Excel: 'CSV UTF-8') and try again.",
        ) from None
    if not text.strip():
        raise InputError([Problem(str(path), "the CSV is empty")])
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        columns = [c.strip() for c in next(reader, [])]
        refuse_duplicate_columns(path, columns)
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            padded = values + [""] * (len(columns) - len(values))
            rows.append((reader.line_num, dict(zip(columns, (v.strip() for v in padded)))))
    except csv.Error as error:
        raise InputError([Problem(f"{path} line {reader.line_num}", csv_problem(error))]) from None
    if not rows:
        raise InputError([Problem(str(path), "the CSV has a header but no data rows")])
    return CsvTable(path, columns, rows)


def csv_problem(error: csv.Error) -> str:
    if "field larger than field limit" in str(error):
        return f"a field longer than {MAX_FIELD_CHARS:,} characters (an unclosed quote?); not read"
    return f"not a readable CSV row ({error})"


def refuse_duplicate_columns(path: Path, columns: list[str]) -> None:
    """Two columns of one name: which one a mapping means is the user's call, never the last one's."""
    seen: dict[str, int] = {}
    problems = []
    for number, name in enumerate(columns, 1):
        if name and name in seen:
            problems.append(Problem(f"{path} line 1", f"column '{name}' appears twice (columns {seen[name]} and {number})"))
        seen.setdefault(name, number)
    if problems:
        raise InputError(problems, hint="Rename one of each pair of columns and try again.")


def check_columns(table: CsvTable, mapping: ColumnMapping) -> None:
    conflicts = role_conflicts(mapping.roles())
    if conflicts:
        raise InputError([Problem(str(table.path.name), c) for c in conflicts])
    missing = [c for c in mapping.mapped_columns() if c not in table.columns]
    if missing:
        raise InputError(
            [Problem(str(table.path), f"no column named '{c}'") for c in missing],
            hint=f"The CSV's columns are: {', '.join(table.columns)}",
        )
    for name, kind in mapping.kinds.items():
        if kind not in ATTRIBUTE_KINDS:
            raise PipelineError(f"attribute '{name}': type must be numeric or categorical, not '{kind}'")
    if mapping.date_order not in (None, *dates.ORDERS):
        raise PipelineError(f"date order must be dmy or mdy, not '{mapping.date_order}'")


def role_conflicts(roles: dict[str, str | None]) -> list[str]:
    """One message per column chosen for more than one role (``roles``: role -> column or None)."""
    by_column: dict[str, list[str]] = {}
    for role, column in roles.items():
        if column:
            by_column.setdefault(column, []).append(ROLE_NAMES.get(role.partition(":")[0], role))
    return [f"column '{column}' is chosen as both {' and '.join(names)}: one column, one role" for column, names in by_column.items() if len(names) > 1]


def guess_file_column(table: CsvTable, names: Iterable[str]) -> str:
    """The column whose values name the most image files (used when ``--file`` is not given)."""
    keys = {key for name in names for key in (name, PurePosixPath(name).name)}
    best, hits = None, 0
    for column in table.columns:
        count = sum(1 for _, row in table.rows if normalize_name(row.get(column, "")) in keys)
        if count > hits:
            best, hits = column, count
    if best is None:
        raise InputError(
            [Problem(str(table.path), "no column names the image files")],
            hint="Choose the column that holds the file names.",
        )
    return best


def parse_rows(table: CsvTable, mapping: ColumnMapping, file_column: str) -> tuple[list[MetadataRow], list[Problem]]:
    """Parse every row's mapped cells; rows with a bad cell become problems."""
    order = mapping.date_order or dates.infer_order([row.get(mapping.date, "") for _, row in table.rows])
    rows: list[MetadataRow] = []
    problems: list[Problem] = []
    for line, row in table.rows:
        where = f"{table.path.name} line {line}"
        errors = []
        file = normalize_name(row.get(file_column, ""))
        subject = row.get(mapping.subject, "")
        if not file:
            errors.append(f"column '{file_column}' (file) is empty")
        if not subject:
            errors.append(f"column '{mapping.subject}' (subject) is empty")
        parsed = dates.parse_date(row.get(mapping.date, ""), order)
        if parsed.error:
            errors.append(f"column '{mapping.date}' (date): {parsed.error}")
        taken_at = parsed.iso
        if mapping.time and taken_at and row.get(mapping.time, ""):
            time_parts, time_error = dates.parse_time(row[mapping.time])
            if time_error:
                errors.append(f"column '{mapping.time}' (time): {time_error}")
            else:
                taken_at = dates.combine(taken_at, time_parts)
        errors += forced_number_errors(row, mapping)
        if errors:
            problems += [Problem(where, e) for e in errors]
            continue
        label = row.get(mapping.label, "") if mapping.label else ""
        attributes = {a: (row.get(a, "") or None) for a in mapping.attributes}
        rows.append(MetadataRow(line, file, subject, taken_at, label or None, attributes))
    return drop_duplicate_files(rows, problems, table.path.name)


def forced_number_errors(row: dict[str, str], mapping: ColumnMapping) -> list[str]:
    """A cell of an attribute forced to ``numeric`` that is not a number (empty cells are missing values)."""
    return [
        f"column '{name}' (numeric attribute): '{row.get(name, '')}' is not a number"
        for name in mapping.attributes
        if mapping.kinds.get(name) == "numeric" and row.get(name, "") and not is_number(row[name])
    ]


def drop_duplicate_files(rows: list[MetadataRow], problems: list[Problem], csv_name: str):
    """Rows naming the same file twice are all rejected: which one is right is the user's call."""
    by_file: dict[str, list[MetadataRow]] = {}
    for row in rows:
        by_file.setdefault(row.file, []).append(row)
    kept = []
    for file, group in by_file.items():
        if len(group) == 1:
            kept.append(group[0])
            continue
        lines = ", ".join(str(r.line) for r in group)
        problems += [Problem(f"{csv_name} line {r.line}", f"'{file}' has {len(group)} rows (lines {lines})") for r in group]
    return kept, problems


def normalize_name(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


# --- attribute types -------------------------------------------------------------------------
def is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def parse_attribute_spec(text: str | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """``group,day:categorical,hour`` -> names, and the types the user fixed."""
    names, kinds = [], {}
    for part in (text or "").split(","):
        name, _, kind = part.strip().partition(":")
        if not name:
            continue
        names.append(name)
        if kind:
            kinds[name] = kind.strip().lower()
    return tuple(names), kinds
