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

import csv
import io
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from PIL import Image, ImageOps, UnidentifiedImageError

from . import dates
from .errors import InputError, PipelineError, Problem
from .progress import Progress
from .workspace import Workspace, sha256_hex

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
THUMBNAIL_SIZE = 256
MAX_FILE_BYTES = 512 * 1024 * 1024
ATTRIBUTE_KINDS = ("numeric", "categorical")


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


@dataclass(frozen=True)
class SourceEntry:
    """One file of the image source: its path inside the folder or zip, and how to read it."""

    name: str
    read: Callable[[], bytes]


@dataclass(frozen=True)
class CheckedImage:
    """An image that decoded cleanly, staged for the store."""

    row: MetadataRow
    sha256: str
    ext: str
    width: int
    height: int
    staged_image: Path | None
    staged_thumbnail: Path | None


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
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = next(reader, [])
    columns = [c.strip() for c in header]
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        padded = values + [""] * (len(columns) - len(values))
        rows.append((reader.line_num, dict(zip(columns, (v.strip() for v in padded)))))
    if not rows:
        raise InputError([Problem(str(path), "the CSV has a header but no data rows")])
    return CsvTable(path, columns, rows)


def check_columns(table: CsvTable, mapping: ColumnMapping) -> None:
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
            hint="Name the column that holds the file names with --file COLUMN.",
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
        if errors:
            problems += [Problem(where, e) for e in errors]
            continue
        label = row.get(mapping.label, "") if mapping.label else ""
        attributes = {a: (row.get(a, "") or None) for a in mapping.attributes}
        rows.append(MetadataRow(line, file, subject, taken_at, label or None, attributes))
    return drop_duplicate_files(rows, problems, table.path.name)


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


# --- reading the images ----------------------------------------------------------------------
UNSAFE_ENTRY = re.compile(r"^(/|[A-Za-z]:)")


def list_source(images: str | os.PathLike) -> tuple[list[SourceEntry], list[Problem]]:
    """Every file of an image folder or zip, with problems for entries that must not be read."""
    source = Path(images)
    if source.is_dir():
        return list_folder(source), []
    if source.is_file() and zipfile.is_zipfile(source):
        return list_zip(source)
    if source.is_file():
        raise PipelineError(f"{source}: not a folder or a .zip of images")
    raise PipelineError(f"{source}: no such folder or zip")


def list_folder(root: Path) -> list[SourceEntry]:
    entries = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not is_hidden(relative):
            entries.append(SourceEntry(relative, path.read_bytes))
    return entries


def list_zip(path: Path) -> tuple[list[SourceEntry], list[Problem]]:
    entries, problems = [], []
    archive = zipfile.ZipFile(path)
    for info in archive.infolist():
        name = info.filename
        if UNSAFE_ENTRY.match(name) or ".." in PurePosixPath(name.replace("\\", "/")).parts:
            problems.append(Problem(f"{path.name}:{name}", "path escapes the collection (absolute or '..'); not read"))
            continue
        if info.is_dir() or is_hidden(name):
            continue
        if info.file_size > MAX_FILE_BYTES:
            problems.append(Problem(f"{path.name}:{name}", f"{info.file_size} bytes uncompressed, over the {MAX_FILE_BYTES} limit"))
            continue
        entries.append(SourceEntry(normalize_name(name), lambda info=info: archive.read(info)))
    return entries, problems


def is_hidden(relative: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(relative).parts)


def match_rows(
    rows: list[MetadataRow], entries: list[SourceEntry], listed: set[str] = frozenset()
) -> tuple[list[tuple[MetadataRow, SourceEntry]], list[Problem]]:
    """Pair rows with files (by relative path, else by unique base name); report the leftovers.

    ``listed`` holds every file name the CSV mentions, rejected rows included: such a file has
    a row (its problem is already reported), so it is not also called an image without one.
    """
    by_path = {e.name: e for e in entries}
    by_base: dict[str, list[SourceEntry]] = {}
    for entry in entries:
        by_base.setdefault(PurePosixPath(entry.name).name, []).append(entry)
    pairs, problems, used = [], [], set()
    for row in rows:
        entry = by_path.get(row.file)
        if entry is None and len(by_base.get(PurePosixPath(row.file).name, [])) == 1:
            entry = by_base[PurePosixPath(row.file).name][0]
        if entry is None:
            problems.append(Problem(f"line {row.line}", f"file '{row.file}' is not among the images"))
            continue
        used.add(entry.name)
        pairs.append((row, entry))
    for entry in entries:
        unlisted = entry.name not in listed and PurePosixPath(entry.name).name not in listed
        if entry.name not in used and unlisted and PurePosixPath(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
            problems.append(Problem(entry.name, "image has no row in the metadata CSV"))
    return pairs, problems


def check_image(row: MetadataRow, entry: SourceEntry, workspace: Workspace, staging: Path) -> CheckedImage | Problem:
    """Decode one image fully (Pillow, decompression-bomb limit on) and stage it if new."""
    try:
        data = entry.read()
    except (OSError, zipfile.BadZipFile, RuntimeError) as error:
        return Problem(entry.name, f"cannot be read ({error})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                width, height = image.size
                image_format = image.format or ""
                thumbnail = make_thumbnail(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return Problem(entry.name, f"rejected as a decompression bomb ({error})")
    except UnidentifiedImageError:
        return Problem(entry.name, "not an image (Pillow cannot identify it)")
    except (OSError, SyntaxError, ValueError) as error:
        return Problem(entry.name, f"corrupt image ({error})")
    sha = sha256_hex(data)
    ext = extension_for(entry.name, image_format)
    staged_image = staged_thumbnail = None
    if not workspace.stored_image_path(sha, ext).exists():
        staged_image = staging / f"{sha}{ext}"
        staged_image.write_bytes(data)
    if not workspace.thumbnail_path(sha).exists():
        staged_thumbnail = staging / f"{sha}.thumb.jpg"
        staged_thumbnail.write_bytes(thumbnail)
    return CheckedImage(row, sha, ext, width, height, staged_image, staged_thumbnail)


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        image = background
    image = image.convert("RGB")
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def extension_for(name: str, image_format: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return suffix
    return {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp", "GIF": ".gif"}.get(image_format, ".img")


def check_images(pairs, workspace: Workspace, staging: Path, progress: Progress | None):
    checked: list[CheckedImage] = []
    problems: list[Problem] = []
    total = len(pairs)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = pool.map(lambda pair: check_image(*pair, workspace, staging), pairs)
        for done, result in enumerate(results, 1):
            (problems if isinstance(result, Problem) else checked).append(result)
            if progress:
                progress(done, total)
    seen: dict[str, CheckedImage] = {}
    for item in checked:
        if item.sha256 in seen:
            problems.append(Problem(item.row.file, f"same content as '{seen[item.sha256].row.file}'; kept once"))
        else:
            seen[item.sha256] = item
    return list(seen.values()), problems


# --- attribute types -------------------------------------------------------------------------
def is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


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
        ids = {**new_ids, **{sha: row["id"] for sha, row in existing.items()}}
        rows = [(ids[item.sha256], item.row) for item in images]
        known_ids = [existing[item.sha256]["id"] for item in known]
        changed |= write_attributes(workspace, rows, attribute_ids, known_ids)
        if mapping.label:
            changed |= write_ground_truth(workspace, rows, known_ids)
        report.updated += len(changed.intersection(known_ids))
        report.unchanged += len(known_ids) - len(changed.intersection(known_ids))
        db.execute("DELETE FROM subjects WHERE id NOT IN (SELECT DISTINCT subject_id FROM images)")


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
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=workspace.root))
    try:
        checked, image_problems = check_images(pairs, workspace, staging, progress)
        duplicates = [p for p in image_problems if p.message.startswith("same content")]
        problems += [p for p in image_problems if p not in duplicates]
        if problems and not skip_bad:
            raise InputError(problems, hint="Fix these, or pass --skip-bad to ingest the good part and list the rest.")
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
