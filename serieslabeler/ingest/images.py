"""ingest.images"""
from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, UnidentifiedImageError

from serieslabeler.errors import Problem
from serieslabeler.ingest.archive import ZipEntryRefused
from serieslabeler.ingest.sources import IMAGE_EXTENSIONS, SourceEntry
from serieslabeler.ingest.tables import MetadataRow
from serieslabeler.progress import Progress
from serieslabeler.store.workspace import Workspace, sha256_hex

THUMBNAIL_SIZE = 256
# Bytes of source files held at once by all the decoding threads together (one larger file is
# read alone): memory stays bounded however many cores decode.
MAX_BYTES_IN_FLIGHT = 1 << 30


class ByteBudget:
    """Lets threads hold at most ``limit`` bytes at once; a request over the limit waits until it
    is alone."""

    def __init__(self, limit: int = MAX_BYTES_IN_FLIGHT):
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, size: int):
        with self._changed:
            self._changed.wait_for(lambda: self.used == 0 or self.used + size <= self.limit)
            self.used += size
        try:
            yield
        finally:
            with self._changed:
                self.used -= size
                self._changed.notify_all()


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


def check_image(row: MetadataRow, entry: SourceEntry, workspace: Workspace, staging: Path, budget: ByteBudget | None = None) -> CheckedImage | Problem:
    """Decode one image fully (Pillow, decompression-bomb limit on) and stage it if new, within
    ``budget`` (the bytes all threads may hold at once)."""
    with (budget or ByteBudget()).reserve(entry.size):
        return _check_image(row, entry, workspace, staging)


def _check_image(row: MetadataRow, entry: SourceEntry, workspace: Workspace, staging: Path) -> CheckedImage | Problem:
    try:
        data = entry.read()
    except (OSError, zipfile.BadZipFile, RuntimeError, ZipEntryRefused) as error:
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
        return Problem(entry.name, "not an image, or an image format that cannot be read")
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
    budget = ByteBudget()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = pool.map(lambda pair: check_image(*pair, workspace, staging, budget), pairs)
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
