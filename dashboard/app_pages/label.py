"""Label: one cluster at a time, most atypical images first; click out the misfits, name the rest.

Where the labeler is (clustering, cluster, the images clicked out so far, and those clicked back
in) lives in the page address, so a reload or a bookmark comes back to the same place; every
action is an event in the workspace's label log, so Undo works across reloads, tabs and the
command line. An image the labeler took the chosen label from before (clicked out of a cluster
of it, its pseudo-label rejected) is shown clicked out already, at no cost: ``label_cluster``
leaves it out unless it is clicked back in.
"""
from __future__ import annotations

import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler import views as catalog
from serieslabeler.clustering import list_clusterings
from serieslabeler.labels import (
    end_session,
    interaction_count,
    exclusions,
    label_cluster,
    latest_event_id,
    rejected_members,
    open_session,
    redo,
    review_order,
    session_stats,
    skip_cluster,
    undo,
)
from serieslabeler.loop import next_step, suggested_label

PAGE_SIZES = (50, 100, 200)
COLUMNS = 8
SHORTCUTS = "Keys: **L** label · **S** skip · **←/→** previous/next cluster · **U** undo · **Shift+U** redo"


# --- the place in the address ------------------------------------------------------------------
CLICKED_OUT, CLICKED_IN = "x", "in"  # the images clicked out, and those rejected before but clicked back in


def address_ids(key: str) -> set[int]:
    text = st.query_params.get(key, "")
    return {int(part) for part in text.split(",") if part.strip().isdigit()}


def set_address_ids(key: str, ids: set[int]) -> None:
    if ids:
        st.query_params[key] = ",".join(str(i) for i in sorted(ids))
    elif key in st.query_params:
        del st.query_params[key]


def toggle(key: str, image_id: int) -> None:
    set_address_ids(key, address_ids(key) ^ {image_id})


def open_clustering(clustering_id: int) -> None:
    st.query_params["clustering"] = str(clustering_id)
    for key in ("cluster", CLICKED_OUT, CLICKED_IN):
        if key in st.query_params:
            del st.query_params[key]


def open_cluster(clustering_id: int, cluster: int) -> None:
    st.query_params["clustering"] = str(clustering_id)
    st.query_params["cluster"] = str(cluster)
    set_address_ids(CLICKED_OUT, set())
    set_address_ids(CLICKED_IN, set())
    if ui.VIEW_PARAM in st.query_params:
        del st.query_params[ui.VIEW_PARAM]


# --- parts of the page -------------------------------------------------------------------------
def choose_cluster(status) -> int:
    """The cluster in the address, else the first one still open, else the first."""
    clusters = status["cluster"].tolist()
    wanted = ui.int_param("cluster")
    if wanted in clusters:
        return wanted
    still_open = status.loc[status["state"] == "open", "cluster"].tolist()
    return (still_open or clusters)[0]


def next_open(status, after: int) -> int | None:
    """The next open cluster after ``after`` in cluster order (wrapping around), if any.

    ``status`` may predate labeling or skipping ``after``: that cluster is never the answer, so the
    page moves on without counting the clustering's members again."""
    still_open = [c for c in status.loc[status["state"] == "open", "cluster"] if c != after]
    later = [c for c in still_open if c > after]
    return (later or still_open or [None])[0]


def progress_header(workspace, status, cluster: int, session_id: int) -> None:
    done = int((status["state"] != "open").sum())
    st.progress(done / len(status), text=f"{done} of {len(status)} clusters done · {int((status['state'] == 'labeled').sum())} labeled, {int((status['state'] == 'skipped').sum())} skipped")
    stats = session_stats(workspace, session_id)
    row = st.columns(5)
    row[0].metric("Cluster", f"{cluster}", help="Clusters are numbered by size, largest first.")
    row[1].metric("Interactions (session)", stats.interactions, help="One per cluster labeled or skipped, plus one per image clicked out.")
    row[2].metric("Images labeled (session)", stats.images_labeled)
    row[3].metric("Images / minute", f"{stats.images_per_minute:.1f}" if stats.images_per_minute and stats.minutes >= 1 else "-", help="Over this session, shown after its first minute.")
    row[4].metric("Interactions (all)", interaction_count(workspace))


def action_bar(workspace, status, clustering_id: int, cluster: int, members, session_id: int) -> tuple[set[int], set[int]]:
    """Label, skip, move, undo and redo; each runs as the click's callback, before the page is drawn again.
    Returns the images clicked out (by the labeler, or before for the chosen label) and, of
    those, the ones clicked out before."""
    clusters = status["cluster"].tolist()
    position = clusters.index(cluster)
    state = status.loc[status["cluster"] == cluster, "state"].iloc[0]
    top = status.loc[status["cluster"] == cluster, "top_label"].iloc[0]
    caption = st.empty()
    bar = st.container(horizontal=True, vertical_alignment="bottom")
    with bar:
        label = ui.label_picker(workspace, f"label_{clustering_id}_{cluster}", suggestion=suggested_label(workspace, clustering_id, cluster), width=200)
    before = set() if label is None else {int(i) for i in rejected_members(workspace, members, label)}
    clicked_out = (address_ids(CLICKED_OUT) & {int(i) for i in members}) - before
    clicked_in = address_ids(CLICKED_IN) & before
    left_out = exclusions(clicked_out, clicked_in, before)
    excluded = set(left_out.out)
    caption.caption(
        f"{len(members)} images · {state}" + (f" · most labeled: {ui.plain(top)}" if isinstance(top, str) else "")
        + f" · **{len(excluded)} clicked out** (they stay unlabeled)"
        + (f" · {len(left_out.rejected_before)} of them because you took {ui.plain(label)} from them before (click one to take it back)"
           if left_out.rejected_before else "")
    )
    author = ui.author()
    shown = latest_event_id(workspace)
    following = next_open(status, cluster)
    then = cluster if following is None else following
    bar.button(
        f"Label {len(members) - len(excluded)} images", type="primary", shortcut="L", disabled=label is None, icon=":material/check:",
        help="Choose a label first." if label is None else f"Give the cluster the label {ui.plain(label)}.",
        on_click=ui.workspace_action,
        args=(label_and_move_on, clustering_id, cluster, label, sorted(clicked_out), sorted(clicked_in), author, session_id, shown, then),
    )
    bar.button(
        "Skip", shortcut="S", help="No dominant class: leave the cluster unlabeled.", icon=":material/block:",
        on_click=ui.workspace_action, args=(skip_and_move_on, clustering_id, cluster, author, session_id, shown, then),
    )
    bar.button("Previous", shortcut="Left", disabled=position == 0, icon=":material/arrow_back:", on_click=open_cluster, args=(clustering_id, clusters[max(position - 1, 0)]))
    bar.button("Next", shortcut="Right", disabled=position == len(clusters) - 1, icon=":material/arrow_forward:", on_click=open_cluster, args=(clustering_id, clusters[min(position + 1, len(clusters) - 1)]))
    anyone = st.session_state.get("undo_any_author", False)
    for redoing, (name, shortcut, icon) in enumerate((("Undo", "U", ":material/undo:"), ("Redo", "Shift+U", ":material/redo:"))):
        bar.button(name, shortcut=shortcut, icon=icon, on_click=ui.workspace_action, args=(undo_or_redo, bool(redoing), clustering_id, author, session_id, anyone))
    bar.checkbox("Others' too", key="undo_any_author", help="Off: Undo and Redo act on your own latest actions. On: on anyone's (the log records whose).")
    return excluded, before


# --- the actions (run as callbacks) ------------------------------------------------------------
def label_and_move_on(workspace, clustering_id: int, cluster: int, label: str, excluded: list[int], include: list[int], author: str,
                      session_id: int, shown: int, then: int) -> None:
    """Label the cluster except the clicked-out images (and those ``label`` was taken from before,
    unless clicked back in: ``include``), then open ``then``; refused when someone changed the
    cluster's images after ``shown``, the log's latest event when the page was drawn."""
    label_cluster(workspace, clustering_id, cluster, label, excluded=excluded, author=author, session_id=session_id, expected_event_id=shown,
                  include=include)
    st.toast(f"Cluster {cluster} labeled {ui.plain(label)}.")
    open_cluster(clustering_id, then)


def skip_and_move_on(workspace, clustering_id: int, cluster: int, author: str, session_id: int, shown: int, then: int) -> None:
    skip_cluster(workspace, clustering_id, cluster, author=author, session_id=session_id, expected_event_id=shown)
    open_cluster(clustering_id, then)


def undo_or_redo(workspace, redoing: bool, clustering_id: int, author: str, session_id: int, anyone: bool) -> None:
    """Undo (or redo) this labeler's latest action (anyone's with ``anyone``) and show its cluster."""
    if redoing:
        events = [redo(workspace, author=author, session_id=session_id, any_author=anyone)]
    else:
        events = undo(workspace, author=author, session_id=session_id, any_author=anyone)
    action = (events[0].details.get("undoes") or events[0].action).replace("_", " ")
    st.toast(f"{'Redone' if redoing else 'Undone'}: {action}.")
    if events[0].clustering_id == clustering_id and events[0].cluster is not None:
        open_cluster(clustering_id, events[0].cluster)


def image_grid(workspace, clustering_id: int, cluster: int, members, excluded: set[int], before: set[int]) -> None:
    left, middle, right = st.columns([4, 1, 1], vertical_alignment="bottom")
    left.caption("Most atypical first (farthest from the cluster's centre). Click **Exclude** under an image that does not belong; click again to take it back. **View** opens the original.")
    with middle:
        display = ui.display_controls(workspace)
    size = right.selectbox("Per page", PAGE_SIZES, index=1, key="page_size")
    ui.image_viewer(workspace, members, display, what=f"of cluster {cluster}")
    pages = (len(members) + size - 1) // size
    page = st.pagination(pages, key=f"page_{clustering_id}_{cluster}") if pages > 1 else 1
    shown = members[(page - 1) * size : page * size]
    paths = workspace.thumbnail_paths(shown)
    grid = st.grid(COLUMNS, min_column_width=110, gap="xsmall")
    for image_id, path in zip(shown, paths):
        out = int(image_id) in excluded
        with grid.cell():
            ui.show_thumbnail(ui.excluded_thumbnail(str(path)) if out else ui.shown_thumbnail(str(path), display))
            actions = st.container(horizontal=True, gap="small", horizontal_alignment="center")
            with actions:
                ui.view_button(int(image_id))
            actions.button(
                "Excluded" if out else "Exclude",
                key=f"toggle_{image_id}",
                type="primary" if out else "tertiary",
                icon=":material/close:" if out else None,
                help="Clicked out before for this label: click to label it with the others." if int(image_id) in before and out else None,
                on_click=toggle,
                args=(CLICKED_IN if int(image_id) in before else CLICKED_OUT, int(image_id)),
            )


def offer_next_step(workspace, clustering_id: int) -> None:
    """After the last cluster: train on the new labels, or cluster what is still unlabeled."""
    step = next_step(workspace, clustering_id)
    if step is None:
        return
    st.success(step.message)
    if step.action == "train":
        ui.page_link("train.py", "Train & route", ":material/model_training:")
    else:
        ui.page_link("sample.py", "Sample the unlabeled images, then cluster them", ":material/shuffle:")


def render(workspace) -> None:
    ui.page_header("Label", "One cluster at a time: click out the images that do not belong, then name the cluster. " + SHORTCUTS)
    clusterings = {c["id"]: c for c in list_clusterings(workspace)}
    if not clusterings:
        st.info("No clustering yet: make one on the Cluster page.")
        ui.page_link("cluster.py", "Go to Cluster", ":material/bubble_chart:")
        return
    clustering_id = ui.int_param("clustering") if ui.int_param("clustering") in clusterings else next(iter(clusterings))
    st.selectbox(
        "Clustering",
        list(clusterings),
        index=list(clusterings).index(clustering_id),
        format_func=lambda i: f"{i}: {clusterings[i]['algorithm']} k={clusterings[i]['k']}, {clusterings[i]['images']} images",
        key=f"clustering_{clustering_id}",
        on_change=lambda: open_clustering(st.session_state[f"clustering_{clustering_id}"]),
        help="Newest first; the Cluster page makes new ones.",
        width=420,
    )
    status = catalog.cluster_table(workspace, clustering_id)
    if status.empty:
        st.info(f"Clustering {clustering_id} has no clusters.")
        return
    cluster = choose_cluster(status)
    session_id = open_session(workspace, ui.author())
    progress_header(workspace, status, cluster, session_id)
    offer_next_step(workspace, clustering_id)
    members = review_order(workspace, clustering_id, cluster)
    excluded, before = action_bar(workspace, status, clustering_id, cluster, members, session_id)
    image_grid(workspace, clustering_id, cluster, members, excluded, before)
    with st.expander("Labeling session"):
        st.caption(f"Session {session_id} counts this labeler's interactions and speed; ending it stops its timer (the next visit starts a new one).")
        if st.button("End the session"):
            stats = end_session(workspace, session_id)
            st.success(f"Session {stats.id} ended: {stats.images_labeled} images in {stats.minutes:.1f} minutes, {stats.interactions} interactions.")


ui.run_page(render)
