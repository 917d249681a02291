"""Uploaded files: sanitized names, staged once under the root's ``.uploads/`` and removed when
ingested, or when abandoned for a day (each staging cleans the stale ones)."""
from __future__ import annotations

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


def stage_upload(upload) -> Path:
    """Write an uploaded file once under :func:`uploads_dir` under a sanitized name."""
    remove_abandoned_uploads()
    folder = uploads_dir() / safe_file_name(upload.file_id, "file")
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
    folder = Path(path).resolve().parent
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
