"""The column mapping form, the preview and the ingest button: one code path for the Collection
page (adding to the open workspace) and Home's New collection (a workspace made on ingest)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st
from serieslabeler_app.uploads import discard_upload
from serieslabeler_app.widgets import ProgressBar, plain, show_error

from serieslabeler.errors import InputError
from serieslabeler.ingest import (
    ColumnMapping,
    CsvTable,
    IngestReport,
    guess_roles,
    ingest,
    mapping_warnings,
    missing_roles,
    plan_ingest,
    readable_time,
    role_conflicts,
)
from serieslabeler.store import Workspace

CHOOSE = "(choose a column)"
NONE = "(none)"
AUTO = "(find it)"
PREVIEW_ROWS = 20
ROLE_FIELDS = (
    ("subject", "Subject", CHOOSE, "The individual photographed over time (donor, plant, specimen...)."),
    ("date", "Date", CHOOSE, "When each photo was taken: ISO, day-first or month-first dates are read."),
    ("time", "Time (optional)", NONE, "A separate time-of-day column, e.g. 18-20 or 18:20."),
    ("label", "Ground truth (optional)", NONE, "Known labels (a stage, a class), kept apart and used only for evaluation."),
    ("file", "File name", AUTO, "The column naming each image file; found by itself if left alone."),
)


def mapping_form(table: CsvTable, key: str) -> ColumnMapping | None:
    """Which column holds what. Subject and Date must be chosen (pre-filled only when a name or the
    values make them clear, and then said to be guesses); one column per role. None until the
    mapping is complete and consistent; warnings for what looks wrong."""
    columns = table.columns
    guesses = guess_roles(table)
    row = st.columns(len(ROLE_FIELDS))
    roles: dict[str, str | None] = {}
    for cell, (role, label, empty, help_text) in zip(row, ROLE_FIELDS):
        options = [empty, *columns]
        guessed = guesses.get(role)
        index = options.index(guessed.column) if guessed else 0
        choice = cell.selectbox(label, options, index=index, key=f"{key}_{role}", help=help_text)
        roles[role] = None if choice == empty else choice
        if guessed and choice == guessed.column:
            cell.caption(f"A guess ({plain(guessed.reason)}): check it.")
    used = set(roles.values())
    row = st.columns([3, 2, 1])
    rest = [c for c in columns if c not in used]
    attributes = row[0].multiselect("Attributes", rest, default=rest, help="Other columns to keep (camera, weather, placement...).")
    categorical = row[1].multiselect("Treat as categorical", attributes, help="Types are inferred; numbers that are really codes can be forced to categories.")
    order = row[2].selectbox("Date order", ["auto", "dmy", "mdy"], help="Only needed when every date like 05/06/2020 is ambiguous.")
    problems = role_conflicts(roles)
    for problem in problems:
        st.error(problem[0].upper() + problem[1:] + ".")
    missing = missing_roles(roles)
    if missing:
        st.warning("Before anything can be read: " + "; ".join(missing) + ".")
    if problems or missing:
        return None
    mapping = ColumnMapping(
        subject=roles["subject"],
        date=roles["date"],
        time=roles["time"],
        label=roles["label"],
        attributes=tuple(attributes),
        kinds={name: "categorical" for name in categorical},
        file=roles["file"],
        date_order=None if order == "auto" else order,
    )
    for warning in mapping_warnings(table, mapping):
        st.warning(warning)
    return mapping


def preview(images: Path, metadata: Path, mapping: ColumnMapping) -> None:
    """The CSV rows as they will be read, and every row or file that cannot be (before any image is decoded)."""
    plan = plan_ingest(images, metadata, mapping)
    st.subheader("Check")
    subjects = len({r.subject for r in plan.rows})
    st.caption(
        f"{len(plan.pairs)} of {len(plan.rows)} readable rows matched to one of {plan.files} files, "
        f"{subjects} subjects; file names from column '{plain(plan.file_column)}'. Every image is opened when you ingest."
    )
    parsed = pd.DataFrame(
        [{"line": r.line, "file": r.file, "subject": r.subject, "taken": readable_time(r.taken_at), "ground truth": r.label or "", **r.attributes} for r in plan.rows[:PREVIEW_ROWS]]
    )
    st.dataframe(parsed, hide_index=True, width="stretch")
    if plan.problems:
        st.warning(f"{len(plan.problems)} problem(s) with rows or files. Fix them, or skip them below.")
        st.dataframe([{"where": p.where, "problem": p.message} for p in plan.problems], hide_index=True, width="stretch")


def ingest_section(open_target: Callable[[], Workspace], images: Path, metadata: Path, mapping: ColumnMapping, key: str, discard: Callable[[], None] | None = None) -> IngestReport | None:
    """The skip toggle and the Ingest button. ``open_target`` gives the workspace to write into
    (made only when the button is pressed); ``discard`` undoes that when nothing could be ingested."""
    skip_bad = st.toggle("Skip bad rows and files", key=f"{key}_skip", help="Ingest the good part and list what was skipped; off: nothing is written while anything is bad.")
    if not st.button("Ingest", type="primary", key=f"{key}_ingest", help="Open every image, then add them all at once."):
        return None
    bar = ProgressBar("Checking images")
    workspace = open_target()
    try:
        report = ingest(workspace, images, metadata, mapping, skip_bad=skip_bad, progress=bar)
    except InputError as error:
        workspace.close()
        if discard:
            discard()
        show_error(error)
        st.info("Turn on **Skip bad rows and files** to ingest the good part, or fix the CSV and try again.")
        return None
    finally:
        bar.done()
    workspace.close()
    for staged in (images, metadata):
        discard_upload(staged)
    st.success(
        f"Ingested: {report.added} added, {report.updated} updated, {report.unchanged} unchanged. "
        f"The workspace now has {report.images} images of {report.subjects} subjects."
    )
    if report.skipped:
        st.warning(f"Skipped {len(report.skipped)}:")
        st.dataframe([{"where": p.where, "problem": p.message} for p in report.skipped], hide_index=True, width="stretch")
    return report
