"""Collection: add images (a zip or a server folder) and their metadata CSV; see what the workspace holds."""
from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler.errors import InputError
from serieslabeler.ingest import ColumnMapping, ingest, plan_ingest, read_csv
from serieslabeler.store import queries, summarize

NONE = "(none)"
AUTO = "(find it)"
PREVIEW_ROWS = 20
GUESSES = {
    "subject": ("subject", "donor", "individual", "specimen"),
    "date": ("date", "taken", "day_taken"),
    "time": ("time",),
    "label": ("label", "class", "stage", "truth"),
    "file": ("file", "image", "path", "name"),
}


def guess(columns: list[str], role: str, optional: bool) -> int:
    """Index of the column whose name suggests ``role`` (the user can change it)."""
    options = ([NONE] if optional else []) + columns
    for word in GUESSES[role]:
        for i, column in enumerate(options):
            if word in column.lower():
                return i
    return 0


def overview(workspace) -> None:
    info = summarize(workspace)
    row = st.columns(4)
    row[0].metric("Images", info["images"])
    row[1].metric("Subjects", info["subjects"])
    first, last = info["date_range"]
    row[2].metric("First photo", (first or "-")[:10])
    row[3].metric("Last photo", (last or "-")[:10])
    if not info["images"]:
        st.info("This workspace is empty: add images and their metadata in the **Add images** tab.")
        return
    st.subheader("Timeline")
    st.caption("Images per subject and day: gaps show missing days, dot size the number of photos.")
    timeline = queries.images_per_subject_day(workspace)
    chart = (
        alt.Chart(timeline)
        .mark_circle()
        .encode(
            x=alt.X("day:T", title="date"),
            y=alt.Y("subject:N", title="subject"),
            size=alt.Size("images:Q", legend=None),
            tooltip=["subject", "day", "images"],
        )
        .properties(height=max(160, 22 * info["subjects"]))
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
            st.markdown(f"**{name}** · {summary['type']}")
            if summary["type"] == "numeric":
                st.caption(f"min {summary['min']:g}, max {summary['max']:g}, mean {summary['mean']:.3g} ({summary['count']} values)")
            else:
                values = pd.DataFrame({"value": list(summary["values"]), "images": list(summary["values"].values())})
                st.altair_chart(
                    alt.Chart(values).mark_bar().encode(x="images:Q", y=alt.Y("value:N", sort="-x"), tooltip=["value", "images"]),
                    width="stretch",
                )
    if info["ground_truth"]:
        st.subheader("Ground truth")
        st.caption("Labels read from the CSV's label column: used only to evaluate, never to train.")
        truth = pd.DataFrame({"label": list(info["ground_truth"]), "images": list(info["ground_truth"].values())})
        st.altair_chart(
            alt.Chart(truth).mark_bar().encode(x="images:Q", y=alt.Y("label:N", sort="-x"), tooltip=["label", "images"]).properties(height=max(80, 28 * len(truth))),
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


def mapping_form(columns: list[str]) -> ColumnMapping:
    st.caption("Which column holds what. Nothing is assumed about your column names.")
    row = st.columns(5)
    subject = row[0].selectbox("Subject", columns, index=guess(columns, "subject", False), help="The donor / individual each photo shows.")
    date = row[1].selectbox("Date", columns, index=guess(columns, "date", False), help="ISO, day-first or month-first dates are read.")
    time = row[2].selectbox("Time (optional)", [NONE, *columns], index=guess(columns, "time", True), help="A separate time-of-day column, e.g. 18-20 or 18:20.")
    label = row[3].selectbox("Ground truth (optional)", [NONE, *columns], index=guess(columns, "label", True), help="Known labels, kept apart and used only for evaluation.")
    file = row[4].selectbox("File name", [AUTO, *columns], index=guess(columns, "file", True), help="The column naming each image file; found by itself if left alone.")
    used = {subject, date, time, label, file}
    row = st.columns([3, 2, 1])
    attributes = row[0].multiselect("Attributes", [c for c in columns if c not in used], default=[c for c in columns if c not in used], help="Other columns to keep (camera, weather, placement...).")
    categorical = row[1].multiselect("Treat as categorical", attributes, help="Types are inferred; numbers that are really codes can be forced to categories.")
    order = row[2].selectbox("Date order", ["auto", "dmy", "mdy"], help="Only needed when every date like 05/06/2020 is ambiguous.")
    return ColumnMapping(
        subject=subject,
        date=date,
        time=None if time == NONE else time,
        label=None if label == NONE else label,
        attributes=tuple(attributes),
        kinds={name: "categorical" for name in categorical},
        file=None if file == AUTO else file,
        date_order=None if order == "auto" else order,
    )


def preview(images: Path, metadata: Path, mapping: ColumnMapping) -> None:
    """The CSV rows as they will be read, and every row or file that cannot be (before any image is decoded)."""
    plan = plan_ingest(images, metadata, mapping)
    st.subheader("Preview")
    st.caption(
        f"{len(plan.pairs)} of {len(plan.rows)} readable CSV rows matched to one of {plan.files} files; file names from "
        f"column `{plan.file_column}`. Every image is decoded when you ingest."
    )
    parsed = pd.DataFrame(
        [{"line": r.line, "file": r.file, "subject": r.subject, "taken at": r.taken_at, "ground truth": r.label, **r.attributes} for r in plan.rows[:PREVIEW_ROWS]]
    )
    st.dataframe(parsed, hide_index=True, width="stretch")
    if plan.problems:
        st.warning(f"{len(plan.problems)} problem(s) with rows or files. Fix them, or skip them below.")
        st.dataframe([{"where": p.where, "problem": p.message} for p in plan.problems], hide_index=True, width="stretch")


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
    mapping = mapping_form(table.columns)
    with ui.errors_shown():
        preview(images, metadata, mapping)
    skip_bad = st.toggle("Skip bad rows and files", help="Ingest the good part and list what was skipped; off: nothing is written while anything is bad.")
    if not st.button("Ingest", type="primary", help="Decode every image, then add them all in one transaction."):
        return
    bar = ui.ProgressBar("Checking images")
    try:
        report = ingest(workspace, images, metadata, mapping, skip_bad=skip_bad, progress=bar)
    except InputError as error:
        bar.done()
        ui.show_error(error)
        st.info("Turn on **Skip bad rows and files** to ingest the good part, or fix the CSV and try again.")
        return
    bar.done()
    for staged in (images, metadata):
        ui.discard_upload(staged)
    st.success(
        f"Ingested: {report.added} added, {report.updated} updated, {report.unchanged} unchanged. "
        f"The workspace now has {report.images} images of {report.subjects} subjects."
    )
    if report.skipped:
        st.warning(f"Skipped {len(report.skipped)}:")
        st.dataframe([{"where": p.where, "problem": p.message} for p in report.skipped], hide_index=True, width="stretch")


def render(workspace) -> None:
    ui.page_header("Collection", "The photos and their metadata: what is here, and adding more.")
    holds, add = st.tabs(["What it holds", "Add images"])
    with add, ui.errors_shown():
        add_images(workspace)
    with holds:
        overview(workspace)


ui.run_page(render)
