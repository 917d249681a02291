"""VAE centres: a VAE learns the collection without labels, the expert names the centres of its
latent clusters (or splits unclear ones in two, top-down), then the VAE learns from those names.

The clustering shown lives in the page address (``clustering``); names are label events
(``label_cluster`` with a confidence p_c: every member gets p_c exp(-a d)), splits are new
clusterings, so both are in the catalog and Undo on the Label page reverts a name.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler import views as catalog
from serieslabeler.clustering import split_cluster
from serieslabeler.embed import DEVICES
from serieslabeler.labels import cluster_members, label_cluster
from serieslabeler.loop import suggested_label
from serieslabeler.models import (
    VAEConfig,
    decoded_centres,
    latent_clusterings,
    train_model,
    vae_centres,
    vae_model_of,
)

COLUMNS = 4


def settings(workspace) -> dict:
    row = st.columns([2, 1, 1])
    with row[0]:
        feature_set = ui.feature_set_picker(workspace, "vae_features", help="The vectors the VAE learns from (a backbone's features).")
    device = row[1].selectbox("Device", DEVICES, index=DEVICES.index("auto"), key="vae_device")
    seed = row[2].number_input("Seed", 0, 10_000, 0, key="vae_seed")
    return {"feature_set": feature_set, "device": device, "seed": int(seed)}


def pretrain_section(workspace, choice: dict) -> None:
    row = st.columns(4)
    k = row[0].number_input("Centres (0: from the elbow)", 0, 100, 0, help="k of the k-means on the latent vectors.")
    latent_dim = row[1].number_input("Latent dimensions", 2, 256, VAEConfig.latent_dim)
    epochs = row[2].number_input("Epochs without labels", 1, 1000, VAEConfig.pretrain_epochs, key="vae_pretrain_epochs")
    source = row[3].selectbox("The VAE reads", ["features", "images"], help=(
        "features: the feature vectors (fast; each centre is shown by its most typical image); images: the pixels, "
        "through the features' CNN (slow without a GPU; each centre is shown decoded)."
    ))
    options = {"latent_dim": int(latent_dim), "pretrain_epochs": int(epochs), "input": source}
    if source == "images":
        options["image_size"] = int(st.number_input("Image size (px)", 32, 224, VAEConfig.image_size, 16))
    if st.button("Train the VAE and cluster its latents", type="primary", disabled=choice["feature_set"] is None):
        bar = ui.ProgressBar("Training the VAE", unit="steps")
        round_ = vae_centres(workspace, choice["feature_set"], int(k) or None, seed=choice["seed"], device=choice["device"],
                             progress=bar, **options)
        bar.done()
        st.query_params["clustering"] = str(round_.clustering_id)
        st.success(f"VAE model {round_.model_id} on {round_.images} images; its latents in {round_.k} clusters (clustering {round_.clustering_id}).")


def choose_clustering(workspace) -> dict | None:
    """The clustering of VAE latents in the address, else the newest one."""
    clusterings = {c["id"]: c for c in latent_clusterings(workspace)}
    if not clusterings:
        st.info("No VAE centres yet: train the VAE above.")
        return None
    ids = list(clusterings)
    wanted = ui.int_param("clustering")
    chosen = st.selectbox(
        "Clustering of the latents", ids, index=ids.index(wanted) if wanted in clusterings else 0,
        format_func=lambda i: f"{i}: k={clusterings[i]['k']} on {clusterings[i]['feature_set']}"
        + (f" (split of {clusterings[i]['parent_id']})" if clusterings[i]["parent_id"] else ""),
        help="Newest first; a split makes a new clustering.",
    )
    st.query_params["clustering"] = str(chosen)
    return clusterings[chosen]


def centre_grid(workspace, clustering_id: int, seed: int) -> None:
    pictures = decoded_centres(workspace, clustering_id)
    status = catalog.cluster_table(workspace, clustering_id).set_index("cluster")
    thumbnails = ui.thumbnails(workspace, [p.nearest_image_id for p in pictures])
    st.caption(
        "Name each centre with a label and how sure you are (its members get that confidence, less the farther they "
        "lie from the centre), or split an unclear one in two."
    )
    columns = st.columns(COLUMNS)
    for i, (picture, thumbnail) in enumerate(zip(pictures, thumbnails)):
        key = f"{clustering_id}_{picture.cluster}"
        with columns[i % COLUMNS].container(border=True):
            if picture.is_image:
                st.image(np.transpose(picture.decoded, (1, 2, 0)), clamp=True, caption="decoded centre", width="stretch")
            else:
                ui.show_thumbnail(thumbnail, caption="image nearest the centre")
            state = status.loc[picture.cluster]
            named = f" · {ui.plain(state['top_label'])}" if isinstance(state["top_label"], str) else ""
            st.markdown(f"**Cluster {picture.cluster}** · {picture.size} images · {state['state']}{named}")
            label = ui.label_picker(workspace, f"centre_label_{key}", suggestion=suggested_label(workspace, clustering_id, picture.cluster))
            confidence = st.slider("Confidence", 0.0, 1.0, 1.0, 0.05, key=f"centre_confidence_{key}", help="p_c of this centre's label.")
            left, right = st.columns(2)
            seen = ui.seen_event(workspace, cluster_members(workspace, clustering_id, picture.cluster)[0], clustering_id, picture.cluster)
            if left.button("Name", key=f"name_{key}", type="primary", disabled=label is None):
                label_cluster(workspace, clustering_id, picture.cluster, label, author=ui.author(), cluster_confidence=confidence, expected_event_id=seen)
                st.toast(f"Cluster {picture.cluster} named {label}.")
                st.rerun()
            if right.button("Split", key=f"split_{key}", disabled=picture.size < 2, help="Re-cluster it with k=2 in latent space."):
                child = split_cluster(workspace, clustering_id, picture.cluster, seed=seed)
                st.query_params["clustering"] = str(child.id)
                st.rerun()


def train_section(workspace, clustering: dict, choice: dict) -> None:
    record, _ = vae_model_of(workspace, clustering["feature_set"])
    row = st.columns(3)
    epochs = row[0].number_input("Epochs with labels", 1, 1000, VAEConfig.epochs, key="vae_train_epochs")
    gamma = row[1].number_input("Weight of the labels (gamma)", 0.0, 100.0, VAEConfig.gamma, 0.5)
    ratio = row[2].slider("Unlabeled share of a batch", 0.0, 0.95, VAEConfig.unlabeled_ratio, 0.05, key="vae_unlabeled_ratio")
    if st.button("Train on the named centres", type="primary", help=f"Continue VAE model {record.id} with a classifier on the accepted labels (mode vae)."):
        bar = ui.ProgressBar("Training", unit="epochs")
        model = train_model(workspace, "vae", seed=choice["seed"], device=choice["device"], progress=bar, init_model=record.id,
                            epochs=int(epochs), gamma=float(gamma), unlabeled_ratio=float(ratio))
        bar.done()
        st.success(f"Model {model.id} trained on {model.metrics['train_size']} labeled images, classes {', '.join(model.classes)}.")
        ui.page_link("train.py", "Predict and route with it", ":material/model_training:")


def render(workspace) -> None:
    ui.page_header("VAE centres", "Name the centres of a VAE's clusters instead of reviewing every cluster; split the unclear ones.")
    choice = settings(workspace)
    st.subheader("1. Learn the collection without labels")
    with ui.errors_shown():
        pretrain_section(workspace, choice)
    st.subheader("2. Name the centres")
    clustering = choose_clustering(workspace)
    if clustering is None:
        return
    with ui.errors_shown():
        centre_grid(workspace, clustering["id"], choice["seed"])
    st.subheader("3. Train with the names")
    with ui.errors_shown():
        train_section(workspace, clustering, choice)


ui.run_page(render)
