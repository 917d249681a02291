"""Cluster: group similar images (features plus metadata), choose k, split and merge clusters."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler import views as catalog
from serieslabeler.clustering import (
    ALGORITHMS,
    LINKAGES,
    evaluate_clustering,
    list_clusterings,
    merge_clusters,
    run_clustering,
    split_cluster,
    suggest_k,
)
from serieslabeler.space import SPACES
from serieslabeler.store import FeatureStore, Workspace

SPACE_NAMES = {"full": "features + metadata", "pca": "PCA of features + metadata", "tsne": "t-SNE map coordinates"}
K_RANGE = (2, 15)


@st.cache_data(show_spinner="Trying each k...", max_entries=32)
def k_curves(root: str, feature_set: str, algorithm: str, space: str, metadata: tuple, sample_id: int | None, images: int, ks: tuple[int, int]):
    """suggest_k, cached per choice (``images`` is part of the key so new features recompute it)."""
    with Workspace.open(root) as workspace:
        return suggest_k(workspace, feature_set, range(ks[0], ks[1] + 1), algorithm, space, dict(metadata), sample_id).to_dict()


def settings(workspace) -> dict | None:
    feature_set, sample_id = ui.features_and_sample(workspace, "cluster")
    if feature_set is None:
        return None
    row = st.columns(4)
    algorithm = row[0].selectbox("Algorithm", ALGORITHMS, help="k-means: fast, round clusters; agglomerative: merges nearest groups; spectral: follows curved shapes.")
    space = row[1].selectbox("Cluster on", SPACES, format_func=SPACE_NAMES.get, help="The full vectors, PCA-reduced ones, or the 2-D map.")
    k = row[2].number_input("k (clusters)", 2, 500, 4, help="Several times the number of classes (overclustering) helps with fuzzy classes.")
    seed = row[3].number_input("Seed", 0, 10_000, 0)
    params = {"linkage": st.selectbox("Linkage", LINKAGES)} if algorithm == "agglomerative" else {}
    weights = ui.metadata_weights(workspace, "cluster_weight") if space != "tsne" else {}
    return {"feature_set": feature_set, "sample_id": sample_id, "algorithm": algorithm, "space": space, "k": int(k), "seed": int(seed), "metadata": weights, **params}


def choose_k(workspace, choice: dict) -> None:
    if not st.toggle("Show the elbow and silhouette charts", help=f"Clusters for every k from {K_RANGE[0]} to {K_RANGE[1]} (nothing is saved)."):
        return
    images = FeatureStore(workspace).info(choice["feature_set"]).count
    curves = k_curves(
        str(workspace.root), choice["feature_set"], choice["algorithm"], choice["space"],
        tuple(sorted(choice["metadata"].items())), choice["sample_id"], images, K_RANGE,
    )
    rows = pd.DataFrame(curves["rows"])
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Elbow** (inertia): bend at k = {curves['elbow_k']}")
        st.altair_chart(alt.Chart(rows).mark_line(point=True).encode(x="k:O", y="inertia:Q", tooltip=["k", "inertia"]), width="stretch")
    with right:
        st.markdown(f"**Silhouette** (higher is better): best at k = {curves['silhouette_k']}")
        st.altair_chart(alt.Chart(rows).mark_line(point=True).encode(x="k:O", y="silhouette:Q", tooltip=["k", "silhouette"]), width="stretch")


def show_clustering(workspace, clustering_id: int) -> None:
    evaluation = evaluate_clustering(workspace, clustering_id)
    table = catalog.clustering_table(workspace, clustering_id, evaluation)
    row = st.columns(5)
    row[0].metric("Images", evaluation.images)
    row[1].metric("Clusters", len(table))
    if evaluation.purity is not None:
        row[2].metric("Purity", f"{evaluation.purity:.2f}", help="Share of images whose cluster's majority ground-truth class is their own.")
        row[3].metric("Adjusted Rand", f"{evaluation.adjusted_rand:.2f}")
    if evaluation.silhouette is not None:
        row[4].metric("Silhouette", f"{evaluation.silhouette:.2f}")
    st.dataframe(table, hide_index=True, width="stretch")
    st.altair_chart(
        alt.Chart(table).mark_bar().encode(x="cluster:O", y="size:Q", color=alt.Color("state:N"), tooltip=list(table.columns)),
        width="stretch",
    )
    clusters = table["cluster"].tolist()
    left, middle, right = st.columns(3)
    with left:
        chosen = st.selectbox("Cluster", clusters, key="split_cluster", help="Split it in two with k-means (k=2).")
        if st.button("Split in two", help="Makes a new clustering with this cluster split."):
            child = split_cluster(workspace, clustering_id, chosen)
            st.toast(f"Clustering {child.id}: cluster {chosen} split.")
            st.rerun()
    with middle:
        merged = st.multiselect("Clusters to merge", clusters, key="merge_clusters", help="They become one cluster (the lowest number).")
        if st.button("Merge", disabled=len(merged) < 2):
            child = merge_clusters(workspace, clustering_id, merged)
            st.toast(f"Clustering {child.id}: clusters {merged} merged.")
            st.rerun()
    with right:
        ui.page_link("label.py", "Label these clusters", ":material/label:", clustering=clustering_id)


def render(workspace) -> None:
    ui.page_header("Cluster", "Group similar images so whole groups can be labeled at once.")
    with ui.errors_shown():
        choice = settings(workspace)
        if choice is not None:
            choose_k(workspace, choice)
            if st.button("Run the clustering", type="primary"):
                with st.spinner("Clustering..."):
                    clustering = run_clustering(workspace, **choice)
                st.success(f"Clustering {clustering.id}: {len(clustering.image_ids)} images in {len(clustering.sizes())} clusters.")
    clusterings = list_clusterings(workspace)
    if not clusterings:
        st.info("No clustering yet.")
        return
    st.subheader("Clusterings")
    by_id = {c["id"]: c for c in clusterings}
    clustering_id = st.selectbox(
        "Clustering",
        list(by_id),
        format_func=lambda i: f"{i}: {by_id[i]['algorithm']} k={by_id[i]['k']} on {by_id[i]['space']}, {by_id[i]['images']} images"
        + (f" (from {by_id[i]['parent_id']})" if by_id[i]["parent_id"] else ""),
        help="Newest first; a split or merge makes a new one.",
    )
    with ui.errors_shown():
        show_clustering(workspace, clustering_id)


ui.run_page(render)
