"""The image viewer and the display setting: a photo's stored original at full resolution, zoom
and pan, previous/next within the images of the page, its metadata; brightness, contrast and
gamma for every photo of the page.

The display setting is the expert's own: it is kept in the workspace (``meta`` key
``display:<author>``), so it follows the person across pages, reloads and browsers. The photo
open in the viewer is in the address (``view=<image id>``), so a reload keeps it open.
"""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st
from serieslabeler_app.access import author
from serieslabeler_app.images import Display, zoomed_original
from serieslabeler_app.widgets import plain

from serieslabeler import views as catalog
from serieslabeler.store import Workspace

VIEW_PARAM = "view"
DISPLAY_FIELDS = (
    ("brightness", "Brightness", 0.2, 4.0, "1 = as taken; above 1 lightens every photo of the page."),
    ("contrast", "Contrast", 0.2, 3.0, "1 = as taken."),
    ("gamma", "Gamma", 0.2, 2.5, "Below 1 lifts the dark tones (photos taken in poor light); 1 = as taken."),
)


# --- the display setting, per person -------------------------------------------------------------
def display_key(who: str) -> str:
    return f"display:{who}"


def stored_display(workspace: Workspace, who: str) -> Display:
    text = workspace.get_meta(display_key(who))
    values = json.loads(text) if text else {}
    return Display(**{name: float(values[name]) for name, *_ in DISPLAY_FIELDS if name in values})


def _save_display(root: str, who: str) -> None:
    values = {name: float(st.session_state[f"display_{name}"]) for name, *_ in DISPLAY_FIELDS}
    with Workspace.open(root) as workspace:
        workspace.set_meta(display_key(who), json.dumps(values))


def display_controls(workspace: Workspace) -> Display:
    """Brightness, contrast and gamma for every photo of the page, kept for this person."""
    who = author()
    stored = stored_display(workspace, who)
    with st.popover("Display", icon=":material/tune:", help="Brightness, contrast and gamma of the photos on this page (kept for you)."):
        for name, label, low, high, help_text in DISPLAY_FIELDS:
            key = f"display_{name}"
            if key not in st.session_state:
                st.session_state[key] = getattr(stored, name)
            st.slider(label, low, high, step=0.05, key=key, help=help_text, on_change=_save_display, args=(str(workspace.root), who))
        st.button("As taken", key="display_reset", on_click=_reset_display, args=(str(workspace.root), who))
    return Display(**{name: float(st.session_state[f"display_{name}"]) for name, *_ in DISPLAY_FIELDS})


def _reset_display(root: str, who: str) -> None:
    for name, *_ in DISPLAY_FIELDS:
        st.session_state[f"display_{name}"] = 1.0
    _save_display(root, who)


# --- the viewer ------------------------------------------------------------------------------
def open_in_viewer(image_id: int) -> None:
    st.query_params[VIEW_PARAM] = str(image_id)


def close_viewer() -> None:
    if VIEW_PARAM in st.query_params:
        del st.query_params[VIEW_PARAM]


def view_button(image_id: int) -> None:
    """The button under a thumbnail that opens its original in the viewer."""
    st.button("View", key=f"view_{image_id}", icon=":material/zoom_in:", type="tertiary", on_click=open_in_viewer, args=(int(image_id),), help="See the original at full resolution.")


def viewed_image(image_ids) -> int | None:
    """The image open in the viewer, when it is one of ``image_ids``."""
    value = st.query_params.get(VIEW_PARAM, "")
    return int(value) if value.isdigit() and int(value) in {int(i) for i in image_ids} else None


def image_viewer(workspace: Workspace, image_ids, display: Display, what: str = "images") -> None:
    """The photo open in the viewer (if any) at full resolution, with zoom, pan, previous/next
    among ``image_ids`` (in the page's order) and its metadata."""
    ids = [int(i) for i in image_ids]
    current = viewed_image(ids)
    if current is None:
        return
    position = ids.index(current)
    with st.container(border=True, key="viewer"):
        top = st.container(horizontal=True, vertical_alignment="center")
        top.markdown(f"**Photo {position + 1} of {len(ids)}** {plain(what)}")
        top.button("Previous", key="viewer_previous", icon=":material/arrow_back:", disabled=position == 0, on_click=open_in_viewer, args=(ids[max(position - 1, 0)],))
        top.button("Next", key="viewer_next", icon=":material/arrow_forward:", disabled=position == len(ids) - 1, on_click=open_in_viewer, args=(ids[min(position + 1, len(ids) - 1)],))
        top.button("Close", key="viewer_close", icon=":material/close:", on_click=close_viewer)
        picture, side = st.columns([3, 1])
        with side:
            zoom = st.slider("Zoom", 1.0, 8.0, 1.0, 0.5, key="viewer_zoom", help="1 = the whole photo; more enlarges a part of it.")
            across = st.slider("Pan across", 0, 100, 50, key="viewer_x", disabled=zoom == 1.0, help="Which part is shown, left (0) to right (100).")
            down = st.slider("Pan down", 0, 100, 50, key="viewer_y", disabled=zoom == 1.0, help="Top (0) to bottom (100).")
            record = catalog.image_record(workspace, current)
            st.dataframe(pd.DataFrame({"": list(record), "value": [str(v) for v in record.values()]}), hide_index=True, width="stretch")
        path = workspace.image_path(current)
        picture.image(zoomed_original(str(path), zoom, (across / 100, down / 100), display), caption=plain(record["file"]), width="content")
