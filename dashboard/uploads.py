"""Uploaded files: sanitized names, staged once in a private temporary folder."""
from __future__ import annotations

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


def stage_upload(upload) -> Path:
    """Write an uploaded file once to a private temporary folder under a sanitized name."""
    folder = Path(tempfile.gettempdir()) / "labeler-uploads" / safe_file_name(upload.file_id, "file")
    path = folder / safe_file_name(upload.name)
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(upload.getbuffer())
        os.replace(tmp, path)
    return path
