"""Uploaded files: sanitized names, staged once under the root's ``.uploads/`` and removed when
ingested, or when abandoned for a day (each staging cleans the stale ones)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from serieslabeler_app.navigation import workspace_root

# --- uploads ------------------------------------------------------------------------------------
SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
UPLOADS_DIR = ".uploads"
ABANDONED_AFTER_S = 24 * 3600


def safe_file_name(name: str, fallback: str = "upload") -> str:
    """A file name reduced to letters, digits, ``._-`` with no folder part and no leading dot."""
    base = SAFE_CHARS.sub("_", Path(name.replace("\\", "/")).name).lstrip("._")
    return base[:120] or fallback


def uploads_dir() -> Path:
    """Where uploads wait to be ingested: inside the root, never the shared ``/tmp``."""
    return workspace_root() / UPLOADS_DIR


def stage_upload(upload, folder: Path | None = None) -> Path:
    """Write an uploaded file once under :func:`uploads_dir` (or ``folder``) under a sanitized name."""
    remove_abandoned_uploads()
    folder = folder or uploads_dir() / safe_file_name(upload.file_id, "file")
    path = folder / safe_file_name(upload.name)
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(upload.getbuffer())
        os.replace(tmp, path)
    return path


def discard_upload(path: Path) -> None:
    """Remove a staged upload (its folder) once it has been ingested; other paths are left alone."""
    target = Path(path).resolve()
    folder = target if target.is_dir() else target.parent
    if folder.parent == uploads_dir().resolve():
        shutil.rmtree(folder, ignore_errors=True)


def remove_abandoned_uploads(now: float | None = None) -> list[Path]:
    """Remove staged uploads untouched for :data:`ABANDONED_AFTER_S`; returns what was removed."""
    base = uploads_dir()
    if not base.is_dir():
        return []
    limit = (time.time() if now is None else now) - ABANDONED_AFTER_S
    stale = [folder for folder in base.iterdir() if folder.is_dir() and folder.stat().st_mtime < limit]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale
def stage_image_uploads(uploads) -> Path | None:
    """Uploaded images as one source: a single .zip as it is, many photos staged into one folder
    (named by their upload ids, so the same selection is written once). None when nothing is uploaded."""
    if not uploads:
        return None
    if len(uploads) == 1 and uploads[0].name.lower().endswith(".zip"):
        return stage_upload(uploads[0])
    digest = hashlib.sha256("\n".join(sorted(u.file_id for u in uploads)).encode()).hexdigest()[:24]
    folder = uploads_dir() / f"photos-{digest}"
    for upload in uploads:
        stage_upload(upload, folder)
    return folder


def collection_folder(root: Path, name: str) -> Path:
    """Where a new collection called ``name`` goes: a sanitized folder name under ``root``.

    Raises ValueError with a plain message for a name with nothing usable in it."""
    folder_name = SAFE_CHARS.sub("-", name).strip("-._")[:80]
    if not folder_name:
        raise ValueError("Give the collection a name (letters, digits, - or _).")
    return root / folder_name
