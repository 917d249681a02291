"""Export: the labels as CSV, JSON or an ImageFolder tree (one folder per label)."""
from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler.export import EXPORT_COLUMNS, LINK_MODES, export_labels, export_rows, export_summary
from serieslabeler.loop import last_event_id
from serieslabeler.progress import human_size
from serieslabeler.store import Workspace

FORMATS = {"csv": "CSV table", "json": "JSON", "imagefolder": "ImageFolder (one folder per label)"}
MIME = {"csv": "text/csv", "json": "application/json", "imagefolder": "application/zip"}
PREVIEW_ROWS = 200
SIZED_ROWS = 20_000  # up to this many labels the download button shows the file's real size


@st.cache_data(max_entries=8, show_spinner="Exporting...")
def exported_bytes(root: str, format: str, include_pending: bool, labels_version: int) -> bytes:
    """Run the export into a private temporary folder and return the file (an ImageFolder zipped);
    cached until the label log changes (``labels_version``)."""
    with tempfile.TemporaryDirectory(prefix="labeler-export-") as folder, Workspace.open(root) as workspace:
        out = Path(folder) / ("labels" if format == "imagefolder" else f"labels.{format}")
        export_labels(workspace, format, out, include_pending)
        if format == "imagefolder":
            out = Path(shutil.make_archive(str(out), "zip", root_dir=out))
        return out.read_bytes()


def render(workspace) -> None:
    ui.page_header("Export", "Take the labels out: a table for analysis, or an ImageFolder tree for training other models.")
    include_pending = st.toggle("Include pending pseudo-labels", help="Off: only accepted labels (made by you, or pseudo-labels you accepted).")
    summary = export_summary(workspace, include_pending)
    if not summary.images:
        st.info("No labels to export yet.")
        return
    row = st.columns(3)
    row[0].metric("Labeled images", summary.images)
    row[1].metric("Labels", summary.labels)
    row[2].metric("Subjects", summary.subjects)
    st.dataframe(pd.DataFrame(summary.by_label_source, columns=["label", "source", "images"]), hide_index=True)
    st.subheader("Download")
    format = st.radio("Format", list(FORMATS), format_func=FORMATS.get, horizontal=True)
    if format == "imagefolder":
        st.caption("The images are copied into a zip: fine for thousands; for more, write to a folder on this server below.")
    suffix = "zip" if format == "imagefolder" else format
    data = partial(exported_bytes, str(workspace.root), format, include_pending, last_event_id(workspace))
    if summary.images > SIZED_ROWS:  # made on click: a large export is not built on every view
        size = f"{summary.images:,} images" if format == "imagefolder" else f"{summary.images:,} rows"
    elif format == "imagefolder":  # the zip is made on click; its size is the images' size
        image_ids = [r["image_id"] for r in export_rows(workspace, include_pending)]
        size = "about " + human_size(sum(path.stat().st_size for path in workspace.image_paths(image_ids)))
    else:
        data = data()
        size = human_size(len(data))
    st.download_button(f"Download labels.{suffix} ({size})", data, f"labels.{suffix}", MIME[format], on_click="ignore", type="primary", icon=":material/download:")
    st.subheader("Write to a folder on this server")
    st.caption(f"Under the app's root folder, `{ui.plain(ui.workspace_root())}` (a relative path is taken from there).")
    left, middle, right = st.columns([3, 1, 1], vertical_alignment="bottom")
    target = left.text_input("Folder or file", placeholder="exports/round-3", help="A new (or empty) folder for ImageFolder; a file path for CSV/JSON.")
    link = middle.selectbox("Images as", LINK_MODES, help="copy, hardlink (same disk) or symlink to the workspace's stored copy.", disabled=format != "imagefolder")
    if right.button("Write", disabled=not target.strip()):
        bar = ui.ProgressBar("Exporting")
        report = export_labels(workspace, format, ui.inside_root(target, "export target"), include_pending, link=link, progress=bar)
        bar.done()
        st.success(f"Wrote {report.rows} labels to {ui.plain(report.path)}.")
    with st.expander("Preview"):
        st.dataframe(pd.DataFrame(export_rows(workspace, include_pending, PREVIEW_ROWS), columns=EXPORT_COLUMNS), hide_index=True, width="stretch")


ui.run_page(render)
