"""Uploaded files: sanitized names, staged once in a private temporary folder."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

# --- uploads ------------------------------------------------------------------------------------
SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str, fallback: str = "upload") -> str:
    """A file name reduced to letters, digits, ``._-`` with no folder part and no leading dot."""
    base = SAFE_CHARS.sub("_", Path(name.replace("\\", "/")).name).lstrip("._")
    return base[:120] or fallback


def stage_upload(upload, folder: Path | None = None) -> Path:
    """Write an uploaded file once to a private temporary folder (or ``folder``) under a sanitized name."""
    folder = folder or Path(tempfile.gettempdir()) / "labeler-uploads" / safe_file_name(upload.file_id, "file")
    path = folder / safe_file_name(upload.name)
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(upload.getbuffer())
        os.replace(tmp, path)
    return path


def stage_image_uploads(uploads) -> Path | None:
    """Uploaded images as one source: a single .zip as it is, many photos staged into one folder
    (named by their upload ids, so the same selection is written once). None when nothing is uploaded."""
    if not uploads:
        return None
    if len(uploads) == 1 and uploads[0].name.lower().endswith(".zip"):
        return stage_upload(uploads[0])
    digest = hashlib.sha256("\n".join(sorted(u.file_id for u in uploads)).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "labeler-uploads" / f"photos-{digest}"
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
