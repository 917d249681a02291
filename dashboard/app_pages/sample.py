"""Sample: choose the batch of images to work on in this iteration, see it, then save it."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler import views as catalog
from serieslabeler.ingest import readable_time
from serieslabeler.sampling import (
    DEFAULT_TIME_BINS,
    STRATEGIES,
    UNCERTAINTY_MEASURES,
    draw_sample,
    find_sample,
    list_samples,
    sample_pool,
)

DESCRIPTIONS = {
    "subjects": "Structure-aware: a few subjects at random and all of their photos across time (the method's default).",
    "random": "Images uniformly at random.",
    "time-stratified": "Images spread evenly over time bins (days since each subject's first photo), alternating subjects.",
    "uncertainty": "The images the latest model is least sure about (needs predictions: Train & route page).",
    "coreset": "A diverse sample: each pick is the image farthest from everything picked or labeled so far.",
}


def strategy_options(workspace) -> tuple[str, dict] | None:
    """The strategy and its parameters, as ``draw_sample`` takes them; None (and a note) when no
    image is left to sample from. The choices are bounded by what the pool holds: the images (and
    their subjects) not labeled yet, unless labeled ones are included."""
    left, right = st.columns([1, 2])
    strategy = left.selectbox("Strategy", list(STRATEGIES), index=list(STRATEGIES).index("subjects"), help="How the batch is chosen.")
    right.caption(DESCRIPTIONS.get(strategy, ""))
    row = st.columns(4)
    params: dict = {"include_labeled": row[2].toggle("Include labeled", help="Off: images that already have a label are left out.")}
    params["seed"] = row[3].number_input("Seed", 0, 10_000, 0, help="Same seed, same sample.")
    pool = sample_pool(workspace, params["include_labeled"])
    subjects, images = len(np.unique(pool.subjects)), len(pool.ids)
    if images == 0:
        st.info("Every image has a label: nothing is left to sample. Turn on **Include labeled** to sample among them.")
        return None
    if strategy == "subjects":
        params["subjects"] = bounded_choice(row[0], "Subjects", subjects, 4, "How many subjects to take, with all their photos.", slider=True)
    else:
        params["size"] = bounded_choice(row[0], "Images", images, 40, "How many images to take.")
    if strategy == "time-stratified":
        params["bins"] = row[1].slider("Time bins", 1, 30, DEFAULT_TIME_BINS)
    if strategy == "uncertainty":
        params["measure"] = row[1].selectbox("Measure", UNCERTAINTY_MEASURES, help="entropy: most spread-out prediction; margin: smallest gap between the top two; least-confidence: lowest top score.")
    if strategy == "coreset":
        with row[1]:
            params["features"] = ui.feature_set_picker(workspace, "sample_features")
    return strategy, params


def bounded_choice(column, label: str, available: int, default: int, help: str, slider: bool = False) -> int:
    """A count from 1 to ``available``; with one available there is nothing to choose, so it is
    said instead (a slider cannot run from 1 to 1)."""
    if available == 1:
        column.caption(f"{label}: 1 (the only one left to sample)")
        return 1
    if slider:
        return column.slider(label, 1, available, min(default, available), help=help)
    return int(column.number_input(label, 1, available, min(default, available), help=help))


def show_selection(workspace, image_ids) -> None:
    """What a sample holds: subjects, images per time bin, ground-truth stages covered."""
    coverage = catalog.sample_coverage(workspace, image_ids)
    row = st.columns(3)
    row[0].metric("Images", coverage.images)
    row[1].metric("Subjects", coverage.subjects)
    row[2].metric("Days covered", "-" if coverage.days_covered is None else f"{coverage.days_covered:.0f}")
    left, middle, right = st.columns(3)
    with left:
        st.markdown("**Images per subject**")
        counts = pd.DataFrame({"subject": list(coverage.per_subject), "images": list(coverage.per_subject.values())})
        st.altair_chart(alt.Chart(counts).mark_bar().encode(x="images:Q", y=alt.Y("subject:N", sort="-x"), tooltip=["subject", "images"]), width="stretch")
    with middle:
        st.markdown("**Images per time bin**")
        st.altair_chart(
            alt.Chart(pd.DataFrame({"days": coverage.days})).mark_bar().encode(
                x=alt.X("days:Q", bin=alt.Bin(maxbins=DEFAULT_TIME_BINS), title="days since the subject's first photo"),
                y=alt.Y("count():Q", title="images"),
            ),
            width="stretch",
        )
    with right:
        st.markdown("**Stages covered**")
        described = coverage.describe_stages()
        st.caption(ui.plain(described) if described else "No ground truth or labels yet: which stages the sample covers is unknown.")
        if coverage.stages:
            stages = pd.DataFrame([vars(s) for s in coverage.stages]).rename(columns={"in_collection": "in the collection"})
            st.dataframe(stages, hide_index=True, width="stretch")


def describe_options(params: dict) -> str:
    """A sample's options in words (``{"subjects": 4, "include_labeled": false}`` -> ``subjects 4, include labeled no``)."""
    words = {True: "yes", False: "no"}
    return ", ".join(f"{name.replace('_', ' ')} {words.get(value, value) if isinstance(value, bool) else value}" for name, value in params.items() if value is not None)


def render(workspace) -> None:
    ui.page_header("Sample", "Pick the batch to work on in this iteration. The preview updates as you change the options; nothing is saved until you press Save.")
    if not workspace.image_count():
        st.info("No images yet: add some on the Collection page.")
        return
    options = strategy_options(workspace)
    if options is not None:
        preview_and_save(workspace, *options)
    saved_samples(workspace)


def preview_and_save(workspace, strategy: str, params: dict) -> None:
    st.subheader("Preview")
    with ui.errors_shown():
        preview = draw_sample(workspace, strategy, save=False, **params)
        show_selection(workspace, preview.image_ids)
        if st.button("Save this sample", type="primary", help="Saves it in the workspace; the map and cluster pages can then use it."):
            existing = find_sample(workspace, strategy, preview.image_ids)
            if existing is not None:
                st.info(f"These images are already saved as sample {existing}: nothing new was saved.")
            else:
                saved = draw_sample(workspace, strategy, **params)
                st.success(f"Saved sample {saved.id}: {saved.size} images.")


def saved_samples(workspace) -> None:
    st.subheader("Saved samples")
    samples = list_samples(workspace)
    if samples:
        table = pd.DataFrame(samples)
        table["params"] = table["params"].map(describe_options)
        table["created_at"] = table["created_at"].map(readable_time)
        st.dataframe(table.rename(columns={"params": "options", "created_at": "saved"}), hide_index=True, width="stretch")
    else:
        st.caption("None yet.")


ui.run_page(render)
