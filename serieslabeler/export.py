"""Export the labels: a CSV or JSON table, or an ImageFolder tree (one folder per label).

Only accepted labels are exported unless ``include_pending`` is set (then pending pseudo-labels
come too, marked by their ``status``). A row's ``iteration`` is that of the event the label's
decision comes from (see :mod:`serieslabeler.labels.log`). Files are written to a temporary name and
renamed, and an ImageFolder tree is built in a staging folder and renamed into place, so an
interrupted export leaves nothing half-written.

CSV cells (and headers) that a spreadsheet would run as formulas are neutralised, per OWASP's CSV
injection guidance: a text cell starting with '=', '+', '-', '@', a tab or a carriage return gets
a leading single quote, so Excel, LibreOffice and Google Sheets show it as text. Only strings are
touched: a negative number stored as a number is written as digits and is no formula.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from serieslabeler.errors import PipelineError
from serieslabeler.progress import Progress
from serieslabeler.store.workspace import CATALOG, Workspace, write_atomic

FORMATS = ("csv", "json", "imagefolder")


LINK_MODES = ("copy", "hardlink", "symlink")


EXPORT_COLUMNS = ["image_id", "file_name", "subject", "date", "label", "source", "confidence", "status", "iteration"]


MANIFEST = "labels.csv"


UNSAFE = re.compile(r"[^\w.-]+")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


Cell = TypeVar("Cell")


WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


@dataclass(frozen=True)
class ExportReport:
    format: str
    path: str
    rows: int
    labels: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


# A label's iteration: the one recorded with its event (``iterate``), else the round of the loop it
# was made in, counted by the models trained before it: a person's label before the first model
# is iteration 1; a pseudo-label belongs to the iteration of the model that made it.
ITERATION_SQL = (
    "COALESCE(e.iteration, MAX(1, (SELECT COUNT(*) FROM models m WHERE m.created_at < e.at) "
    "+ CASE WHEN c.source = 'pseudo' THEN 0 ELSE 1 END))"
)


def _exported(include_pending: bool) -> str:
    return "" if include_pending else "WHERE c.status = 'accepted'"


def export_rows(workspace: Workspace, include_pending: bool = False, limit: int | None = None) -> list[dict]:
    """One dict per labeled image (columns :data:`EXPORT_COLUMNS`), by image id (the first
    ``limit`` only, for a preview)."""
    rows = workspace.db.execute(
        "SELECT c.image_id, i.file_name, s.name AS subject, i.taken_at AS date, c.label, c.source, c.confidence, "
        f"c.status, {ITERATION_SQL} AS iteration FROM current_labels c JOIN images i ON i.id = c.image_id "
        "JOIN subjects s ON s.id = i.subject_id LEFT JOIN label_events e ON e.id = c.event_id "
        f"{_exported(include_pending)} ORDER BY c.image_id LIMIT ?",
        (-1 if limit is None else int(limit),),
    )
    return [dict(row) for row in rows]


@dataclass(frozen=True)
class ExportSummary:
    """What an export would hold, counted in SQLite (a page shows it without reading every row)."""

    images: int
    subjects: int
    by_label_source: list[tuple[str, str, int]]

    @property
    def labels(self) -> int:
        return len({label for label, _, _ in self.by_label_source})


def export_summary(workspace: Workspace, include_pending: bool = False) -> ExportSummary:
    where = _exported(include_pending)
    counts = workspace.db.execute(
        f"SELECT c.label, c.source, COUNT(*) FROM current_labels c {where} GROUP BY c.label, c.source ORDER BY c.label, c.source"
    ).fetchall()
    subjects = workspace.db.execute(
        f"SELECT COUNT(DISTINCT i.subject_id) FROM current_labels c JOIN images i ON i.id = c.image_id {where}"
    ).fetchone()[0]
    return ExportSummary(sum(r[2] for r in counts), int(subjects), [(r[0], r[1], int(r[2])) for r in counts])


def export_labels(
    workspace: Workspace,
    format: str,
    out: str | os.PathLike,
    include_pending: bool = False,
    link: str = "copy",
    progress: Progress | None = None,
) -> ExportReport:
    """Write the labels to ``out`` as ``csv``, ``json`` or an ``imagefolder`` tree.

    ``link`` says how an ImageFolder holds the images: ``copy``, ``hardlink`` (same file system
    only) or ``symlink`` (to the workspace's stored copy).
    """
    if format not in FORMATS:
        raise PipelineError(f"export format must be one of {', '.join(FORMATS)}, not '{format}'")
    if link not in LINK_MODES:
        raise PipelineError(f"link must be one of {', '.join(LINK_MODES)}, not '{link}'")
    out = Path(out)
    refuse_inside_a_workspace(out)
    if format != "imagefolder" and out.is_dir():
        raise PipelineError(f"{out} is an existing folder; name a file for the {format} export (e.g. {out / ('labels.' + format)})")
    rows = export_rows(workspace, include_pending)
    if format == "csv":
        write_atomic(out, table_csv(rows).encode("utf-8"))
    elif format == "json":
        write_atomic(out, json.dumps({"include_pending": include_pending, "labels": rows}, indent=1).encode("utf-8"))
    else:
        write_imagefolder(workspace, rows, out, link, progress)
    return ExportReport(format, str(out), len(rows), dict(sorted(Counter(r["label"] for r in rows).items())))


def refuse_inside_a_workspace(out: Path) -> None:
    """An export never goes into a workspace folder (this one or another): a file name there
    could overwrite its catalog, its stored images or its features."""
    for folder in (out.resolve(), *out.resolve().parents):
        if (folder / CATALOG).is_file():
            raise PipelineError(f"{out} is inside the workspace folder {folder}; export to a path outside any workspace "
                                "(writing there could overwrite its catalog or stored images)")


def neutralise_formula(value: Cell) -> Cell:
    """``value`` with a leading quote if it is a string a spreadsheet would treat as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(row: dict) -> dict:
    """``row`` (a csv.DictWriter row) with every cell neutralised; keys are left alone."""
    return {key: neutralise_formula(value) for key, value in row.items()}


def table_csv(rows: list[dict], columns: list[str] = EXPORT_COLUMNS) -> str:
    """The rows as CSV text, every cell and header neutralised (module docstring)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([neutralise_formula(c) for c in columns])
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writerows(safe_row(row) for row in rows)
    return buffer.getvalue()


def folder_name(label: str) -> str:
    """A safe folder name for a label: letters, digits, ``_ . -`` only, never hidden or reserved."""
    name = UNSAFE.sub("_", label).strip("._-") or "label"
    return f"{name}_" if name.upper().split(".")[0] in WINDOWS_RESERVED else name


def folder_names(labels) -> dict[str, str]:
    """Distinct folder names for distinct labels (``a/b`` and ``a?b`` become ``a_b`` and ``a_b-2``)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for label in sorted(set(labels)):
        base = name = folder_name(label)
        number = 1
        while name.lower() in taken:
            number += 1
            name = f"{base}-{number}"
        taken.add(name.lower())
        out[label] = name
    return out


def write_imagefolder(workspace: Workspace, rows: list[dict], out: Path, link: str, progress: Progress | None = None) -> None:
    """``out/<label folder>/<original file name>`` for every row, plus ``labels.csv`` mapping them back."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PipelineError(f"{out} already exists and is not an empty folder; choose a new --out folder")
    folders = folder_names(r["label"] for r in rows)
    sources = workspace.image_paths([r["image_id"] for r in rows])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".staging-{out.name}-"))
    try:
        used: set[tuple[str, str]] = set()
        manifest = []
        for done, (row, source) in enumerate(zip(rows, sources), start=1):
            relative = _image_file(row, folders[row["label"]], used)
            target = staging / relative
            target.parent.mkdir(exist_ok=True)
            _place(source.resolve(), target, link)
            manifest.append({**row, "path": relative.as_posix()})
            if progress:
                progress(done, len(rows))
        (staging / MANIFEST).write_text(table_csv(manifest, EXPORT_COLUMNS + ["path"]), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _image_file(row: dict, folder: str, used: set[tuple[str, str]]) -> Path:
    """``folder/<file name>``; a name already used in that folder gets the image id added."""
    name = Path(row["file_name"]).name
    key = (folder, name.lower())
    if key in used:
        path = Path(name)
        name = f"{path.stem}-{row['image_id']}{path.suffix}"
        key = (folder, name.lower())
    used.add(key)
    return Path(folder) / name


def _place(source: Path, target: Path, link: str) -> None:
    if link == "symlink":
        target.symlink_to(source)
    elif link == "hardlink":
        try:
            os.link(source, target)
        except OSError as error:
            raise PipelineError(f"cannot hard-link {source} to {target} ({error.strerror}); use link 'copy' or 'symlink'") from None
    else:
        shutil.copy2(source, target)
