"""Train & route: a classifier learns from the labels; its confident predictions become
pseudo-labels for review, the rest go back to clustering."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler.embed import DEVICES
from serieslabeler.labels import accept_pseudo, current_labels, reject_pseudo
from serieslabeler.loop import (
    TRUTH_SOURCES,
    ThresholdTuning,
    curve_at,
    last_event_id,
    route_mask,
    route_predictions,
    validation_curves,
)
from serieslabeler.models import (
    MODE_CONFIGS,
    MODES,
    list_models,
    load_predictions,
    predict,
    train_model,
    unlabeled_image_ids,
)
from serieslabeler.store import Workspace, queries

MODE_HELP = (
    "head: a classifier on the cached features (seconds on a CPU); finetune: the whole CNN (meant for a GPU); "
    "overcluster: a classifier plus an overclustering head whose clusters (substructures of fuzzy classes) you can label; "
    "vae: a VAE with a classifier on its latent space (name its centres on the VAE centres page first)."
)
REVIEW_LIMIT = 48


@st.cache_data(show_spinner="Scoring the validation set...", max_entries=16)
def curves(root: str, model_id: int, truth: str, target: float, labels_version: int) -> ThresholdTuning:
    """Out-of-fold precision/coverage curves (cached per model, truth source and label log position)."""
    with Workspace.open(root) as workspace:
        return validation_curves(workspace, model_id, target, truth)


def train_section(workspace) -> None:
    row = st.columns(4)
    mode = row[0].selectbox("Mode", list(MODES), help=MODE_HELP)
    with row[1]:
        feature_set = ui.feature_set_picker(workspace, "train_features", help="The features a head reads, or whose backbone a fine-tune starts from.")
    device = row[2].selectbox("Device", DEVICES, index=DEVICES.index("auto"), key="train_device")
    seed = row[3].number_input("Seed", 0, 10_000, 0, key="train_seed")
    params = mode_options(mode)
    left, right = st.columns(2)
    if left.button("Train on the accepted labels", type="primary", disabled=feature_set is None):
        bar = ui.ProgressBar("Training", unit="steps")
        record = train_model(workspace, mode, feature_set=feature_set, seed=seed, device=device, progress=bar, **params)
        bar.done()
        validation = record.metrics.get("validation") or {}
        scores = f"; validation (by subject) top-1 {validation['top1']:.2f}, macro F {validation['macro']['F']:.2f}" if "top1" in validation else ""
        st.success(f"Model {record.id} trained on {record.metrics['train_size']} labeled images{scores}.")
        if "clustering_id" in record.metrics:
            consistency = record.metrics["consistency_training"]
            st.info(f"Its {record.metrics['overclusters_used']} overclusters are clustering {record.metrics['clustering_id']} "
                    f"(consistency with your labels {consistency:.2f}).")
            ui.page_link("label.py", "Label the overclusters", ":material/label:", clustering=record.metrics["clustering_id"])
    if right.button("Predict the unlabeled images", disabled=not list_models(workspace)):
        bar = ui.ProgressBar("Predicting")
        predictions = predict(workspace, list_models(workspace)[0]["id"], device=device, progress=bar)
        bar.done()
        st.success(f"{len(predictions)} images predicted.")


def mode_options(mode: str) -> dict:
    """The main options of the semi-supervised modes (the others' defaults suit the page)."""
    if mode not in ("overcluster", "vae"):
        return {}
    defaults = MODE_CONFIGS[mode]()
    row = st.columns(3)
    params = {
        "epochs": int(row[0].number_input("Epochs", 1, 1000, defaults.epochs, key=f"{mode}_epochs")),
        "unlabeled_ratio": row[1].slider(
            "Unlabeled share of a batch", 0.0, 0.95, defaults.unlabeled_ratio, 0.05, key=f"{mode}_unlabeled_ratio",
            help="Unlabeled images fill this share of every batch (bounds the training time).",
        ),
    }
    if mode == "overcluster":
        params["overcluster_factor"] = int(row[2].number_input(
            "Overclusters per class", 2, 20, defaults.overcluster_factor, key="overcluster_factor",
            help="The overclustering head has this many outputs per labeled class.",
        ))
    else:
        params["gamma"] = row[2].number_input("Weight of the labels (gamma)", 0.0, 100.0, defaults.gamma, 0.5, key="vae_gamma")
    return params


def choose_model(workspace) -> int | None:
    models = list_models(workspace)
    if not models:
        st.info("No model yet: label some clusters, then train one above.")
        return None
    by_id = {m["id"]: m for m in models}
    return st.selectbox(
        "Model",
        list(by_id),
        format_func=lambda i: f"model {i}: {by_id[i]['mode']} on {by_id[i]['feature_set']}, {by_id[i]['training_set']} labels",
        help="Newest first.",
    )


def threshold_section(workspace, model_id: int) -> None:
    unlabeled = unlabeled_image_ids(workspace)
    predictions = load_predictions(workspace, model_id, unlabeled)
    if not len(predictions):
        st.info(f"Model {model_id} has no predictions for the unlabeled images yet: press **Predict** above.")
        return
    truth_sources = [t for t in TRUTH_SOURCES if t == "labels" or queries.has_ground_truth(workspace)]
    row = st.columns([1, 1, 2])
    truth = row[0].selectbox("Validation truth", truth_sources, help="labels: your accepted labels, predicted out of fold by subject; ground_truth: the CSV's label column.")
    target = row[1].slider("Target precision", 0.5, 1.0, 0.95, 0.01, help="The suggested threshold is the lowest one reaching it.")
    tuning = curves(str(workspace.root), model_id, truth, target, last_event_id(workspace))
    suggested = tuning.choice.threshold
    threshold = row[2].slider("Confidence threshold", 0.0, 1.0, float(round(suggested, 2)) if suggested is not None else 0.9, 0.01, help="Predictions at or above it become pseudo-labels; the rest go to clustering.")
    per_class = st.toggle("Per-class thresholds", help="A threshold per predicted class (start: each class's suggested one).")
    chosen: float | dict = threshold
    if per_class:
        classes = sorted(tuning.per_class_choice)
        columns = st.columns(max(1, min(4, len(classes))))
        chosen = {}
        for i, label in enumerate(classes):
            start = tuning.per_class_choice[label].threshold
            chosen[label] = columns[i % len(columns)].slider(f"{label}", 0.0, 1.0, float(round(start, 2)) if start is not None else 1.0, 0.01, key=f"class_threshold_{label}")
    routed = route_mask(predictions.labels, predictions.confidence, chosen)
    row = st.columns(4)
    row[0].metric("Unlabeled predicted", len(predictions))
    row[1].metric("Would be pseudo-labeled", int(routed.sum()))
    row[2].metric("Sent to clustering", int((~routed).sum()))
    overall = tuning.overall
    precision, coverage = curve_at(overall, threshold)
    row[3].metric("Validation precision at threshold", "-" if precision is None else f"{precision:.1%}", help=f"Coverage {coverage:.1%} of the validation set.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Precision and coverage** (validation set)")
        curve = pd.DataFrame({"threshold": overall.thresholds, "precision": overall.precision, "coverage": overall.coverage}).melt("threshold", var_name="measure")
        lines = alt.Chart(curve).mark_line().encode(x=alt.X("threshold:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])), color="measure:N")
        rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color="red").encode(x="threshold:Q")
        st.altair_chart(lines + rule, width="stretch")
    with right:
        st.markdown("**Confidence of the predictions** (unlabeled images)")
        histogram = pd.DataFrame({"confidence": predictions.confidence, "predicted": predictions.labels})
        bars = alt.Chart(histogram).mark_bar().encode(x=alt.X("confidence:Q", bin=alt.Bin(step=0.05), scale=alt.Scale(domain=[0, 1])), y=alt.Y("count():Q", title="images"), color="predicted:N")
        st.altair_chart(bars + rule, width="stretch")
    if st.button("Route", type="primary", help="Pseudo-label the confident predictions (pending review) and save the rest as the next sample to cluster."):
        routing = route_predictions(workspace, model_id, chosen, unlabeled)
        summary = routing.summary()
        st.success(f"{summary['pseudo_labeled']} pseudo-labeled (pending review), {summary['to_cluster']} saved as sample {summary['routed_sample']} to cluster next.")


def review_section(workspace) -> None:
    labels = current_labels(workspace)
    pending = labels[labels["status"] == "pending"]
    if pending.empty:
        st.caption("No pseudo-labels waiting for review.")
        return
    counts = pending.groupby("label").size()
    st.dataframe(counts.rename("pending").reset_index(), hide_index=True)
    label = st.selectbox("Class to review", list(counts.index))
    of_class = pending[pending["label"] == label].sort_values("confidence")
    st.caption(f"Least confident first. Tick the images that are wrong; they go back to the pool, the rest of the class is accepted. Showing {min(REVIEW_LIMIT, len(of_class))} of {len(of_class)}.")
    shown = of_class.head(REVIEW_LIMIT)
    wrong = []
    grid = st.grid(8, min_column_width=110, gap="xsmall")
    for picture, item in zip(ui.thumbnails(workspace, shown["image_id"]), shown.itertuples(index=False)):
        with grid.cell():
            st.image(picture, caption=f"{item.confidence:.2f}", width="stretch")
            if st.checkbox("wrong", key=f"wrong_{item.image_id}"):
                wrong.append(int(item.image_id))
    left, right = st.columns(2)
    if left.button(f"Reject {len(wrong)} ticked, accept the rest of this class", type="primary"):
        if wrong:
            reject_pseudo(workspace, wrong, author=ui.author())
        event = accept_pseudo(workspace, label=label, author=ui.author())
        st.success(f"{event.changed} accepted, {len(wrong)} rejected.")
    if right.button("Reject the whole class"):
        event = reject_pseudo(workspace, label=label, author=ui.author())
        st.success(f"{event.changed} rejected.")


def render(workspace) -> None:
    ui.page_header("Train & route", "Train a classifier on your labels; its confident predictions become labels to review, the rest go back to clustering.")
    st.subheader("Train and predict")
    with ui.errors_shown():
        train_section(workspace)
    st.subheader("Route by confidence")
    model_id = choose_model(workspace)
    if model_id is not None:
        with ui.errors_shown():
            threshold_section(workspace, model_id)
    st.subheader("Review pseudo-labels")
    with ui.errors_shown():
        review_section(workspace)


ui.run_page(render)
