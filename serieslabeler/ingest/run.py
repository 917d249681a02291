"""Images (a folder or a .zip) plus the user's metadata CSV -> the workspace catalog.

Ingest runs in two phases so that bad input never leaves a half-written workspace:

1. *check*: read the CSV, parse every mapped cell, match rows to image files, and decode
   every image with Pillow (hash, verify, make its thumbnail into a staging folder);
2. *write*: only if nothing is bad (or ``skip_bad`` is set), move the staged files into the
   content-addressed store and write the catalog in one transaction.

Ingest is idempotent: an image whose SHA-256 is already stored adds nothing; a changed
metadata row updates that image's metadata.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from serieslabeler.errors import InputError, Problem
from serieslabeler.ingest.images import CheckedImage, check_images
from serieslabeler.ingest.sources import SourceEntry, list_source, match_rows
from serieslabeler.ingest.tables import (
    ColumnMapping,
    MetadataRow,
    check_columns,
    guess_file_column,
    is_number,
    normalize_name,
    parse_rows,
    read_csv,
)
from serieslabeler.progress import Progress
from serieslabeler.store.summary import bump_collection_version, bump_ground_truth_version, store_collection_summary
from serieslabeler.store.workspace import STAGING_PREFIX, Workspace

SKIP_HINT = "Fix these, or skip the bad rows and files (the good part is then ingested and the rest listed)."


@dataclass
class IngestReport:
    """What an ingest did: counts, and the bad input it skipped."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[Problem] = field(default_factory=list)
    images: int = 0
    subjects: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    ground_truth: int = 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["skipped"] = [{"where": p.where, "message": p.message} for p in self.skipped]
        return data


def attribute_kinds(workspace: Workspace, rows: list[MetadataRow], mapping: ColumnMapping) -> dict[str, str]:
    """Numeric when every value (and the attribute's earlier type) is numeric; the user may override."""
    existing = {r["name"]: r["kind"] for r in workspace.db.execute("SELECT name, kind FROM attributes")}
    kinds = {}
    for name in mapping.attributes:
        if name in mapping.kinds:
            kinds[name] = mapping.kinds[name]
            continue
        values = [r.attributes[name] for r in rows if r.attributes.get(name) is not None]
        numeric = existing.get(name, "numeric") == "numeric" and all(is_number(v) for v in values)
        kinds[name] = "numeric" if numeric else "categorical"
    return kinds


# --- writing ---------------------------------------------------------------------------------
def write_catalog(workspace: Workspace, images: list[CheckedImage], kinds: dict[str, str], mapping: ColumnMapping, report: IngestReport) -> None:
    """Move staged files into the store, then write the catalog in one transaction.

    Batched, so a million rows take seconds, not hours: what the catalog already holds is read
    in chunks, and new or changed images, attribute values and ground truth are written with
    ``executemany``; no statement runs per image.
    """
    for item in images:
        if item.staged_image:
            publish(item.staged_image, workspace.stored_image_path(item.sha256, item.ext))
        if item.staged_thumbnail:
            publish(item.staged_thumbnail, workspace.thumbnail_path(item.sha256))
    db = workspace.db
    with workspace.transaction():
        attribute_ids = upsert_attributes(db, kinds)
        subject_ids = upsert_subjects(db, {item.row.subject for item in images})
        existing = existing_images(workspace, [item.sha256 for item in images])
        new_ids = insert_images(workspace, [item for item in images if item.sha256 not in existing], subject_ids)
        report.added += len(new_ids)
        known = [item for item in images if item.sha256 in existing]
        changed = update_images(db, known, existing, subject_ids)
        if new_ids or changed:
            bump_collection_version(workspace)
        ids = {**new_ids, **{sha: row["id"] for sha, row in existing.items()}}
        rows = [(ids[item.sha256], item.row) for item in images]
        known_ids = [existing[item.sha256]["id"] for item in known]
        changed |= write_attributes(workspace, rows, attribute_ids, known_ids)
        if mapping.label:
            truth_changed = write_ground_truth(workspace, rows, known_ids)
            changed |= truth_changed
            if truth_changed:
                bump_ground_truth_version(workspace)
        report.updated += len(changed.intersection(known_ids))
        report.unchanged += len(known_ids) - len(changed.intersection(known_ids))
        db.execute("DELETE FROM subjects WHERE id NOT IN (SELECT DISTINCT subject_id FROM images)")
        store_collection_summary(workspace)


def publish(staged: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)


def upsert_attributes(db, kinds: dict[str, str]) -> dict[str, int]:
    for name, kind in kinds.items():
        db.execute(
            "INSERT INTO attributes(name, kind) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET kind=excluded.kind",
            (name, kind),
        )
    return {r["name"]: r["id"] for r in db.execute("SELECT id, name FROM attributes")}


def upsert_subjects(db, names: set[str]) -> dict[str, int]:
    db.executemany("INSERT OR IGNORE INTO subjects(name) VALUES (?)", [(n,) for n in sorted(names)])
    return {r["name"]: r["id"] for r in db.execute("SELECT id, name FROM subjects")}


def existing_images(workspace: Workspace, hashes: list[str]) -> dict:
    rows = workspace.query_in("SELECT id, sha256, file_name, subject_id, taken_at FROM images WHERE sha256 IN ({})", hashes)
    return {r["sha256"]: r for r in rows}


def insert_images(workspace: Workspace, images: list[CheckedImage], subject_ids: dict[str, int]) -> dict[str, int]:
    """Insert new images (one ``executemany``); their ids by SHA-256."""
    workspace.db.executemany(
        "INSERT INTO images(sha256, file_name, ext, width, height, subject_id, taken_at) VALUES (?,?,?,?,?,?,?)",
        [
            (item.sha256, item.row.file, item.ext, item.width, item.height, subject_ids[item.row.subject], item.row.taken_at)
            for item in images
        ],
    )
    return {sha: row["id"] for sha, row in existing_images(workspace, [item.sha256 for item in images]).items()}


def update_images(db, images: list[CheckedImage], existing: dict, subject_ids: dict[str, int]) -> set[int]:
    """Update the file name, subject and time of known images whose row changed; their ids."""
    updates = []
    for item in images:
        current, row = existing[item.sha256], item.row
        new = (row.file, subject_ids[row.subject], row.taken_at)
        if (current["file_name"], current["subject_id"], current["taken_at"]) != new:
            updates.append((*new, current["id"]))
    db.executemany("UPDATE images SET file_name=?, subject_id=?, taken_at=? WHERE id=?", updates)
    return {update[-1] for update in updates}


NO_VALUE = object()


def write_attributes(workspace: Workspace, rows: list[tuple[int, MetadataRow]], attribute_ids: dict[str, int], known_ids: list[int]) -> set[int]:
    """Write the attribute values that differ from the catalog's (``known_ids`` may have some);
    returns the ids of the images whose values changed."""
    old = {
        (r[0], r[1]): r[2]
        for r in workspace.query_in("SELECT image_id, attribute_id, value FROM image_attributes WHERE image_id IN ({})", known_ids)
    }
    writes = [
        (image_id, attribute_ids[name], value)
        for image_id, row in rows
        for name, value in row.attributes.items()
        if old.get((image_id, attribute_ids[name]), NO_VALUE) != value
    ]
    workspace.db.executemany("INSERT OR REPLACE INTO image_attributes(image_id, attribute_id, value) VALUES (?,?,?)", writes)
    return {write[0] for write in writes}


def write_ground_truth(workspace: Workspace, rows: list[tuple[int, MetadataRow]], known_ids: list[int]) -> set[int]:
    """Set (or clear) each image's ground-truth label where it differs; the ids that changed."""
    old = {r[0]: r[1] for r in workspace.query_in("SELECT image_id, label FROM ground_truth WHERE image_id IN ({})", known_ids)}
    changes = [(image_id, row.label) for image_id, row in rows if old.get(image_id) != row.label]
    workspace.db.executemany("DELETE FROM ground_truth WHERE image_id=?", [(i,) for i, label in changes if label is None])
    workspace.db.executemany(
        "INSERT OR REPLACE INTO ground_truth(image_id, label) VALUES (?, ?)", [(i, label) for i, label in changes if label is not None]
    )
    return {image_id for image_id, _ in changes}


# --- the whole ingest ------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestPlan:
    """What an ingest would read, found without decoding any image or writing anything: the
    parsed rows paired with their files, and every problem of the CSV and of the matching."""

    file_column: str
    rows: list[MetadataRow]
    pairs: list[tuple[MetadataRow, SourceEntry]]
    files: int
    problems: list[Problem]


def plan_ingest(images: str | os.PathLike, metadata: str | os.PathLike, mapping: ColumnMapping) -> IngestPlan:
    """Read the CSV, parse the mapped cells and match rows to files (the app's preview, and
    the first phase of :func:`ingest`)."""
    table = read_csv(metadata)
    check_columns(table, mapping)
    entries, problems = list_source(images)
    file_column = mapping.file or guess_file_column(table, [e.name for e in entries])
    rows, row_problems = parse_rows(table, mapping, file_column)
    listed = {normalize_name(row.get(file_column, "")) for _, row in table.rows}
    pairs, match_problems = match_rows(rows, entries, listed)
    return IngestPlan(file_column, rows, pairs, len(entries), problems + row_problems + match_problems)


def ingest(
    workspace: Workspace,
    images: str | os.PathLike,
    metadata: str | os.PathLike,
    mapping: ColumnMapping,
    skip_bad: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Check everything, then write the good part (all of it, or nothing unless ``skip_bad``)."""
    plan = plan_ingest(images, metadata, mapping)
    pairs, problems = plan.pairs, list(plan.problems)
    workspace.require_writable()
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=workspace.root))
    try:
        checked, image_problems = check_images(pairs, workspace, staging, progress)
        duplicates = [p for p in image_problems if p.message.startswith("same content")]
        problems += [p for p in image_problems if p not in duplicates]
        if problems and not skip_bad:
            raise InputError(problems, hint=SKIP_HINT)
        report = IngestReport(skipped=problems + duplicates)
        kinds = attribute_kinds(workspace, [c.row for c in checked], mapping)
        write_catalog(workspace, checked, kinds, mapping, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return fill_totals(workspace, report)


def fill_totals(workspace: Workspace, report: IngestReport) -> IngestReport:
    db = workspace.db
    report.images = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    report.subjects = db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
    report.attributes = {r["name"]: r["kind"] for r in db.execute("SELECT name, kind FROM attributes ORDER BY name")}
    report.ground_truth = db.execute("SELECT COUNT(*) FROM ground_truth").fetchone()[0]
    return report
