"""Thumbnails: cached bytes, the excluded look, data URIs for chart tooltips."""
from __future__ import annotations

import io
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw, ImageOps

from serieslabeler.store import Workspace


# --- thumbnails ---------------------------------------------------------------------------------
@st.cache_data(max_entries=50_000, show_spinner=False)
def thumbnail_bytes(path: str) -> bytes:
    """A stored thumbnail's bytes (content-addressed, so the path is a safe cache key)."""
    return Path(path).read_bytes()


@st.cache_data(max_entries=5_000, show_spinner=False)
def excluded_thumbnail(path: str) -> bytes:
    """The thumbnail greyed out with a red frame and cross: how an excluded image looks."""
    with Image.open(path) as image:
        grey = ImageOps.grayscale(image).convert("RGB")
    faded = Image.blend(grey, Image.new("RGB", grey.size, "white"), 0.45)
    draw = ImageDraw.Draw(faded)
    width, height = faded.size
    line = max(4, width // 40)
    draw.rectangle([0, 0, width - 1, height - 1], outline=(214, 39, 40), width=line * 2)
    draw.line([(0, 0), (width, height)], fill=(214, 39, 40), width=line)
    draw.line([(0, height), (width, 0)], fill=(214, 39, 40), width=line)
    out = io.BytesIO()
    faded.save(out, "JPEG", quality=85)
    return out.getvalue()


def thumbnails(workspace: Workspace, image_ids) -> list[bytes]:
    """Thumbnail bytes for image ids, in order (read once per process, then cached)."""
    return [thumbnail_bytes(str(p)) for p in workspace.thumbnail_paths(list(image_ids))]


@st.cache_data(max_entries=20_000, show_spinner=False)
def thumbnail_uri(path: str, size: int = 96) -> str:
    """A small thumbnail as a data URI, for chart tooltips."""
    import base64

    with Image.open(path) as image:
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
