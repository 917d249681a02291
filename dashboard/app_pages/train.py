"""Train & route: a classifier learns from the labels; its confident predictions become
pseudo-labels for review, the rest go back to clustering."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from serieslabeler_app import common as ui

from serieslabeler.embed import DEVICES
from serieslabeler.errors import PipelineError, for_people
from serieslabeler.labels import accept_pseudo, pending_labels, reject_pseudo, remove_labels, vocabulary_order
from serieslabeler.loop import (
    DEFAULT_AUDIT_SIZE,
    TRUTH_SOURCES,
    Confidences,
    ThresholdTuning,
    answer_audit,
    audit_answers_version,
    audit_report,
    choose_thresholds,
    confidences_version,
    curve_at,
    draw_audit,
    floor_at,
    interval_at,
    load_audit,
    measured_images,
    model_confidences,
    model_for_current_labels,
    model_seed,
    prepare_curves,
    review_context,
    route_mask,
    route_predictions,
    routing_labels,
    unlabeled_confidences,
    validation_curves,
)
from serieslabeler.metrics import declined_note
from serieslabeler.models import (
    MODE_CONFIGS,
    MODES,
    list_models,
    predict,
    train_model,
)
from serieslabeler.store import Workspace, queries
from serieslabeler.store.summary import label_counts

MODE_HELP = (
    "head: a classifier on the cached features (seconds on a CPU); finetune: the whole CNN (meant for a GPU); "
    "overcluster: a classifier plus an overclustering head whose clusters (substructures of fuzzy classes) you can label; "
    "vae: a VAE with a classifier on its latent space (name its centres on the VAE centres page first)."
)
REVIEW_LIMIT = 48
HISTOGRAM_STEP = 0.05


TRUTH_NAMES = {"labels": "your labels", "ground_truth": "the ground truth"}


@st.cache_data(show_spinner="Reading the validation set...", max_entries=16)
def curves(root: str, model_id: int, truth: str, audit_version: int) -> ThresholdTuning:
    """Precision/coverage curves from the out-of-fold probabilities stored with the model (folds
    drawn with its seed), weighted to stand for the images it routes (fixed by the model and its
    predictions); cached until an answer to one of its audits (``audit_version``) changes the
    audited precision, so a new label elsewhere computes nothing again. The thresholds for the
    chosen target are picked on each run (``choose_thresholds``), so moving it computes no curve."""
    with Workspace.open(root) as workspace:
        return validation_curves(workspace, model_id, truth=truth, seed=model_seed(workspace, model_id))


@st.cache_data(show_spinner="Reading the predictions...", max_entries=4)
def confidences(root: str, model_id: int, version: str) -> Confidences:
    """The model's calibrated predictions, decoded once per calibration and prediction run
    (``version``); each rerun then only reads which images are still unlabeled."""
    with Workspace.open(root) as workspace:
        return model_confidences(workspace, model_id)


def train_section(workspace) -> None:
    row = st.columns(4)
    mode = row[0].selectbox("Mode", list(MODES), help=MODE_HELP)
    with row[1]:
        feature_set = ui.feature_set_picker(workspace, "train_features", help="The features a head reads, or whose backbone a fine-tune starts from.")
    device = row[2].selectbox("Device", DEVICES, index=DEVICES.index("auto"), key="train_device")
    seed = row[3].number_input("Seed", 0, 10_000, 0, key="train_seed")
    params = mode_options(mode)
    left, right = st.columns(2)
    trained = left.button("Train on the accepted labels", type="primary", disabled=feature_set is None)
    existing = model_for_current_labels(workspace, mode, feature_set, int(seed), params) if trained else None
    if existing is not None:
        st.info(f"Model {existing} is already trained this way on the current labels: nothing to train again.")
    elif trained:
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
    classifiers = list_models(workspace, classifiers_only=True)
    if right.button("Predict the unlabeled images", disabled=not classifiers):
        bar = ui.ProgressBar("Predicting")
        predictions = predict(workspace, classifiers[0]["id"], device=device, progress=bar)
        bar.done()
        with st.spinner("Measuring the threshold curves (once per model)..."):
            prepare_curves(workspace, predictions.model_id)
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
    models = list_models(workspace, classifiers_only=True)
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


def confidence_histogram(predicted, confidence) -> pd.DataFrame:
    """Images per confidence bin and predicted class (the chart gets bins, not one row per image)."""
    bins = np.minimum(np.floor(np.asarray(confidence) / HISTOGRAM_STEP), 1 / HISTOGRAM_STEP - 1) * HISTOGRAM_STEP
    frame = pd.DataFrame({"confidence": bins + HISTOGRAM_STEP / 2, "predicted": predicted})
    return frame.groupby(["confidence", "predicted"]).size().rename("images").reset_index()


@st.cache_data(show_spinner="Decoding each series as ordered stages...", max_entries=4)
def decoded_confidences(root: str, model_id: int, version: str, last_event: int) -> tuple[np.ndarray, np.ndarray]:
    """The unlabeled images' labels and confidences decoded monotone along each series, as
    ``route --monotone`` thresholds them; computed again after a prediction run or a label event."""
    with Workspace.open(root) as workspace:
        decoded = routing_labels(workspace, model_id, monotone=True)
    return decoded.labels, decoded.confidence


def routing_preview(workspace, model_id: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(labels, confidences, monotone)`` of the unlabeled predicted images, as the Route button
    will threshold them: with an ordered vocabulary, decoded along each series unless turned off."""
    version = confidences_version(workspace, model_id)
    if vocabulary_order(workspace) is not None and st.toggle(
        "Decode each series as ordered stages", value=True,
        help="Read each series' predictions as one non-decreasing stage sequence (route --monotone): a photo's label "
             "and confidence come from its whole series. The curve is measured per photo; audit the routed labels to check them.",
    ):
        last_event = workspace.db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0]
        return *decoded_confidences(str(workspace.root), model_id, version, last_event), True
    return *unlabeled_confidences(workspace, model_id, confidences(str(workspace.root), model_id, version)), False


def threshold_section(workspace, model_id: int) -> None:
    predicted, confidence, monotone = routing_preview(workspace, model_id)
    if not len(predicted):
        st.info(f"Model {model_id} has no predictions for the unlabeled images yet: press **Predict** above.")
        return
    truth_sources = [t for t in TRUTH_SOURCES if t == "labels" or queries.has_ground_truth(workspace)]
    row = st.columns([1, 1, 1, 2])
    truth = row[0].selectbox(
        "Validation truth", truth_sources, format_func=TRUTH_NAMES.get,
        help="Your labels: your accepted labels, predicted out of fold by subject and weighted to stand for the unlabeled images; the ground truth: the CSV's known labels.",
    )
    target = row[1].slider("Target precision", 0.5, 1.0, 0.95, 0.01, help="The suggested threshold is the lowest one reaching it.")
    lower_bound = row[2].toggle("Target the lower bound", help="Suggest the lowest threshold whose 95% interval (the audit's, when one has answers) lies above the target, not just its estimate.")
    try:
        tuning = choose_thresholds(workspace, curves(str(workspace.root), model_id, truth, audit_answers_version(workspace, model_id)), target, lower_bound)
    except PipelineError as error:
        route_unmeasured(workspace, model_id, predicted, confidence, monotone, error)
        return
    suggested = tuning.details.get("suggested", {}).get("threshold")
    withheld = tuning.choice.withheld
    start = float(round(suggested, 2)) if suggested is not None else (1.0 if withheld else 0.9)
    threshold = row[3].slider("Confidence threshold", 0.0, 1.0, start, 0.01, help="Predictions whose calibrated confidence is at or above it become pseudo-labels; the rest go to clustering.")
    if withheld and suggested is None:
        st.warning(ui.plain(f"No threshold suggested: {withheld}"))
        missing = tuning.details["classes_without_labels"]
        if missing and st.button(ui.plain(f"The collection holds no {', '.join(missing)}: remove from the vocabulary"),
                     help="Only for classes the collection does not hold; Undo puts them back."):
            remove_labels(workspace, missing, ui.author())
            st.rerun()
    measured_on(tuning)
    per_class = st.toggle("Per-class thresholds", help="A threshold per predicted class (start: each class's suggested one).")
    chosen: float | dict = threshold
    if per_class:
        classes = sorted(tuning.per_class_choice)
        columns = st.columns(max(1, min(4, len(classes))))
        chosen = {}
        for i, label in enumerate(classes):
            start = tuning.per_class_choice[label].threshold
            chosen[label] = columns[i % len(columns)].slider(ui.plain(label), 0.0, 1.0, float(round(start, 2)) if start is not None else 1.0, 0.01, key=f"class_threshold_{label}")
    routed = route_mask(predicted, confidence, chosen)
    row = st.columns(4)
    routing_counts(row, predicted, routed)
    overall = tuning.overall
    precision, coverage = curve_at(overall, threshold)
    low, high = interval_at(overall, threshold)
    floor = floor_at(overall, threshold)
    row[3].metric("Estimated precision at threshold", "-" if precision is None else f"{precision:.1%}",
                  help="-" if low is None else f"95% interval {low:.1%} to {high:.1%}; coverage {coverage:.1%} of the unlabeled predicted images."
                  + ("" if floor is None else f" Guaranteed by the labels alone (if every image unlike them were wrong): {floor:.1%}."))
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color="red").encode(x="threshold:Q")
    left, right = st.columns(2)
    with left:
        st.markdown("**Precision (with its 95% interval) and coverage**")
        st.altair_chart(curve_chart(overall) + rule, width="stretch")
    with right:
        st.markdown("**Calibrated confidence of the predictions** (unlabeled images" + (", decoded along each series)" if monotone else ")"))
        histogram = confidence_histogram(predicted, confidence)
        bars = alt.Chart(histogram).mark_bar().encode(x=alt.X("confidence:Q", bin=alt.Bin(step=HISTOGRAM_STEP), scale=alt.Scale(domain=[0, 1])), y=alt.Y("sum(images):Q", title="images"), color="predicted:N")
        st.altair_chart(bars + rule, width="stretch")
    calibration_section(tuning.details.get("calibration"))
    route_button(workspace, model_id, chosen, monotone)


def route_unmeasured(workspace, model_id: int, predicted, confidence, monotone: bool, error: PipelineError) -> None:
    """Routing when no precision can be estimated for the model (its labels come from one subject,
    say): a threshold of the user's choosing, with what the audit is for said plainly."""
    st.info(ui.plain(f"No precision estimate for model {model_id}: {for_people(str(error))}. "
                     "You can still route at a threshold you choose; then audit the routed pseudo-labels (below) to measure their precision."))
    threshold = st.slider("Confidence threshold", 0.0, 1.0, 0.9, 0.01, key="unmeasured_threshold",
                          help="Predictions whose confidence is at or above it become pseudo-labels; the rest go to clustering.")
    routing_counts(st.columns(4), predicted, route_mask(predicted, confidence, threshold))
    route_button(workspace, model_id, threshold, monotone)


def routing_counts(row, predicted, routed) -> None:
    row[0].metric("Unlabeled predicted", len(predicted))
    row[1].metric("Would be pseudo-labeled", int(routed.sum()))
    row[2].metric("Sent to clustering", int((~routed).sum()))


def route_button(workspace, model_id: int, chosen, monotone: bool) -> None:
    if st.button("Route", type="primary", help="Pseudo-label the confident predictions of images like the labeled ones (pending review) "
                                                "and save the rest as the next sample to cluster."):
        with st.spinner("Routing: checking which images are like the labeled ones (reads every unlabeled image's vector)"):
            routing = route_predictions(workspace, model_id, chosen, monotone=monotone)
        summary = routing.summary()
        held_back = f"; of them {routing.held_back()}" if routing.held_back() else ""
        st.success(f"{summary['pseudo_labeled']} pseudo-labeled (pending review), {summary['to_cluster']} saved as sample "
                   f"{summary['routed_sample']} to cluster next{held_back}.")


def measured_on(tuning: ThresholdTuning) -> None:
    """Which labels the curve is measured against, how many, and how far to trust it."""
    measured = tuning.details["measured_on"]
    st.caption(ui.plain(
        f"Measured against {measured['labels']}: {measured_images(measured)} of {measured['subjects']} subjects, "
        f"each predicted by a model that never saw its subject ({tuning.details['split']}). Estimator: {measured['estimator']}. "
        f"Effective sample size {measured['effective_n']:.0f} of {measured['images']}; the interval says how far to trust the curve: "
        f"it counts the images of one subject as going together, so few subjects give a wide interval."
    ))
    trusted = tuning.details.get("trusted") or {}
    if trusted.get("source") == "audit":
        st.info(f"Audited precision of the routed labels: {trusted['estimate']:.1%} (95% interval {trusted['low']:.1%} to "
                f"{trusted['high']:.1%}, {trusted['n']} answers). Trust this before the curve.")


def curve_chart(curve) -> alt.Chart:
    frame = pd.DataFrame({"threshold": curve.thresholds, "precision": curve.precision, "coverage": curve.coverage,
                          "low": curve.low, "high": curve.high})
    base = alt.Chart(frame).encode(x=alt.X("threshold:Q", scale=alt.Scale(domain=[0, 1])))
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q", scale=alt.Scale(domain=[0, 1]), title="share"), y2="high:Q")
    lines = alt.Chart(frame.melt("threshold", ["precision", "coverage"], var_name="measure")).mark_line().encode(
        x="threshold:Q", y="value:Q", color="measure:N")
    return band + lines


def reliability_chart(calibration: dict) -> alt.Chart:
    rows = [{"calibration": stage, "confidence": b["mean_confidence"], "accuracy": b["accuracy"], "images": b["count"]}
            for stage in ("before", "after") for b in calibration[f"bins_{stage}"] if b["count"]]
    points = alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="mean confidence in the bin"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="share right"),
        color=alt.Color("calibration:N", sort=["before", "after"]), tooltip=["calibration", "confidence", "accuracy", "images"])
    diagonal = alt.Chart(pd.DataFrame({"confidence": [0, 1], "accuracy": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray").encode(
        x="confidence:Q", y="accuracy:Q")
    return diagonal + points


def calibration_section(calibration: dict | None) -> None:
    if not calibration:
        st.caption("No calibration: the model knows a single class, or the labels changed since it was trained (train again).")
        return
    left, right = st.columns([1, 2])
    left.metric("ECE before calibration", f"{calibration['ece_before']:.3f}")
    left.metric("ECE after calibration", f"{calibration['ece_after']:.3f}", help="Measured out of fold on your labels.")
    note = declined_note(calibration)
    left.caption(ui.plain(f"Method: {calibration['method']}, fitted on {calibration['n']} out-of-fold predictions; "
                          + (f"{note[0].upper()}{note[1:]}." if note else "applied when routing.")))
    with right:
        st.markdown("**Reliability** (dashed: perfectly calibrated)")
        st.altair_chart(reliability_chart(calibration), width="stretch")


def audit_section(workspace) -> None:
    """Draw a random audit of the pending pseudo-labels, answer it, read the precision off it."""
    row = st.columns([1, 1, 2])
    size = int(row[0].number_input("Audit size", 1, 1000, DEFAULT_AUDIT_SIZE, help="Images drawn at random, stratified by predicted class."))
    seed = int(row[1].number_input("Audit seed", 0, 10_000, 0))
    if row[2].button("Draw an audit of the pending pseudo-labels", disabled=not label_counts(workspace)["pending"],
                     help="Needs pending pseudo-labels: route first."):
        audit = draw_audit(workspace, size, seed, author=ui.author())
        st.success(f"Audit {audit.id}: {len(audit.items)} images drawn from {sum(audit.population.values())} pending pseudo-labels.")
    if workspace.db.execute("SELECT COUNT(*) FROM audits").fetchone()[0] == 0:
        st.caption("No audit yet. An audit is the one precision estimate that needs no assumption about how the labels were chosen.")
        return
    audit = load_audit(workspace)
    report = audit_report(audit)
    if report is not None:
        overall = report["overall"]
        cells = st.columns(3)
        cells[0].metric("Audited precision", f"{overall['estimate']:.1%}", help=f"95% Wilson interval {overall['low']:.1%} to {overall['high']:.1%}")
        cells[1].metric("95% interval", f"{overall['low']:.0%} to {overall['high']:.0%}")
        cells[2].metric("Answered", f"{report['answered']} of {report['drawn']}")
        st.dataframe(pd.DataFrame([{"class": k, **v} for k, v in report["per_class"].items()]), hide_index=True)
    todo = [item for item in audit.items if item.answer is None]
    if not todo:
        return
    st.caption(f"Audit {audit.id}: is each pseudo-label right? Each answer is a label (1 interaction).")
    classes = sorted(audit.population)
    answers = {}
    grid = st.grid(6, min_column_width=120, gap="xsmall")
    for picture, item in zip(ui.thumbnails(workspace, [i.image_id for i in todo]), todo):
        with grid.cell():
            ui.show_thumbnail(picture, caption=ui.plain(f"{item.predicted} {item.confidence:.2f}"))
            answers[item.image_id] = st.selectbox("answer", ["-", "correct", *[f"is {c}" for c in classes if c != item.predicted]],
                                                  key=f"audit_{audit.id}_{item.image_id}", label_visibility="collapsed")
    if st.button("Save the audit answers", type="primary"):
        save_audit_answers(workspace, answers)


def save_audit_answers(workspace, answers: dict[int, str]) -> None:
    correct = [i for i, a in answers.items() if a == "correct"]
    if correct:
        answer_audit(workspace, correct, correct=True, author=ui.author())
    corrected: dict[str, list[int]] = {}
    for image_id, answer in answers.items():
        if answer.startswith("is "):
            corrected.setdefault(answer[3:], []).append(image_id)
    for label, image_ids in corrected.items():
        answer_audit(workspace, image_ids, label=label, author=ui.author())
    st.rerun()  # the report above now includes these answers


def review_section(workspace, model_id: int | None) -> None:
    pending = pending_labels(workspace)
    if pending.empty:
        st.caption("No pseudo-labels waiting for review.")
        return
    counts = pending.groupby("label").size()
    st.dataframe(counts.rename("pending").reset_index(), hide_index=True)
    label = st.selectbox("Class to review", list(counts.index))
    of_class = pending[pending["label"] == label].sort_values("confidence")
    st.caption(f"Least confident first. Tick the images that are wrong; they go back to the pool. Showing {min(REVIEW_LIMIT, len(of_class))} of {len(of_class)}.")
    shown = of_class.head(REVIEW_LIMIT)
    feature_set = next((m["feature_set"] for m in list_models(workspace) if m["id"] == model_id), None)
    context = review_context(workspace, shown["image_id"], feature_set)
    wrong = []
    grid = st.grid(6, min_column_width=130, gap="xsmall")
    for picture, item, where in zip(ui.thumbnails(workspace, shown["image_id"]), shown.itertuples(index=False), context):
        with grid.cell():
            ui.show_thumbnail(picture)
            neighbour = "no labeled neighbour" if where.neighbour_id is None else f"nearest labeled: #{where.neighbour_id} {where.neighbour_label}"
            st.caption(ui.plain(f"{where.subject}, {where.date} (day {where.day})  \n{item.label} {item.confidence:.2f}  \n{neighbour}"))
            if st.checkbox("wrong", key=f"wrong_{item.image_id}"):
                wrong.append(int(item.image_id))
    rest = len(of_class) - len(wrong)
    unseen = len(of_class) - len(shown)
    sure = st.checkbox(f"Yes: label {rest} images as {ui.plain(label)}" + (f" ({unseen} of them not shown here)" if unseen else ""), key=f"confirm_{label}")
    left, right = st.columns(2)
    if left.button(f"Reject {len(wrong)} ticked, accept the other {rest} of class {ui.plain(label)}", type="primary", disabled=not sure):
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
    st.subheader("Audit the routed pseudo-labels")
    with ui.errors_shown():
        audit_section(workspace)
    st.subheader("Review pseudo-labels")
    with ui.errors_shown():
        review_section(workspace, model_id)


ui.run_page(render)
