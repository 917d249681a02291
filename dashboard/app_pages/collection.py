"""Collection: add images (a zip or a server folder) and their metadata CSV; see what the workspace holds."""
from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler.ingest import read_csv, readable_time, store_weather
from serieslabeler.store import Workspace, collection_summary, queries, summarize

BAR_HEIGHT = 36
TIMELINE_SUBJECTS = 100  # rows of the timeline chart; a million photos may have thousands of subjects


def bar_chart(counts: pd.DataFrame, category: str) -> alt.Chart:
    """Images per value as horizontal bars, one readable row per value (the chart grows with them)."""
    return (
        alt.Chart(counts)
        .mark_bar(size=BAR_HEIGHT * 0.6)
        .encode(x=alt.X("images:Q", title="images"), y=alt.Y(f"{category}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=240)), tooltip=[category, "images"])
        .properties(height=alt.Step(BAR_HEIGHT))
    )


def overview(workspace) -> None:
    info = summarize(workspace)
    row = st.columns(4)
    row[0].metric("Images", info["images"])
    row[1].metric("Subjects", info["subjects"])
    first, last = info["date_range"]
    row[2].metric("First photo", readable_time((first or "")[:10]) or "-", help=readable_time(first))
    row[3].metric("Last photo", readable_time((last or "")[:10]) or "-", help=readable_time(last))
    if not info["images"]:
        st.info("This workspace is empty: add images and their metadata in the **Add images** tab.")
        return
    st.subheader("Timeline")
    shown = min(info["subjects"], TIMELINE_SUBJECTS)
    more = f" The first {shown} of {info['subjects']} subjects by name." if shown < info["subjects"] else ""
    st.caption("Images per subject and day: gaps show missing days, dot size the number of photos." + more)
    timeline = queries.images_per_subject_day(workspace, TIMELINE_SUBJECTS)
    chart = (
        alt.Chart(timeline)
        .mark_circle()
        .encode(
            x=alt.X("day:T", title="date"),
            y=alt.Y("subject:N", title="subject"),
            size=alt.Size("images:Q", legend=None),
            tooltip=["subject", alt.Tooltip("day:T", format="%d %b %Y"), "images"],
        )
        .properties(height=max(160, 22 * shown))
    )
    st.altair_chart(chart, width="stretch")
    st.subheader("Attributes")
    st.caption("Metadata kept with each image; these can be appended to the image features on the map page.")
    attributes = info["attributes"]
    if not attributes:
        st.caption("No attributes were mapped at ingest.")
    columns = st.columns(max(1, min(3, len(attributes))))
    for i, (name, summary) in enumerate(attributes.items()):
        with columns[i % len(columns)]:
            st.markdown(f"**{ui.plain(name)}** · {summary['type']}")
            if summary["type"] == "numeric":
                st.caption(f"min {summary['min']:g}, max {summary['max']:g}, mean {summary['mean']:.3g} ({summary['count']} values)")
            else:
                values = pd.DataFrame({"value": list(summary["values"]), "images": list(summary["values"].values())})
                st.altair_chart(
                    bar_chart(values, "value"),
                    width="stretch",
                )
    if info["ground_truth"]:
        st.subheader("Ground truth")
        st.caption("Labels read from the CSV's label column: used only to evaluate, never to train.")
        truth = pd.DataFrame({"label": list(info["ground_truth"]), "images": list(info["ground_truth"].values())})
        st.altair_chart(
            bar_chart(truth, "label"),
            width="stretch",
        )


def choose_source(kind: str, upload_types: list[str], upload_label: str, path_label: str, key: str) -> Path | None:
    """An uploaded file (staged under a sanitized name) or a path under one of the import roots."""
    if kind == "upload":
        upload = st.file_uploader(upload_label, type=upload_types, key=f"{key}_upload")
        return ui.stage_upload(upload) if upload else None
    typed = st.text_input(path_label, key=f"{key}_path", placeholder=str(ui.import_roots()[0]))
    return ui.inside_import_roots(typed, path_label) if typed.strip() else None


def source_kinds() -> list[str]:
    """Uploads always; server folders and CSVs only when import roots are configured."""
    return ["upload", "folder"] if ui.import_roots() else ["upload"]


def show_import_roots() -> None:
    roots = ui.import_roots()
    if roots:
        st.caption("Server paths are read only under: " + ", ".join(f"`{ui.plain(r)}`" for r in roots))
    else:
        st.caption(f"Uploads only: no server folders are configured for import ({ui.IMPORT_ROOTS_ENV}).")


def add_images(workspace) -> None:
    st.caption("Images come as a .zip upload or a folder under an import root; the CSV has one row per image.")
    show_import_roots()
    left, right = st.columns(2)
    with left:
        kind = st.radio("Images", source_kinds(), format_func={"upload": "Upload a .zip", "folder": "Folder on this server"}.get, horizontal=True)
        images = choose_source(kind, ["zip"], "Zip of images", "Image folder or .zip on this server", "images")
    with right:
        kind = st.radio("Metadata", source_kinds(), format_func={"upload": "Upload a CSV", "folder": "CSV on this server"}.get, horizontal=True)
        metadata = choose_source(kind, ["csv", "tsv", "txt"], "Metadata CSV", "Metadata CSV on this server", "metadata")
    if images is None or metadata is None:
        st.info("Choose the images and the metadata CSV to map their columns.")
        return
    table = read_csv(metadata)
    st.subheader("Columns")
    mapping = ui.mapping_form(table, key="collection")
    if mapping is None:
        return
    with ui.errors_shown():
        ui.ingest_preview(images, metadata, mapping)
    ui.ingest_section(lambda: Workspace.open(workspace.root), images, metadata, mapping, key="collection")


ONE_SITE = "(one site for every image)"


def add_weather(workspace) -> None:
    """A daily temperature table: time since placement becomes accumulated degree-days (``add``),
    usable like ``days`` (clustering weight, map colour, series axis)."""
    st.caption(
        "Forensic time: accumulated degree-days (the sum of daily mean temperatures above a base since each "
        "subject's first photo). Give one row per day with the date and the mean (or min and max) temperature in °C; "
        "a missing day is reported, never filled in."
    )
    upload = st.file_uploader("Daily weather (CSV)", type=["csv"], key="weather_csv")
    left, right = st.columns(2)
    sites = [ONE_SITE, *collection_summary(workspace)["attributes"]]
    site = left.selectbox("Site", sites, key="weather_site", help="An image attribute naming each photo's site; the table needs a column of the same name.")
    base = right.number_input("Base temperature (°C)", value=0.0, step=1.0, key="weather_base")
    if upload is None or not st.button("Import the weather", type="primary", key="weather_import"):
        return
    path = ui.stage_upload(upload)
    try:
        report = store_weather(workspace, path, None if site == ONE_SITE else site, float(base))
    finally:
        ui.discard_upload(path)
    st.success(
        f"{report.days} days of weather for {len(report.keys)} site(s); degree-days reach {report.max_add:.0f}. "
        "Choose 'add' as a metadata weight, a map colour or the Series page's time axis."
    )
    for gap in report.gaps:
        st.warning(ui.plain(f"No temperature from {gap['first']} to {gap['last']} (site '{gap['key']}'); outside every subject's photos, so not needed."))


def render(workspace) -> None:
    ui.page_header("Collection", "The photos and their metadata: what is here, and adding more.")
    holds, add, weather = st.tabs(["What it holds", "Add images", "Weather"])
    with add, ui.errors_shown():
        add_images(workspace)
    with weather, ui.errors_shown():
        add_weather(workspace)
    with holds:
        overview(workspace)


ui.run_page(render)
