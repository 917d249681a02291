"""Embed & map: image features from a pretrained CNN, metadata appended, and the t-SNE map."""
from __future__ import annotations

import altair as alt
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler import views as catalog
from serieslabeler.embed import DEVICES, EMBEDDERS, embed_workspace
from serieslabeler.labels import label_images
from serieslabeler.space import (
    create_map,
    drawn_rows,
    list_maps,
    load_map,
    metadata_fields,
    metadata_frame,
)

TOOLTIP_IMAGES_UP_TO = 1500
GRID_LIMIT = 48
COLOR_FIXED = ("cluster", "subject", "days", "label", "prediction confidence", "ground truth")


def confined_weights(weights: str) -> str:
    """'default', 'random' and 'imagenet' as typed; a file path only if it lies under the app's root."""
    if weights.strip() in ("default", "random", "imagenet"):
        return weights.strip()
    return str(ui.inside_root(weights, "weights file"))


def embed_section(workspace) -> None:
    st.caption("Every image becomes a feature vector once; images already embedded with the same backbone and weights are skipped.")
    row = st.columns(4)
    backbone = row[0].selectbox("Backbone", list(EMBEDDERS), index=list(EMBEDDERS).index("efficientnet_lite0"),
                                help="efficientnet_lite0 ships with ImageNet weights and works offline. colour: a colour histogram, "
                                     "no weights; for stages that are changes of colour (discolouration, ripening). "
                                     "efficientnet_lite0_texture: the same network's inner-layer colour and texture statistics; "
                                     "its proposals along a series need fewer boundaries moved.")
    weights = row[1].text_input("Weights", "default", help="'default' (ImageNet), 'random', or the path of a saved state dict under the app's root folder.")
    device = row[2].selectbox("Device", DEVICES, index=DEVICES.index("auto"), help="auto: the GPU when there is one.")
    batch_size = row[3].number_input("Batch size", 1, 1024, 32)
    if st.button("Embed", type="primary", help="Compute the features of every image that lacks them."):
        bar = ui.ProgressBar("Embedding")
        report = embed_workspace(workspace, backbone, confined_weights(weights), device=device, batch_size=batch_size, progress=bar)
        bar.done()
        st.success(
            f"`{report.feature_set}`: {report.computed} images embedded ({report.images_per_second:.1f} images/s on {report.device}), "
            f"{report.cached} already there."
        )


def map_section(workspace) -> None:
    st.caption("t-SNE places similar images close together. Metadata appended here shapes the map the same way it shapes clusters.")
    feature_set, sample_id = ui.features_and_sample(workspace, "map")
    if feature_set is None:
        return
    weights = ui.metadata_weights(workspace, "map_weight")
    perplexity = st.slider("Perplexity", 5, 100, 30, help="Roughly how many neighbours each point pays attention to.")
    if st.button("Compute the map", type="primary"):
        with st.spinner("Fitting t-SNE..."):
            saved = create_map(workspace, feature_set, metadata=weights, perplexity=perplexity, sample_id=sample_id)
        st.success(f"Map {saved.id}: {len(saved.ids)} images.")


def map_frame(workspace, saved):
    """The points to draw (:func:`serieslabeler.space.drawn_rows`) with what they show."""
    keep = drawn_rows(len(saved.ids))
    if len(keep) < len(saved.ids):
        st.caption(f"Showing {len(keep)} of {len(saved.ids)} points (a fixed random subset).")
    ids = saved.ids[keep]
    frame = catalog.image_details(workspace, ids)
    frame["x"], frame["y"] = saved.coords[keep, 0], saved.coords[keep, 1]
    attributes = [name for name in metadata_fields(workspace) if name not in ("days", "date")]
    if attributes:
        extra = metadata_frame(workspace, ids, attributes).reset_index(drop=True)
        frame = frame.join(extra.add_prefix("attribute: "))
    frame["taken_at"] = frame["taken_at"].str.slice(0, 16).str.replace("T", " ")
    if len(frame) <= TOOLTIP_IMAGES_UP_TO:
        frame["image"] = [ui.thumbnail_uri(str(p)) for p in workspace.thumbnail_paths(ids)]
    return frame


def encoding_for(frame, color: str):
    column = {"prediction confidence": "prediction_confidence", "ground truth": "truth"}.get(color, color)
    if column not in frame.columns or frame[column].isna().all():
        return alt.value("#4c78a8"), f"{color}: none yet"
    field = ui.vega_field(column)
    if column in ("days", "prediction_confidence") or (column.startswith("attribute: ") and frame[column].dtype.kind in "fi"):
        return alt.Color(field=field, type="quantitative", title=color, scale=alt.Scale(scheme="viridis")), None
    scheme = "tableau10" if frame[column].nunique() <= 10 else "tableau20"
    return alt.Color(field=field, type="nominal", title=color, scale=alt.Scale(scheme=scheme)), None


def draw_map(workspace) -> None:
    maps = list(reversed(list_maps(workspace)))
    if not maps:
        st.info("No map yet: make one in the **Compute** tab.")
        return
    by_id = {m["id"]: m for m in maps}
    left, right = st.columns([1, 2])
    map_id = left.selectbox("Map", list(by_id), format_func=lambda i: f"map {i}: {by_id[i]['feature_set']}, {by_id[i]['n']} images", help="Newest first.")
    saved = load_map(workspace, map_id)
    frame = map_frame(workspace, saved)
    options = [*COLOR_FIXED, *(c.removeprefix("attribute: ") for c in frame.columns if c.startswith("attribute: "))]
    color_by = right.radio("Color by", options, format_func=ui.plain, horizontal=True)
    color, note = encoding_for(frame, color_by if color_by in COLOR_FIXED else f"attribute: {color_by}")
    if note:
        st.caption(ui.plain(note))
    tooltip = [c for c in ("file", "subject", "taken_at", "days", "label", "cluster", "predicted", "prediction_confidence", "truth") if c in frame.columns]
    if "image" in frame.columns:
        tooltip.append("image")
    brush = alt.selection_interval(name="box")
    points = alt.selection_point(name="points", fields=["image_id"], on="click", empty=False)
    chart = (
        alt.Chart(frame)
        .mark_circle(size=80)
        .encode(
            x=alt.X("x:Q", axis=None),
            y=alt.Y("y:Q", axis=None),
            color=color,
            tooltip=tooltip,
            stroke=alt.condition(points, alt.value("black"), alt.value("transparent")),
            strokeWidth=alt.value(2),
            opacity=alt.condition(brush, alt.value(0.9), alt.value(0.3)),
        )
        .add_params(brush, points)
        .properties(height=560)
    )
    st.caption("Hover a point for its photo and details. Drag a box, or click points (shift-click for more), to see them below and label them together.")
    event = st.altair_chart(chart, on_select="rerun", key=f"map_chart_{map_id}", width="stretch")
    selected_ids = selection(event, frame)
    if selected_ids:
        label_selection(workspace, selected_ids)


def selection(event, frame) -> list[int]:
    """Image ids picked on the chart: clicked points plus those inside the dragged box."""
    chosen = {int(p["image_id"]) for p in event.selection.get("points", []) if "image_id" in p}
    box = event.selection.get("box", {})
    if "x" in box and "y" in box:
        (x0, x1), (y0, y1) = sorted(box["x"]), sorted(box["y"])
        inside = frame[frame["x"].between(x0, x1) & frame["y"].between(y0, y1)]
        chosen |= set(inside["image_id"].astype(int))
    return sorted(chosen)


def label_selection(workspace, image_ids: list[int]) -> None:
    st.subheader(f"Selected: {len(image_ids)} images")
    shown = image_ids[:GRID_LIMIT]
    if len(image_ids) > GRID_LIMIT:
        st.caption(f"Showing the first {GRID_LIMIT}.")
    grid = st.grid(8, min_column_width=100)
    for picture in ui.thumbnails(workspace, shown):
        grid.image(picture, width="stretch")
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    with left:
        label = ui.label_picker(workspace, "map_label")
    seen = ui.seen_event(workspace, image_ids)
    if right.button(f"Label these {len(image_ids)}", type="primary", disabled=label is None):
        event = label_images(workspace, image_ids, label, author=ui.author(), expected_event_id=seen)
        st.success(f"Labeled {event.changed} images as {ui.plain(label)}.")


def render(workspace) -> None:
    ui.page_header("Embed & map", "Turn photos into feature vectors, append metadata, and look at the collection as a map.")
    view_tab, compute_tab = st.tabs(["The map", "Compute"])
    with compute_tab:
        st.subheader("1. Embed")
        with ui.errors_shown():
            embed_section(workspace)
        st.subheader("2. Map")
        with ui.errors_shown():
            map_section(workspace)
    with view_tab:
        draw_map(workspace)


ui.run_page(render)
