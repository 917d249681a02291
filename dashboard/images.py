"""Thumbnails and originals: stored bytes, the excluded look, brightness/contrast/gamma and zoom
(applied here, on the server, with PIL, and cached), data URIs for chart tooltips."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from serieslabeler.store import Workspace


# --- thumbnails ---------------------------------------------------------------------------------
def thumbnail_bytes(path: str) -> bytes:
    """A stored thumbnail's bytes, read each time: a small file from the OS's cache reads in
    about 20 microseconds, a tenth of a Streamlit cache lookup (a page shows 100 of them)."""
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
    return jpeg(faded, quality=85)


def thumbnails(workspace: Workspace, image_ids) -> list[bytes]:
    """Thumbnail bytes for image ids, in order."""
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


# --- display adjustments and zoom ---------------------------------------------------------------
@dataclass(frozen=True)
class Display:
    """How photos are shown (not stored): brightness and contrast factors (1 = as taken) and a
    gamma (below 1 lifts dark tones, for photos taken in poor light)."""

    brightness: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0

    @property
    def neutral(self) -> bool:
        return self == Display()


def adjusted(image: Image.Image, display: Display) -> Image.Image:
    """``image`` with ``display`` applied (RGB)."""
    image = image.convert("RGB")
    if display.gamma != 1.0:
        table = [round(255 * (i / 255) ** display.gamma) for i in range(256)]
        image = image.point(table * 3)
    if display.brightness != 1.0:
        image = ImageEnhance.Brightness(image).enhance(display.brightness)
    if display.contrast != 1.0:
        image = ImageEnhance.Contrast(image).enhance(display.contrast)
    return image


def jpeg(image: Image.Image, quality: int = 88) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def show_thumbnail(picture: bytes, caption: str | None = None) -> None:
    """Draw thumbnail bytes (always JPEG: stored, greyed out or adjusted) filling their cell. Naming
    the format spares Streamlit decoding each one to find it out (a grid draws 100 or 200)."""
    st.image(picture, caption=caption, output_format="JPEG", width="stretch")


def shown_thumbnail(path: str, display: Display = Display()) -> bytes:
    """A thumbnail as the page shows it: the stored bytes, or with the display adjustments applied."""
    return thumbnail_bytes(path) if display.neutral else adjusted_thumbnail(path, display)


@st.cache_data(max_entries=20_000, show_spinner=False)
def adjusted_thumbnail(path: str, display: Display) -> bytes:
    """A thumbnail with brightness, contrast and gamma applied (content-addressed paths, so the
    path and the display are a safe cache key)."""
    with Image.open(path) as image:
        return jpeg(adjusted(image, display))


@st.cache_data(max_entries=64, show_spinner="Opening the original...")
def zoomed_original(path: str, zoom: float = 1.0, centre: tuple[float, float] = (0.5, 0.5), display: Display = Display()) -> bytes:
    """The stored original at full resolution: at zoom 1 the whole photo; at zoom z the part 1/z
    of its width and height around ``centre`` (fractions of width and height), enlarged back to
    the original's size."""
    with Image.open(path) as image:
        image.load()
        width, height = image.size
        zoom = max(1.0, float(zoom))
        box_w, box_h = width / zoom, height / zoom
        left = min(max(centre[0] * width - box_w / 2, 0), width - box_w)
        top = min(max(centre[1] * height - box_h / 2, 0), height - box_h)
        part = image.crop((round(left), round(top), round(left + box_w), round(top + box_h)))
        if zoom > 1.0:
            part = part.resize((width, height), Image.Resampling.LANCZOS)
        return jpeg(adjusted(part, display), quality=92)
