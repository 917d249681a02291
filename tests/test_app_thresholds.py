"""The Train & route page: what the curve is measured on, calibration before/after, the audit,
and the review grid's context and confirmation, through the real app (AppTest)."""
from __future__ import annotations

from test_app import (
    assert_clean,
    button,
    label_two_clusters_by_their_majority,
    metric,
    run_page,
    sample,  # noqa: F401 (a fixture)
)

from serieslabeler.labels import add_labels, current_labels, interaction_count, label_images, pending_labels, reject_pseudo, vocabulary
from serieslabeler.store import Workspace


def trained_and_routed(sample_root):
    label_two_clusters_by_their_majority(sample_root)
    app = run_page("train")
    button(app, "Train on the accepted labels").click().run()
    button(app, "Predict the unlabeled images").click().run()
    assert_clean(app)
    return app


def test_the_page_says_what_the_curve_is_measured_on_and_shows_calibration(sample):  # noqa: F811 (the imported fixture)
    app = trained_and_routed(sample)
    captions = " ".join(c.value for c in app.caption)
    assert "Measured against your accepted labels" in captions and "Effective sample size" in captions
    assert float(metric(app, "ECE after calibration")) >= 0 and float(metric(app, "ECE before calibration")) >= 0
    assert metric(app, "Estimated precision at threshold")
    assert len(app.get("vega_lite_chart")) >= 3  # curve, histogram, reliability diagram


def test_a_class_of_the_vocabulary_without_labels_withholds_the_suggestion_and_says_why(sample):  # noqa: F811 (the imported fixture)
    label_two_clusters_by_their_majority(sample)
    with Workspace.open(sample) as workspace:
        add_labels(workspace, ["Never labeled"])
    app = run_page("train")
    button(app, "Train on the accepted labels").click().run()
    button(app, "Predict the unlabeled images").click().run()
    assert_clean(app)
    warnings = " ".join(w.value for w in app.warning)
    assert "No threshold suggested" in warnings and "Never labeled" in warnings
    assert next(s for s in app.slider if s.label == "Confidence threshold").value == 1.0
    button(app, "The collection holds no Never labeled").click().run()  # the same stored curves now suggest one
    assert_clean(app)
    assert not app.warning and next(s for s in app.slider if s.label == "Confidence threshold").value < 1.0
    with Workspace.open(sample) as workspace:
        assert "Never labeled" not in vocabulary(workspace)


def test_a_class_with_a_handful_of_labels_withholds_the_suggestion_and_offers_no_removal(sample):  # noqa: F811 (the imported fixture)
    label_two_clusters_by_their_majority(sample)
    with Workspace.open(sample) as workspace:
        labeled = set(current_labels(workspace)["image_id"])
        unlabeled = [i for (i,) in workspace.db.execute("SELECT id FROM images ORDER BY id") if i not in labeled][:3]
        label_images(workspace, unlabeled, "Rare")
    app = run_page("train")
    button(app, "Train on the accepted labels").click().run()
    button(app, "Predict the unlabeled images").click().run()
    assert_clean(app)
    warnings = " ".join(w.value for w in app.warning)
    assert "No threshold suggested" in warnings and "fewer than 10 labels of Rare (3)" in warnings.replace("\\", "")  # as typed, not escaped
    assert next(s for s in app.slider if s.label == "Confidence threshold").value == 1.0
    assert not [b for b in app.button if "holds no" in b.label]  # the collection does hold it: nothing to remove


def test_an_audit_is_drawn_answered_and_reported_on_the_page(sample):  # noqa: F811 (the imported fixture)
    app = trained_and_routed(sample)
    next(s for s in app.slider if s.label == "Confidence threshold").set_value(0.0).run()
    button(app, "Route").click().run()
    next(n for n in app.number_input if n.label == "Audit size").set_value(6).run()
    button(app, "Draw an audit").click().run()
    assert_clean(app)
    answers = [s for s in app.selectbox if s.key and s.key.startswith("audit_")]
    assert len(answers) == 6
    with Workspace.open(sample) as workspace:
        before = interaction_count(workspace)
    for box in answers:
        box.set_value("correct")
    app.run()
    button(app, "Save the audit answers").click().run()
    assert_clean(app)
    assert metric(app, "Answered") == "6 of 6"
    assert metric(app, "Audited precision") == "100.0%"
    with Workspace.open(sample) as workspace:
        assert interaction_count(workspace) - before == 6
        assert (current_labels(workspace)["source"] == "pseudo").sum() >= 6


def test_accepting_the_rest_of_a_class_names_the_count_and_needs_a_confirmation(sample):  # noqa: F811 (the imported fixture)
    app = trained_and_routed(sample)
    next(s for s in app.slider if s.label == "Confidence threshold").set_value(0.0).run()
    button(app, "Route").click().run()
    captions = " ".join(c.value for c in app.caption).replace("\\", "")  # ui.plain escapes markdown
    assert "nearest labeled: #" in captions and "(day " in captions
    accept = button(app, "Reject 0 ticked, accept the other")
    assert accept.disabled
    confirm = next(c for c in app.checkbox if c.label.startswith("Yes: label "))
    count = int(confirm.label.split()[2])
    confirm.check().run()
    accept = button(app, "Reject 0 ticked, accept the other")
    assert not accept.disabled
    accept.click().run()
    assert_clean(app)
    assert any(f"{count} accepted" in s.value for s in app.success)


def test_routing_again_leaves_out_the_pseudo_labels_the_expert_rejected_and_says_so(sample):  # noqa: F811 (the imported fixture)
    app = trained_and_routed(sample)
    next(s for s in app.slider if s.label == "Confidence threshold").set_value(0.0).run()
    button(app, "Route").click().run()
    with Workspace.open(sample) as workspace:
        rejected = pending_labels(workspace)["image_id"].tolist()[:3]
        reject_pseudo(workspace, rejected, author="expert")
    app.run()
    button(app, "Route").click().run()
    assert_clean(app)
    assert any("3 confident in a label the expert rejected" in s.value for s in app.success), [s.value for s in app.success]
    with Workspace.open(sample) as workspace:
        assert not set(rejected) & set(pending_labels(workspace)["image_id"].tolist())


def test_labels_of_one_subject_give_no_estimate_but_routing_at_a_chosen_threshold(sample):  # noqa: F811 (the imported fixture)
    """Subject-grouped validation needs two labeled subjects; with one, the page says so and still routes."""
    with Workspace.open(sample) as workspace:
        subject = workspace.db.execute("SELECT subject_id FROM images ORDER BY id LIMIT 1").fetchone()[0]
        rows = workspace.db.execute(
            "SELECT i.id, g.label FROM images i JOIN ground_truth g ON g.image_id = i.id WHERE i.subject_id=? ORDER BY i.taken_at", (subject,),
        ).fetchall()
        for label in {label for _, label in rows}:
            label_images(workspace, [i for i, truth in rows if truth == label], label)
    app = run_page("train")
    button(app, "Train on the accepted labels").click().run()
    button(app, "Predict the unlabeled images").click().run()
    assert_clean(app)
    assert "No precision estimate" in " ".join(i.value for i in app.info)
    next(s for s in app.slider if s.label == "Confidence threshold").set_value(0.0).run()
    button(app, "Route").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert len(pending_labels(workspace)) > 0
