"""Series: one subject's photos (optionally one attribute value) in time order; with an ordered
vocabulary, label the whole series by clicking the first image of each new stage."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler import labels
from serieslabeler import views as catalog
from serieslabeler.ingest import degree_days, has_weather, readable_time
from serieslabeler.loop import propose_series
from serieslabeler.store import (
    Workspace,
    collection_summary,
    get_series,
    next_series_to_label,
    save_split,
    saved_split,
    series_keys,
    series_with_series_labels,
)

UNLABELED = "(unlabeled)"
STRIP_COLUMNS = 6
NO_SPLIT = "(whole subject)"
SAVED_KEY = "series_saved"  # what the last save did, said once the page has started again
# stages first to last along a sequential palette (ColorBrewer RdYlGn reversed); unlabeled grey
STAGE_COLOURS = ["#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027", "#a50026", "#67001f"]
UNLABELED_COLOUR = "#dddddd"


def describe(row) -> str:
    """The caption under a filmstrip image (labels are user text: escape it, ``ui.plain``, to show it)."""
    parts = [f"ADD {row.add:.0f}" if "add" in row._fields else f"day {row.days:.1f}"]
    if isinstance(row.label, str):
        pending = " pending" if row.status == "pending" else ""
        parts.append(f"{row.label} ({row.source}{pending}, {row.confidence:.2f})")
    else:
        parts.append("unlabeled")
    if "predicted" in row._fields and isinstance(row.predicted, str):
        parts.append(f"predicted {row.predicted} {row.prediction_confidence:.2f}")
    return " · ".join(parts)


def remember_split(root: str, split: str | None) -> None:
    """The click's callback: save ``split`` as the workspace's series split (before the page draws)."""
    with Workspace.open(root) as workspace:
        save_split(workspace, split)


def pick_series(workspace):
    """The series chosen with the subject and split pickers (kept in the address), and every
    series key the picker offers."""
    attributes = [name for name, info in collection_summary(workspace)["attributes"].items() if info["type"] == "categorical"]
    options = [NO_SPLIT, *attributes]
    saved = saved_split(workspace)
    left, right = st.columns([1, 1])
    split = left.selectbox("Split by", options, index=options.index(saved) if saved in options else 0, key="split", bind="query-params",
                           help="One series per subject, or per subject and value of an attribute (body part, camera view).")
    chosen = None if split == NO_SPLIT else split
    if chosen != saved:
        left.button(f"Decode by {'whole subject' if chosen is None else ui.plain(chosen)} when routing and scoring", key="save_split",
                    on_click=remember_split, args=(str(workspace.root), chosen),
                    help="Routing, held-out scores and demos read each series as ordered stages; save this split for them "
                         f"(now: {'whole subject' if saved is None else ui.plain(saved)}).")
    keys = series_keys(workspace, chosen)
    key = right.selectbox("Series", keys, key="series", bind="query-params",
                          help="The address keeps the series, so a link opens it.")
    return get_series(workspace, key), keys


def next_series_row(workspace, series, keys: list[str]) -> None:
    """How many series are left to label by their stages, and a jump to the next one (after this
    one, wrapping round): an expert labels series after series without hunting in the picker."""
    labeled = series_with_series_labels(workspace, series.attribute)
    left = [key for key in keys if key not in labeled]
    following = next_series_to_label(keys, left, series.key)
    text, button = st.columns([3, 1], vertical_alignment="center")
    text.caption(f"{len(left)} series without series labels yet" + (", this one included." if series.key in left else "."))
    button.button("Next series to label", key="next_series", disabled=following is None, width="stretch",
                  on_click=st.session_state.__setitem__, args=("series", following),
                  help="The next series (after this one) none of whose photos is labeled by its stages yet.")


def band_chart(bands: dict[str, list], positions: list[int], order: list[str]) -> alt.Chart:
    """One coloured band per row (current labels, proposal, draft): a stage per image position."""
    rows = [{"row": name, "position": p, "stage": UNLABELED if pd.isna(stage) else stage}
            for name, stages in bands.items() for p, stage in zip(positions, stages)]
    domain = [*order, UNLABELED]
    colours = [STAGE_COLOURS[round(k * (len(STAGE_COLOURS) - 1) / max(len(order) - 1, 1))] for k in range(len(order))]
    return alt.Chart(pd.DataFrame(rows)).mark_rect(stroke="white").encode(
        x=alt.X("position:O", title="photo (time order)"), y=alt.Y("row:N", title=None, sort=list(bands)),
        color=alt.Color("stage:N", scale=alt.Scale(domain=domain, range=[*colours, UNLABELED_COLOUR]), sort=domain,
                        legend=alt.Legend(orient="bottom", title="stage")),
        tooltip=["row", "position", "stage"],
    ).properties(height=alt.Step(26))


def draft_key(series) -> str:
    return f"series_draft::{series.key}"


def draft_of(workspace, series) -> dict:
    """The boundaries and exclusions being placed (UI state until saved), starting from the labels
    and from the images clicked out of the series before (``before``: they stay out unless included)."""
    key = draft_key(series)
    if key not in st.session_state:
        before = set(labels.rejected_labels(workspace, series.image_ids).everything)
        st.session_state[key] = {"boundaries": dict((i, s) for s, i in labels.series_boundaries(workspace, series)),
                                 "excluded": set(before), "before": before}
    return st.session_state[key]


def save_arguments(draft: dict) -> dict:
    """The draft's exclusions as ``label_series`` takes them: those clicked now, those taken back in."""
    return {"exclude": sorted(draft["excluded"] - draft["before"]), "include": sorted(draft["before"] - draft["excluded"])}


def draft_stages(series, draft: dict) -> list[str | None]:
    current, out = None, []
    for image_id in series.image_ids:
        current = draft["boundaries"].get(image_id, current)
        out.append(None if image_id in draft["excluded"] else current)
    return out


def declare_order(workspace) -> None:
    st.info("Label a series by its stage transitions once the labels are declared as ordered stages.")
    typed = st.text_input("Stages in order, first to last", key="order_text", placeholder="e.g. U,R,V,O")
    if st.button("Declare order", key="declare_order", disabled=not typed.strip()):
        labels.add_labels(workspace, [p for p in typed.split(",") if p.strip()], ui.author(), ordered=True)
        st.rerun()


def labeling_controls(workspace, series, draft: dict, proposal) -> dict:
    """Save the draft, reset it, or accept the model's proposal (each through the library).
    Returns the draft the photos' buttons act on. A save starts the page again, so that the
    counts, the bands and the captions above show the new labels, and says what it saved there."""
    saved = st.session_state.pop(SAVED_KEY, None)
    if saved:
        st.success(ui.plain(saved))
    if draft.get("proposal") is not None:
        st.caption(ui.plain(f"Correcting model {draft['proposal_model']}'s proposal: saving costs 1 interaction plus one per "
                            "boundary you move, place or remove."))
    cols = st.columns(4)
    done = None
    if cols[0].button("Save series labels", key="save_series", type="primary", disabled=not draft["boundaries"]):
        bounds = sorted(((s, i) for i, s in draft["boundaries"].items()), key=lambda b: series.position(b[1]))
        event = labels.label_series(workspace, series, bounds, author=ui.author(), proposal=draft.get("proposal"), **save_arguments(draft))
        done = f"Labeled {event.changed} image(s) of series {series.key} ({event.interactions} interaction(s))."
    cols[1].button("Reset draft", key="reset_series", on_click=st.session_state.pop, args=(draft_key(series), None))
    if proposal is not None:
        cols[3].button("Correct proposal", key="correct_proposal", on_click=draft_from_proposal, args=(draft_key(series), proposal),
                       help="Start the draft from the model's proposal: move the boundaries it got wrong, then save.")
    if proposal is not None and cols[2].button("Accept proposal", key="accept_proposal"):
        event = labels.label_series(workspace, series, proposal.boundaries, author=ui.author(), proposal=proposal.boundaries,
                                    **save_arguments(draft))
        done = f"Accepted model {proposal.model_id}'s proposal: {event.changed} image(s) labeled ({event.interactions} interaction(s))."
    if done is None:
        return draft
    st.session_state.pop(draft_key(series))
    st.session_state[SAVED_KEY] = done
    st.rerun()


def thumbnail_buttons(item, key: str, draft: dict, stage: str) -> None:
    """Mark or unmark the first image of a stage, exclude or include the image: changes to the
    draft kept under ``key``, made in the click's callback, so a click draws the page once."""
    image_id = int(item.image_id)
    starts = draft["boundaries"].get(image_id)
    if starts is None:
        st.button(f"Starts {ui.plain(stage)}", key=f"start_{image_id}", help="First image of this stage", width="stretch", on_click=mark_start, args=(key, image_id, stage))
    else:
        st.button(f"Unmark {ui.plain(starts)}", key=f"unmark_{image_id}", type="primary", width="stretch", on_click=unmark_start, args=(key, image_id))
    excluded = image_id in draft["excluded"]
    why = "Clicked out of this series before: Include takes it back in" if excluded and image_id in draft["before"] else "Does not belong to the series"
    st.button("Include" if excluded else "Exclude", key=f"exclude_{image_id}", help=why, width="stretch", on_click=toggle_member, args=(key, image_id))


def mark_start(key: str, image_id: int, stage: str) -> None:
    """``image_id`` is the first image of ``stage`` (a stage starts once: an earlier mark moves)."""
    draft = st.session_state[key]
    draft["boundaries"] = {i: s for i, s in draft["boundaries"].items() if s != stage}
    draft["boundaries"][image_id] = stage


def draft_from_proposal(key: str, proposal) -> None:
    """The draft becomes the model's proposal (its exclusions kept); saving it then counts as
    accepting the proposal plus one interaction per boundary changed."""
    draft = st.session_state[key]
    draft["boundaries"] = {image_id: stage for stage, image_id in proposal.boundaries}
    draft["proposal"], draft["proposal_model"] = list(proposal.boundaries), proposal.model_id


def unmark_start(key: str, image_id: int) -> None:
    st.session_state[key]["boundaries"].pop(image_id, None)


def proposal_caption(proposal) -> str:
    """Where the proposal band comes from, and whether the stages' timing shaped it."""
    if proposal.time_weight > 0:
        return (f"Proposal: model {proposal.model_id}'s stage probabilities, weighted by when each stage was seen in the labeled "
                f"series (weight {proposal.time_weight:g}, chosen on held-out labeled subjects), decoded in stage order.")
    return (f"Proposal: model {proposal.model_id}'s stage probabilities decoded in stage order; stage timing not used "
            "(on held-out labeled subjects it did not help, or fewer than two subjects are labeled).")


def toggle_member(key: str, image_id: int) -> None:
    excluded = st.session_state[key]["excluded"]
    (excluded.discard if image_id in excluded else excluded.add)(image_id)


def span(times) -> float:
    """From the series' first photo to its last (days, or degree-days, count from the subject's
    first photo, so a series split by an attribute can start later)."""
    return float(times.max() - times.min()) if len(times) else 0.0


def render(workspace) -> None:
    ui.page_header("Series", "One subject's photos in time order; with ordered stages, click the first image of each new stage.")
    if workspace.db.execute("SELECT 1 FROM images LIMIT 1").fetchone() is None:
        st.info("No images yet: add some on the Collection page.")
        return
    series, keys = pick_series(workspace)
    ids = list(series.image_ids)
    details = catalog.image_details(workspace, ids)
    if has_weather(workspace):
        details["add"] = degree_days(workspace, ids)
    order = labels.vocabulary_order(workspace)
    row = st.columns(3)
    row[0].metric("Photos", len(details))
    row[1].metric("Degree-days covered" if "add" in details else "Days covered", f"{span(details.get('add', details['days'])):.0f}", help="The span from this series' first photo to its last.")
    pending = int((details["status"] == "pending").sum())
    row[2].metric("Labeled", int((details["status"] == "accepted").sum()), delta=f"{pending} pending review" if pending else None,
                  delta_color="off", delta_arrow="off", help="Accepted labels; pseudo-labels routed from a model wait on Train & route for review.")
    if order is None:
        declare_order(workspace)
        draft, stage, proposal = None, None, None
    else:
        next_series_row(workspace, series, keys)
        draft = draft_of(workspace, series)
        model_id = catalog.latest_predicting_model_id(workspace)
        proposal = None if model_id is None else propose_series(workspace, series, model_id, draft["excluded"])
        bands = {"current labels": details["label"].where(details["status"] == "accepted").tolist()}
        if proposal is not None:
            bands["proposal"] = list(proposal.stages)
        bands["draft"] = draft_stages(series, draft)
        st.altair_chart(band_chart(bands, list(range(len(ids))), order), width="stretch")
        if proposal is not None:
            st.caption(proposal_caption(proposal))
        stage = st.selectbox("Stage to place", order, key="stage", help="The stage a 'Starts' click marks the first image of.")
        draft = labeling_controls(workspace, series, draft, proposal)
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.caption("Under each photo: its date and file; **View** opens the original.")
    with right:
        display = ui.display_controls(workspace)
    ui.image_viewer(workspace, details["image_id"], display, what="of this series")
    paths = workspace.thumbnail_paths(details["image_id"].tolist())
    grid = st.grid(STRIP_COLUMNS, min_column_width=150, border=True)
    key = draft_key(series)
    for path, item in zip(paths, details.itertuples(index=False)):
        with grid.cell():
            ui.show_thumbnail(ui.shown_thumbnail(str(path), display), caption=ui.plain(describe(item)))
            st.caption(ui.plain(f"{readable_time(item.taken_at)} · {item.file} · id {item.image_id}"))
            ui.view_button(int(item.image_id))
            if draft is not None:
                thumbnail_buttons(item, key, draft, stage)
    with st.expander("As a table"):
        st.dataframe(details, hide_index=True, width="stretch")


ui.run_page(render)
