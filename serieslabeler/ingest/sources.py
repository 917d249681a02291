"""ingest.sources"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from serieslabeler.errors import PipelineError, Problem
from serieslabeler.ingest.archive import ZipLimits, list_zip_entries, read_zip_entry
from serieslabeler.ingest.tables import MetadataRow, normalize_name

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


@dataclass(frozen=True)
class SourceEntry:
    """One file of the image source: its path inside the folder or zip, and how to read it."""

    name: str
    read: Callable[[], bytes]
    size: int = 0


# --- reading the images ----------------------------------------------------------------------
def list_source(images: str | os.PathLike, limits: ZipLimits = ZipLimits()) -> tuple[list[SourceEntry], list[Problem]]:
    """Every file of an image folder or zip, with problems for entries that must not be read."""
    source = Path(images)
    if source.is_dir():
        return list_folder(source)
    if source.is_file() and zipfile.is_zipfile(source):
        return list_zip(source, limits)
    if source.is_file():
        raise PipelineError(f"{source}: not a folder or a .zip of images")
    raise PipelineError(f"{source}: no such folder or zip")


def list_folder(root: Path) -> tuple[list[SourceEntry], list[Problem]]:
    """The folder's files; a symlink resolving outside the folder is refused, not followed."""
    base = root.resolve()
    entries, problems = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if is_hidden(relative) or not path.is_file():
            continue
        if not path.resolve().is_relative_to(base):
            problems.append(Problem(relative, "a symbolic link to a file outside the image folder; not read"))
            continue
        entries.append(SourceEntry(relative, path.read_bytes, path.stat().st_size))
    return entries, problems


def list_zip(path: Path, limits: ZipLimits = ZipLimits()) -> tuple[list[SourceEntry], list[Problem]]:
    """The zip's entries (:mod:`serieslabeler.ingest.archive`: names, sizes, total and ratio checked
    before anything is decompressed); each is streamed with its declared size as the cap."""
    listed, refused = list_zip_entries(path, limits)
    problems = [Problem(where, message) for where, message in refused]
    archive = zipfile.ZipFile(path)
    infos = archive.infolist()
    entries = [
        SourceEntry(normalize_name(entry.name), lambda info=infos[entry.index]: read_zip_entry(archive, info, limits), entry.size)
        for entry in listed
        if not is_hidden(entry.name)
    ]
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
