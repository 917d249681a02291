"""Metrics: how good the classifier is per class, how it improves per round, and what it cost."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler.labels import session_stats, vocabulary_order
from serieslabeler.loop import (
    learning_curve,
    stored_evaluation,
)
from serieslabeler.metrics import in_stage_order
from serieslabeler.models import list_models
from serieslabeler.report import write_report
from serieslabeler.store import queries

CURVE_COLUMNS = {
    "model_id": "model", "labeled_images": "labeled images", "interactions": "interactions",
    "validation_macro_f": "validation macro F", "validation_top1": "validation top-1",
    "held_out_macro_f": "held-out macro F", "held_out_top1": "held-out top-1",
}


def download(frame: pd.DataFrame, name: str) -> None:
    st.download_button(f"Download {name}.csv", frame.to_csv(index=False).encode("utf-8"), f"{name}.csv", "text/csv", on_click="ignore", key=f"download_{name}")


def report_section(report: dict, note: str, order: list[str] | None = None) -> None:
    st.caption(note)
    report = in_stage_order(report, order)
    classes = report["classes"]
    row = st.columns(5)
    row[0].metric("Top-1 accuracy", f"{report['top1']:.2f}")
    row[1].metric("Top-3 accuracy", "-" if report["top3"] is None else f"{report['top3']:.2f}")
    row[2].metric("Macro precision (AP)", f"{report['macro']['AP']:.2f}")
    row[3].metric("Macro recall (AR)", f"{report['macro']['AR']:.2f}")
    row[4].metric("Macro F", f"{report['macro']['F']:.2f}")
    per_class = pd.DataFrame(report["per_class"])
    confusion = pd.DataFrame(report["confusion"], index=classes, columns=classes)
    cells = confusion.rename_axis("truth").reset_index().melt("truth", var_name="predicted", value_name="images")
    left, right = st.columns(2)
    with left:
        st.markdown("**Per class**")
        bars = per_class.melt(["label", "support"], ["precision", "recall", "f1"], var_name="measure")
        st.altair_chart(
            alt.Chart(bars).mark_bar().encode(
                x=alt.X("label:N", title="class", sort=classes), xOffset="measure:N", y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])),
                color="measure:N", tooltip=["label", "measure", alt.Tooltip("value:Q", format=".3f"), "support"],
            ),
            width="stretch",
        )
        download(per_class, "per_class")
    with right:
        st.markdown("**Confusion matrix** (rows: truth)")
        base = alt.Chart(cells).encode(x=alt.X("predicted:N", sort=classes), y=alt.Y("truth:N", sort=classes))
        heat = base.mark_rect().encode(color=alt.Color("images:Q", scale=alt.Scale(scheme="blues")), tooltip=["truth", "predicted", "images"])
        st.altair_chart(heat + base.mark_text().encode(text="images:Q"), width="stretch")
        download(cells, "confusion")


DECODED = "each series decoded as ordered stages"
PER_PHOTO = "each photo"


def held_out_report(result: dict) -> tuple[dict, str]:
    """The held-out report to show and its note: per photo, or (ordered stages, the user's
    choice) decoded along each held-out series, with both macro F side by side."""
    note = f"On the ground truth of held-out subjects {', '.join(ui.plain(s) for s in result['held_out_subjects'])} ({result['test_images']} images); {result['method']}."
    decoded = result.get("decoded_report")
    if not decoded:
        return result["report"], note
    shown = st.radio("Scores of", [PER_PHOTO, DECODED], horizontal=True, key="metrics_scores",
                     help="Each photo's own prediction, or each held-out series read as one non-decreasing stage sequence (as proposals and route --monotone read it).")
    note += f" Macro F per photo {result['report']['macro']['F']:.3f}, decoded along each series {decoded['macro']['F']:.3f}."
    return (decoded if shown == DECODED else result["report"]), note


def learning_curves(workspace) -> None:
    points = learning_curve(workspace, held_out=lambda model_id: stored_evaluation(workspace, model_id))
    table = pd.DataFrame([p.to_dict() for p in points]).rename(columns=CURVE_COLUMNS).dropna(axis=1, how="all")
    measures = [c for c in table.columns if "macro F" in c or "top-1" in c]
    st.caption("One point per model, oldest first: scores against the labeled images and against the interactions spent to get there.")
    left, right = st.columns(2)
    for column, x in ((left, "labeled images"), (right, "interactions")):
        long = table.melt([x, "model"], measures, var_name="measure")
        column.altair_chart(
            alt.Chart(long).mark_line(point=True).encode(x=f"{x}:Q", y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])), color="measure:N", tooltip=["model", x, "measure", "value"]),
            width="stretch",
        )
    st.dataframe(table, hide_index=True, width="stretch")
    download(table, "learning_curves")


def speed_section(workspace) -> None:
    sessions = pd.DataFrame([session_stats(workspace, i).to_dict() for i in queries.session_ids(workspace)])
    if sessions.empty:
        st.caption("No labeling sessions yet (they start on the Label page).")
        return
    st.altair_chart(
        alt.Chart(sessions).mark_bar().encode(x="id:O", y=alt.Y("images_per_minute:Q", title="images labeled per minute"), tooltip=list(sessions.columns)),
        width="stretch",
    )
    st.dataframe(sessions, hide_index=True, width="stretch")
    download(sessions, "labeling_sessions")


def stakeholder_report(workspace) -> None:
    """One self-contained HTML file of the workspace's state, kept in its reports/ folder and offered for download."""
    st.caption("Collection, effort, per-class quality on held-out subjects, learning curves, the threshold with its audited "
               "precision, and example images: one HTML file that opens offline.")
    path = workspace.root / "reports" / "report.html"
    if st.button("Build the stakeholder report"):
        with st.spinner("Building the report..."):
            write_report(workspace, path)
    if path.is_file():
        st.download_button("Download report.html", path.read_bytes(), "report.html", "text/html", on_click="ignore", key="download_report")


def render(workspace) -> None:
    ui.page_header("Metrics", "Per-class precision, recall and F1 on held-out subjects (never a random image split), how each model improves, and the labeling effort.")
    models = list_models(workspace, classifiers_only=True)
    if not models:
        st.info("No model yet: train one on the Train & route page.")
    else:
        by_id = {m["id"]: m for m in models}
        model_id = st.selectbox("Model", list(by_id), format_func=lambda i: f"model {i}: {by_id[i]['mode']}, {by_id[i]['training_set']} labels")
        truth = queries.has_ground_truth(workspace)
        st.subheader("Quality per class")
        order = vocabulary_order(workspace)
        if truth:
            with ui.errors_shown():  # a model that cannot be scored takes only this section with it
                report_section(*held_out_report(stored_evaluation(workspace, model_id)), order)
        elif by_id[model_id]["metrics"].get("validation"):
            report_section(by_id[model_id]["metrics"]["validation"], "No ground truth here: scores of out-of-fold predictions on your own labels, folds grouped by subject.", order)
        st.subheader("Learning curves")
        learning_curves(workspace)
    st.subheader("Labeling speed")
    speed_section(workspace)
    st.subheader("Report for stakeholders")
    with ui.errors_shown():
        stakeholder_report(workspace)


ui.run_page(render)
