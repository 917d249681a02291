"""Reading an uploaded zip of images with bounded memory, whatever the zip claims or hides.

Listing checks every entry's *declared* name, type and sizes before anything is decompressed:
names that escape the collection, symlinks, entries too large or suspiciously compressible, an
archive too large in all or with too many entries. Reading then streams one entry at a time in
1 MiB chunks and stops as soon as more comes out than the entry declared (or than the per-entry
limit), since the declared size is only a claim. So reading costs at most about twice one
entry's limit, however many workers read in parallel each.
"""
from __future__ import annotations

import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

MiB = 1 << 20
GiB = 1 << 30
CHUNK_BYTES = MiB
RATIO_CHECKED_FROM = MiB  # small files (icons, text) can legitimately compress very well
ENCRYPTED_FLAG = 0x1
ABSOLUTE_NAME = re.compile(r"^(/|[A-Za-z]:)")  # after backslashes became slashes

EOCD_SIGNATURE = b"PK\x05\x06"
EOCD_SIZE = 22
MAX_ZIP_COMMENT = 0xFFFF
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
ZIP64_LOCATOR_SIZE = 20
ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
ZIP64_EOCD_SIZE = 56

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class ZipLimits:
    max_entry_bytes: int = 512 * MiB
    max_total_bytes: int = 8 * GiB
    max_ratio: float = 200.0
    max_entries: int = 2_000_000


@dataclass(frozen=True)
class ZipEntry:
    """A file entry that passed the checks: ``stored_name`` as in the zip, ``name`` normalised
    (forward slashes, no '.' or empty parts); sizes as declared; ``index`` in the zip's listing."""

    stored_name: str
    name: str
    size: int
    compressed_size: int
    index: int


class Problem(NamedTuple):
    where: str
    message: str


class ZipEntryRefused(ValueError):
    """An entry (or the archive) that turned out, while reading, to break a limit or be damaged."""


# --- listing -----------------------------------------------------------------------------------
def list_zip_entries(path: StrPath, limits: ZipLimits = ZipLimits()) -> tuple[list[ZipEntry], list[Problem]]:
    """The zip's file entries that may be read, and a problem for each one that may not.

    Directories are skipped. An archive with too many entries, or whose acceptable entries
    declare more than ``max_total_bytes`` in all, yields no entries, only that problem.
    Raises ``zipfile.BadZipFile`` for a file that is not a zip.
    """
    path = Path(path)
    declared = declared_entry_count(path)  # before zipfile loads the whole central directory
    if declared > limits.max_entries:
        return [], [_too_many(path, declared, limits)]
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    if len(infos) > limits.max_entries:  # the declared count was a lie
        return [], [_too_many(path, len(infos), limits)]
    entries, problems = _check_entries(path, infos, limits)
    total = sum(entry.size for entry in entries)
    if total > limits.max_total_bytes:
        message = f"{total} bytes uncompressed in all, over the {limits.max_total_bytes} limit; nothing read"
        return [], [*problems, Problem(path.name, message)]
    return entries, problems


def declared_entry_count(path: StrPath) -> int:
    """The entry count the zip's end-of-central-directory record declares (zip64 included)."""
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        tail_start = max(0, size - EOCD_SIZE - MAX_ZIP_COMMENT)
        file.seek(tail_start)
        tail = file.read()
        found = tail.rfind(EOCD_SIGNATURE)
        while found >= 0 and not _is_end_record(tail, found):
            found = tail.rfind(EOCD_SIGNATURE, 0, found)
        if found < 0:
            raise zipfile.BadZipFile(f"{Path(path).name}: not a zip file (no end-of-central-directory record)")
        (count,) = struct.unpack_from("<H", tail, found + 10)
        eocd_at = tail_start + found
        if count != 0xFFFF or eocd_at < ZIP64_LOCATOR_SIZE:
            return count
        file.seek(eocd_at - ZIP64_LOCATOR_SIZE)
        locator = file.read(ZIP64_LOCATOR_SIZE)
        if locator[:4] != ZIP64_LOCATOR_SIGNATURE:
            return count  # really 65,535 entries
        (zip64_at,) = struct.unpack_from("<Q", locator, 8)
        file.seek(zip64_at)
        record = file.read(ZIP64_EOCD_SIZE)
        if len(record) < ZIP64_EOCD_SIZE or record[:4] != ZIP64_EOCD_SIGNATURE:
            raise zipfile.BadZipFile(f"{Path(path).name}: damaged zip64 end-of-central-directory record")
        (count64,) = struct.unpack_from("<Q", record, 32)
        return count64


def _is_end_record(tail: bytes, at: int) -> bool:
    """Whether the signature at ``at`` starts a whole record whose comment fits in what follows
    (the comment itself may contain the signature)."""
    if len(tail) - at < EOCD_SIZE:
        return False
    (comment_length,) = struct.unpack_from("<H", tail, at + 20)
    return at + EOCD_SIZE + comment_length <= len(tail)


def normalised_name(stored: str) -> str:
    """``stored`` with forward slashes and without '.' or empty parts (``.\\a//b`` -> ``a/b``)."""
    return PurePosixPath(stored.replace("\\", "/")).as_posix()


def _check_entries(path: Path, infos: list[zipfile.ZipInfo], limits: ZipLimits) -> tuple[list[ZipEntry], list[Problem]]:
    entries, problems, seen = [], [], set()
    for index, info in enumerate(infos):
        where = f"{path.name}:{info.filename}"
        problem = entry_problem(info, limits)
        if problem is not None:
            problems.append(Problem(where, problem))
            continue
        if info.is_dir():
            continue
        name = normalised_name(info.filename)
        if name in seen:
            problems.append(Problem(where, f"a second entry named '{name}'; only the first is read"))
            continue
        seen.add(name)
        entries.append(ZipEntry(info.filename, name, info.file_size, info.compress_size, index))
    return entries, problems


def entry_problem(info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    """Why the entry must not be read, from what it declares; None if it may be."""
    slashed = info.filename.replace("\\", "/")
    if ABSOLUTE_NAME.match(slashed):
        return "absolute path; it would escape the collection, not read"
    if ".." in PurePosixPath(slashed).parts:
        return "path with '..'; it would escape the collection, not read"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link, not a file; not read"
    if info.flag_bits & ENCRYPTED_FLAG:
        return "encrypted; not read"
    if info.file_size > limits.max_entry_bytes:
        return f"{info.file_size} bytes uncompressed, over the {limits.max_entry_bytes} limit; not read"
    if info.file_size > RATIO_CHECKED_FROM and info.file_size > limits.max_ratio * info.compress_size:
        ratio = info.file_size / max(info.compress_size, 1)
        return f"compressed {ratio:.0f} to 1, over the {limits.max_ratio:g} to 1 limit (a zip bomb?); not read"
    return None


def _too_many(path: Path, count: int, limits: ZipLimits) -> Problem:
    return Problem(path.name, f"{count} entries, over the {limits.max_entries} limit; nothing read")


# --- reading -----------------------------------------------------------------------------------
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError)


def read_zip_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits = ZipLimits()) -> bytes:
    """The entry's bytes, read in 1 MiB chunks; :class:`ZipEntryRefused` as soon as more than
    ``min(declared size, max_entry_bytes)`` come out, or if the entry is damaged."""
    cap = min(info.file_size, limits.max_entry_bytes)
    chunks, taken = [], 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(min(CHUNK_BYTES, cap + 1 - taken)):
                taken += len(chunk)
                if taken > cap:
                    raise ZipEntryRefused(f"{info.filename}: more than {cap} bytes come out of it; not read")
                chunks.append(chunk)
    except READ_ERRORS as error:
        raise ZipEntryRefused(f"{info.filename}: cannot be read ({error})") from error
    return b"".join(chunks)


def iter_zip_entries(
    path: StrPath, entries: list[ZipEntry], limits: ZipLimits = ZipLimits()
) -> Iterator[tuple[ZipEntry, bytes]]:
    """``(entry, bytes)`` for each of ``entries`` (from :func:`list_zip_entries`), one at a time.

    Raises :class:`ZipEntryRefused` before reading an entry that would take the bytes read so
    far over ``max_total_bytes``, or for an entry that cannot be read (which ends the iteration;
    to skip bad entries instead, call :func:`read_zip_entry` per entry).
    """
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        total = 0
        for entry in entries:
            info = _listed_info(infos, entry)
            if total + entry.size > limits.max_total_bytes:
                raise ZipEntryRefused(
                    f"{entry.stored_name}: would take the archive over {limits.max_total_bytes} bytes read; stopped"
                )
            data = read_zip_entry(archive, info, limits)
            total += len(data)
            yield entry, data
            del data  # so the generator does not hold this entry while the next one is read


def _listed_info(infos: list[zipfile.ZipInfo], entry: ZipEntry) -> zipfile.ZipInfo:
    """The entry's ZipInfo, checking the zip still says what it said when it was listed."""
    info = infos[entry.index] if entry.index < len(infos) else None
    if info is None or info.filename != entry.stored_name or info.file_size != entry.size:
        raise ZipEntryRefused(f"{entry.stored_name}: the zip changed since it was listed; list it again")
    return info
