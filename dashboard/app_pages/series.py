"""Series: one subject's photos in date order, with their labels, clusters and predictions."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler import views as catalog
from serieslabeler.ingest import readable_time
from serieslabeler.store import queries

UNLABELED = "(unlabeled)"
STRIP_COLUMNS = 6


def describe(row) -> str:
    """The caption under a filmstrip image (plain text: labels are user text)."""
    parts = [f"day {row.days:.1f}"]
    if isinstance(row.label, str):
        pending = " pending" if row.status == "pending" else ""
        parts.append(f"{row.label} ({row.source}{pending}, {row.confidence:.2f})")
    else:
        parts.append("unlabeled")
    if "predicted" in row._fields and isinstance(row.predicted, str):
        parts.append(f"predicted {row.predicted} {row.prediction_confidence:.2f}")
    return " · ".join(parts)


def render(workspace) -> None:
    ui.page_header("Series", "One subject's photos in date order: how it changes over time, and what each photo is labeled.")
    subjects = queries.subject_names(workspace)
    if not subjects:
        st.info("No images yet: add some on the Collection page.")
        return
    left, right = st.columns([1, 2])
    subject = left.selectbox("Subject", subjects, key="subject", bind="query-params", help="The address keeps the subject, so a link opens it.")
    ids = queries.image_table(workspace, subject=subject)["image_id"].tolist()
    clustering_id = catalog.latest_clustering_id(workspace)
    details = catalog.image_details(workspace, ids, clustering_id)
    details["shown label"] = details["label"].fillna(UNLABELED)
    present = sorted(details["shown label"].unique())
    chosen = right.multiselect("Show labels", present, default=present, help="Filter the strip by current label.")
    shown = details[details["shown label"].isin(chosen)]
    row = st.columns(4)
    row[0].metric("Photos", len(details))
    row[1].metric("Days", f"{details['days'].max():.0f}", help="The span: days from this subject's first photo to its last.")
    row[2].metric("Labeled", int(details["label"].notna().sum()))
    row[3].metric("Shown", len(shown))
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.caption("Days since this subject's first photo under each image; **View** opens the original; follow an image's cluster link to label that cluster.")
    with right:
        display = ui.display_controls(workspace)
    ui.image_viewer(workspace, shown["image_id"], display, what=f"of {subject}")
    paths = workspace.thumbnail_paths(shown["image_id"].tolist())
    grid = st.grid(STRIP_COLUMNS, min_column_width=150, border=True)
    for path, item in zip(paths, shown.itertuples(index=False)):
        with grid.cell():
            st.image(ui.shown_thumbnail(str(path), display), caption=describe(item), width="stretch")
            st.caption(ui.plain(f"{readable_time(item.taken_at)} · {item.file}"))
            ui.view_button(int(item.image_id))
            if "cluster" in shown.columns and not pd.isna(item.cluster):
                ui.page_link("label.py", f"Cluster {item.cluster}", ":material/label:", clustering=clustering_id, cluster=int(item.cluster))
    with st.expander("As a table"):
        st.dataframe(shown.drop(columns=["shown label"]), hide_index=True, width="stretch")


ui.run_page(render)
