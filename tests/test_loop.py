"""Routing, smoothing, evaluation on held-out subjects, and the iteration loop on real bananas features."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cli

from serieslabeler.errors import PipelineError
from serieslabeler.labels import add_labels, current_labels, interaction_count, label_images
from serieslabeler.loop import (
    AWAITING,
    IterateConfig,
    evaluate_model,
    ground_truth,
    held_out_subjects,
    iterate,
    label_with_oracle,
    list_iterations,
    route_mask,
    route_predictions,
    smooth_along_series,
    thresholds_for,
)
from serieslabeler.models import predict, train_model
from serieslabeler.sampling import load_sample
from serieslabeler.store import Workspace

FEATURES = "efficientnet_lite0@imagenet"


@pytest.fixture
def workspace(bananas_embedded):
    with Workspace.open(bananas_embedded) as ws:
        yield ws


def label_subjects_with_truth(ws: Workspace, subject_ids) -> np.ndarray:
    ids, truth, subjects = ground_truth(ws)
    chosen = np.isin(subjects, subject_ids)
    for label in np.unique(truth[chosen]):
        label_images(ws, ids[chosen & (truth == label)], label, author="test")
    return ids[chosen]


def test_route_mask_global_and_per_class():
    labels = np.array(["a", "b", "c", "a"])
    confidence = np.array([0.95, 0.7, 0.99, 0.5])
    assert route_mask(labels, confidence, 0.9).tolist() == [True, False, True, False]
    assert route_mask(labels, confidence, 0.5).tolist() == [True, True, True, True]  # at the threshold counts
    per_class = {"a": 0.9, "b": 0.6, "c": None}
    assert route_mask(labels, confidence, per_class).tolist() == [True, True, False, False]
    assert np.isinf(thresholds_for(["z"], per_class)[0])  # a class without a threshold is never auto-labeled
    with pytest.raises(PipelineError, match="between 0 and 1"):
        route_mask(labels, confidence, 1.5)


def test_majority_vote_along_each_subjects_series():
    classes = np.array(["a", "b"])
    # subject 1 over four days: a, b (an outlier), a, a; subject 2: b alone
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    subjects = np.array([1, 1, 1, 1, 2])
    times = np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-02"])
    labels, confidence = smooth_along_series(proba, classes, subjects, times, window=3)
    assert labels.tolist() == ["a", "a", "a", "a", "b"]
    assert confidence[1] == pytest.approx((0.9 + 0.4 + 0.8) / 3)
    unchanged, own = smooth_along_series(proba, classes, subjects, times, window=0)
    assert unchanged.tolist() == ["a", "b", "a", "a", "b"] and own[1] == 0.6
    shuffled = [3, 0, 4, 2, 1]  # the vote follows time order, not row order
    again, _ = smooth_along_series(proba[shuffled], classes, subjects[shuffled], times[shuffled], window=3)
    assert again.tolist() == labels[shuffled].tolist()


def test_routing_puts_every_image_in_exactly_one_place(workspace):
    label_subjects_with_truth(workspace, np.unique(ground_truth(workspace)[2])[:6])
    model = train_model(workspace, "head", feature_set=FEATURES)
    predictions = predict(workspace, model.id)
    routing = route_predictions(workspace, model.id, 0.8, smoothing_window=3)
    pseudo, rest = set(routing.pseudo_ids.tolist()), set(routing.to_cluster_ids.tolist())
    assert not pseudo & rest
    assert pseudo | rest == set(predictions.image_ids.tolist())
    assert pseudo and rest, "threshold 0.8 should split these predictions"
    labels = current_labels(workspace).set_index("image_id")
    assert (labels.loc[sorted(pseudo), "status"] == "pending").all()
    assert (labels.loc[sorted(pseudo), "source"] == "pseudo").all()
    assert not set(labels.index) & rest
    sample = load_sample(workspace, routing.sample_id)
    assert sample.strategy == "routed" and set(sample.image_ids.tolist()) == rest


def test_evaluation_holds_out_whole_subjects_and_refits_if_needed(workspace):
    held = held_out_subjects(workspace, 0.3, seed=0)
    assert len(held) == 3
    ids, _, subjects = ground_truth(workspace)
    label_subjects_with_truth(workspace, np.setdiff1d(np.unique(subjects), held))
    clean = train_model(workspace, "head", feature_set=FEATURES)
    evaluation = evaluate_model(workspace, clean.id)
    assert evaluation.test_images == int(np.isin(subjects, held).sum()) and not evaluation.optimistic
    assert "stored model" in evaluation.method
    assert evaluation.report["macro"]["F"] > 0.4
    label_subjects_with_truth(workspace, held)  # now the model sees the held-out subjects too
    leaky = train_model(workspace, "head", feature_set=FEATURES)
    refitted = evaluate_model(workspace, leaky.id)
    assert "refitted without the 60 training images" in refitted.method and not refitted.optimistic
    assert refitted.report["macro"]["F"] == pytest.approx(evaluation.report["macro"]["F"])
    code, data = cli("evaluate", "--workspace", workspace.root)
    assert code == 0 and data["held_out_subjects"] == evaluation.held_out_subjects
    assert "GroupShuffleSplit" in data["split"]


def test_iterate_stops_for_labels_then_trains_predicts_and_routes(workspace):
    config = IterateConfig(features="efficientnet_lite0", metadata={"days": 0.5}, subjects=3, threshold=0.99, seed=1)
    first = iterate(workspace, config)
    assert first.iteration.status == AWAITING and "label the clusters of clustering" in first.message
    assert iterate(workspace, config).iteration.id == first.iteration.id  # nothing labeled yet: same request
    held = held_out_subjects(workspace, seed=1)
    sample = load_sample(workspace, first.iteration.sample_id)
    rows = workspace.query_in("SELECT subject_id FROM images WHERE id IN ({})", sample.image_ids)
    assert not {r[0] for r in rows} & set(held.tolist()), "the held-out subjects were sampled"

    label_with_oracle(workspace, first.iteration.clustering_id, 0.8)  # stands in for the expert
    done = iterate(workspace, config)
    record = done.iteration.record
    assert done.iteration.status == "done" and done.iteration.model_id is not None
    labels = current_labels(workspace)
    assert record["interactions"] == interaction_count(workspace)  # measured 8
    assert record["labels_added"]["cluster"] == int((labels["source"] == "cluster").sum()) > 10  # measured 19
    routed = record["routing"]["pseudo_labeled"] + record["routing"]["to_cluster"]
    outside_held_out = workspace.query_in("SELECT id FROM images WHERE subject_id NOT IN ({})", held.tolist())
    assert routed == len({r[0] for r in outside_held_out} - set(labels["image_id"].tolist()))  # measured 141
    assert record["evaluation"]["held_out_subjects"] and "stored model" in record["evaluation"]["method"]

    second = iterate(workspace, config, oracle=True)
    assert second.iteration.sample_id == record["routing"]["routed_sample"] or load_sample(
        workspace, second.iteration.sample_id).strategy == "routed"
    assert [r.status for r in list_iterations(workspace)] == ["done", "done"]
    code, data = cli("iterations", "--workspace", workspace.root)
    assert code == 0 and len(data["iterations"]) == 2


def test_iterate_to_a_target_precision_routes_nothing_uncertain_while_a_class_has_no_label(workspace):
    add_labels(workspace, ["U", "R", "V", "O", "Never seen"])
    config = IterateConfig(features="efficientnet_lite0", metadata={"days": 0.5}, subjects=3, target_precision=0.8, seed=1)
    first = iterate(workspace, config)
    label_with_oracle(workspace, first.iteration.clustering_id, 0.8)
    done = iterate(workspace, config)
    tuning = done.iteration.record["threshold_tuning"]
    assert tuning["threshold"] is None and "Never seen" in tuning["withheld"]
    assert "no threshold suggested" in done.message
    pseudo = current_labels(workspace).query("source == 'pseudo'")
    assert (pseudo["confidence"] >= 1.0 - 1e-9).all()  # routed at threshold 1: only the certain ones


def test_cli_route_and_thresholds(workspace):
    label_subjects_with_truth(workspace, np.unique(ground_truth(workspace)[2])[:8])
    code, data = cli("train", "--workspace", workspace.root, "--features", FEATURES)
    assert code == 0
    code, data = cli("thresholds", "--workspace", workspace.root, "--target", "0.9")
    assert code == 0 and data["images"] == 160 and set(data["per_class"]) <= {"O", "R", "U", "V"}
    assert data["overall"]["coverage"][0] == 1.0
    cli("predict", "--workspace", workspace.root)
    code, data = cli("route", "--workspace", workspace.root, "--class-thresholds", "O=0.8,V=0.9")
    assert code == 0 and data["pseudo_labeled"] + data["to_cluster"] == 60
    with pytest.raises(SystemExit):  # a threshold is required
        cli("route", "--workspace", workspace.root)


@pytest.mark.parametrize("test_size", ["0", "1", "-0.5", "nan"])
def test_cli_evaluate_refuses_a_test_size_outside_0_to_1(workspace, test_size):
    code, data = cli("evaluate", "--workspace", workspace.root, "--test-size", test_size)
    assert code == 2 and data["error"].startswith("--test-size must be strictly between 0 and 1"), data


@pytest.mark.parametrize(("options", "message"), [
    (["--threshold", "0.9", "--smooth", "-3"], "--smooth must be 0 (off) or an odd number of predictions"),
    (["--threshold", "0.9", "--smooth", "2"], "--smooth must be 0 (off) or an odd number of predictions"),
    (["--class-thresholds", "O=0.9,bogus=0.9"], "--class-thresholds: the model has no class bogus; its classes are O, R, U, V"),
    (["--class-thresholds", "O=0.9,V"], "--class-thresholds: 'V' is not NAME=NUMBER (e.g. O=0.9,R=0.8)"),
])
def test_cli_route_refuses_a_bad_smoothing_window_and_classes_the_model_does_not_know(workspace, options, message):
    label_subjects_with_truth(workspace, np.unique(ground_truth(workspace)[2])[:8])
    assert cli("train", "--workspace", workspace.root, "--features", FEATURES)[0] == 0
    assert cli("predict", "--workspace", workspace.root)[0] == 0
    code, data = cli("route", "--workspace", workspace.root, *options)
    assert code == 2 and data["error"].startswith(message), data
