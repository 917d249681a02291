"""Home: what the open workspace holds and where the next step is."""
from __future__ import annotations

import shutil

import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler.ingest import IMAGE_EXTENSIONS, read_csv, readable_time
from serieslabeler.loop import IterateConfig, demo_to_undo, run_demo, undo_demo
from serieslabeler.store import Workspace, queries, summarize

STEPS = (
    ("collection.py", "1. Collection", "images", "Add images and their metadata CSV."),
    ("sample.py", "2. Sample", "samples", "Pick a batch to work on: a few subjects across all their days."),
    ("map.py", "3. Embed & map", "feature_sets", "Embed with a pretrained CNN, append metadata, look at the t-SNE map."),
    ("cluster.py", "4. Cluster", "clusterings", "Group similar images; choose k with the elbow and silhouette charts."),
    ("label.py", "5. Label", "labeled", "Name whole clusters at once, clicking out the misfits."),
    ("series.py", "6. Series", "series_labeled", "With ordered stages (decomposition, ripening): label a subject's photos in time "
     "order by clicking the first photo of each stage, or accept the model's proposal."),
    ("train.py", "7. Train & route", "models", "Train a classifier; confident predictions become labels."),
    ("metrics.py", "8. Metrics", "models", "Per-class precision, recall and F1 against the ground truth."),
)


def new_collection() -> None:
    """Name a collection, upload its photos and CSV, map the columns, check, ingest: the workspace
    is made under the app's folder only when Ingest is pressed (and removed again if nothing could be read)."""
    st.caption("Give it a name, add the photos (a .zip, or the files themselves) and the spreadsheet that describes them (CSV, one row per photo).")
    name = st.text_input("Collection name", key="new_name", max_chars=80, placeholder="e.g. Decomposition 2024")
    left, right = st.columns(2)
    image_types = ["zip", *(ext.lstrip(".") for ext in sorted(IMAGE_EXTENSIONS))]
    images = ui.stage_image_uploads(left.file_uploader("Photos", type=image_types, accept_multiple_files=True, key="new_images"))
    upload = right.file_uploader("Metadata CSV", type=["csv", "tsv", "txt"], key="new_metadata")
    if not name.strip() or images is None or upload is None:
        st.info("Name the collection and add its photos and CSV to map the columns.")
        return
    try:
        target = ui.collection_folder(ui.workspace_root(), name)
    except ValueError as error:
        st.error(str(error))
        return
    if target.exists():
        if st.session_state.get("new_made") == str(target):
            st.success(f"The collection '{ui.plain(target.name)}' is open now. To start another one, change the name.")
        else:
            st.error(f"A collection named '{ui.plain(target.name)}' already exists: choose another name, or open it from the sidebar.")
        return
    metadata = ui.stage_upload(upload)
    st.markdown(f"**Columns** of {ui.plain(upload.name)}")
    mapping = ui.mapping_form(read_csv(metadata), key="new")
    if mapping is None:
        return
    with ui.errors_shown():
        ui.ingest_preview(images, metadata, mapping)
    report = ui.ingest_section(lambda: Workspace.create(target), images, metadata, mapping, key="new", discard=lambda: shutil.rmtree(target, ignore_errors=True))
    if report is not None:
        st.query_params[ui.WS_PARAM] = str(target)
        st.session_state["new_made"] = str(target)
        st.success(f"The collection '{ui.plain(target.name)}' is open now: the next step is a sample.")
        ui.page_link("sample.py", "Go to Sample", ":material/shuffle:")


def render(workspace) -> None:
    info = summarize(workspace)
    ui.page_header(
        "Image series labeler",
        "Sort and label photo series of subjects over time: cluster, label whole clusters, "
        "let a classifier take over the confident rest. Everything stays on this machine.",
    )
    st.caption(f"Workspace: {ui.plain(info['workspace'])}")
    with st.expander("New collection", icon=":material/add_photo_alternate:", expanded=not info["images"]):
        with ui.errors_shown():
            new_collection()
    labeled = sum(info["labels_by_source"].values()) - info["pending"]
    counts = {
        "images": info["images"],
        "samples": info["samples"],
        "feature_sets": len(info["feature_sets"]),
        "clusterings": info["clusterings"],
        "labeled": labeled,
        "series_labeled": info["labels_by_source"].get("series", 0),
        "models": info["models"],
    }
    row = st.columns(5)
    row[0].metric("Images", info["images"])
    row[1].metric("Subjects", info["subjects"])
    row[2].metric("Labeled", labeled, delta=f"{info['pending']} pending review" if info["pending"] else None, delta_color="off", delta_arrow="off",
                  help="Accepted labels made in the tool (any source); pseudo-labels routed from a model wait on Train & route for review.")
    row[3].metric("Clusterings", info["clusterings"])
    row[4].metric("Models", info["models"])

    st.subheader("The workflow")
    st.caption("Each step is a page; a check mark means this workspace already has its output.")
    for file, title, key, text in STEPS:
        left, right = st.columns([1, 3])
        with left:
            ui.page_link(file, f"{title}  {'✓' if counts[key] else ''}")
        right.caption(text)

    st.subheader("Subjects")
    st.caption("Each subject's images and the dates they span; days: from the subject's first photo to its last.")
    subjects = pd.DataFrame(info["subjects_detail"], columns=["subject", "images", "first", "last", "days", "days_with_photos"])
    subjects[["first", "last"]] = subjects[["first", "last"]].map(readable_time)
    st.dataframe(subjects.rename(columns={"first": "first photo", "last": "last photo", "days_with_photos": "days with photos"}), hide_index=True, width="stretch")
    with ui.errors_shown():
        demo_section(workspace)


def demo_section(workspace) -> None:
    """The ground truth plays the expert for a few rounds (only for a collection with ground truth)."""
    if not queries.has_ground_truth(workspace):
        return
    st.subheader("Demo")
    st.caption("Let the ground truth play the expert for a few rounds and watch labels grow, interactions stay few and "
               "the per-class F-score climb on the Metrics page. Demo events are marked (author 'demo') and undo as one. "
               "With ordered stages it labels series by their boundaries, as on the Series page.")
    left, middle, right = st.columns([1, 1, 1])
    rounds = int(left.number_input("Rounds", 1, 20, 3, key="demo_rounds"))
    if middle.button("Run the demo", type="primary"):
        bar = st.progress(0.0, text=f"Demo: round 0 of {rounds}")
        demo = run_demo(workspace, IterateConfig(metadata={"days": 0.5}),
                        rounds, on_round=lambda done, total: bar.progress(done / total, text=f"Demo: round {done} of {total}"))
        st.success(ui.plain(demo.results[-1].message))
        if demo.stop_note is not None:
            bar.progress(1.0, text=f"Demo: stopped after round {len(demo.results)} of {rounds}")
            st.info(ui.plain(demo.stop_note))
        ui.page_link("metrics.py", "See the Metrics page", ":material/monitoring:")
    if right.button("Undo the demo", disabled=not demo_to_undo(workspace)):
        events = undo_demo(workspace, author=ui.author())
        st.success(f"The demo is undone ({len(events)} events).")


ui.run_page(render)
