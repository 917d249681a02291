"""Honest threshold curves (grouped out-of-fold, weighted for how labels were chosen), calibration
stored with the model and applied when routing, and the audit of routed pseudo-labels, on real
bananas features through the workspace and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli

from serieslabeler.clustering import run_clustering
from serieslabeler.labels import add_labels, current_labels, interaction_count, label_images, remove_labels, undo
from serieslabeler.loop import threshold
from serieslabeler.loop import (
    answer_audit,
    audit_answers_version,
    choose_thresholds,
    curve_sample,
    draw_audit,
    draw_pool_ids,
    ground_truth,
    label_with_oracle,
    last_event_id,
    load_calibration,
    measured_images,
    model_oof,
    routed_pool,
    tune_thresholds,
    validation_curves,
)
from serieslabeler.metrics import (
    clustered_effective_sizes,
    effective_sample_size,
    importance_weights,
    nearest_other_subject_distance,
)
from serieslabeler.models import grouped_folds, load_model_record, predict, train_model
from serieslabeler.sampling import draw_sample
from serieslabeler.store import Workspace

FEATURES = "efficientnet_lite0@imagenet"


@pytest.fixture
def workspace(bananas_embedded):
    with Workspace.open(bananas_embedded) as ws:
        yield ws


def label_like_a_user(ws: Workspace, subjects: int = 6, seed: int = 0) -> None:
    """Cluster a structure-aware sample and let the ground truth name clusters at 80% purity."""
    sample = draw_sample(ws, "subjects", subjects=subjects, seed=seed)
    clustering = run_clustering(ws, FEATURES, "kmeans", 12, metadata={"days": 0.5}, sample_id=sample.id, seed=seed)
    label_with_oracle(ws, clustering.id, 0.8)


def routed(ws: Workspace, threshold: float = 0.5, **train) -> int:
    model = train_model(ws, "head", feature_set=FEATURES, **train)
    predict(ws, model.id)
    return model.id


def test_grouped_folds_never_share_a_subject(workspace):
    _, _, subjects = ground_truth(workspace)
    folds = grouped_folds(subjects, 5, seed=3)
    assert len(folds) == 5
    for split in folds:
        assert not set(subjects[split.train]) & set(subjects[split.test])
    assert sorted(np.concatenate([s.test for s in folds]).tolist()) == list(range(len(subjects)))


def test_out_of_fold_scores_come_from_models_that_never_saw_the_subject(workspace):
    label_like_a_user(workspace)
    model_id = routed(workspace)
    oof = model_oof(workspace, load_model_record(workspace, model_id))
    assert len(oof.image_ids) == len(oof.labels) == len(oof.proba)
    assert np.allclose(oof.proba.sum(axis=1), 1.0)
    assert "GroupKFold by subject" in oof.split


def test_weights_favour_labeled_images_that_look_like_the_pool():
    rng = np.random.default_rng(0)
    labeled = rng.normal(0.0, 1.0, (400, 1))
    pool = rng.normal(1.5, 1.0, (400, 1))
    weights = importance_weights(labeled, pool)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[labeled[:, 0] > 1.5].mean() > 3 * weights[labeled[:, 0] < 0].mean()
    assert effective_sample_size(np.ones(10)) == pytest.approx(10) and effective_sample_size([1, 0, 0]) == pytest.approx(1)


def test_distance_ignores_the_images_own_subject():
    X = np.array([[0.0], [0.1], [5.0]])
    subjects = np.array([1, 1, 2])
    assert nearest_other_subject_distance(X, subjects, X, subjects).tolist() == pytest.approx([5.0, 4.9, 4.9])


def test_thresholds_json_says_what_it_measures_and_calibrates(workspace):
    label_like_a_user(workspace)
    # C=100 on 1280 features: a nearly unregularized logistic regression, confident far beyond its accuracy
    routed(workspace, C=100.0)
    code, data = cli("thresholds", "--workspace", workspace.root, "--target", "0.8")
    assert code == 0, data
    for key in ("choice", "per_class_choice", "overall", "per_class", "images", "split"):  # the existing keys stay
        assert key in data
    measured = data["measured_on"]
    assert measured["labels"] == "your accepted labels" and measured["images"] == data["images"]
    assert measured["pool_images"] > 0 and "importance-weighted" in measured["estimator"]
    assert 1 <= measured["effective_n"] <= measured["images"]
    calibration = data["calibration"]
    assert calibration["ece_after"] < calibration["ece_before"]
    assert calibration["method"] == "temperature" and calibration["declined"] is None  # it helped: applied, not declined
    assert len(calibration["bins_before"]) == len(calibration["bins_after"]) == 10
    assert data["trusted"]["source"] == "curve" and data["audit"] is None
    assert data["choice"]["floor"] is None or data["choice"]["floor"] <= data["choice"]["precision"]
    curve = data["overall"]
    assert len(curve["low"]) == len(curve["thresholds"]) and all(lo <= p + 1e-9 for lo, p in zip(curve["low"], curve["precision"]))
    stored = json.loads((workspace.models_dir / f"model-{data['model_id']}.calibration.json").read_text())
    assert stored["calibrator"]["method_"] == calibration["method"]


def test_no_threshold_is_promised_while_a_class_of_the_vocabulary_has_no_label(workspace):
    label_like_a_user(workspace)
    add_labels(workspace, ["U", "R", "V", "O"])
    model_id = routed(workspace)
    missing = [c for c in ["U", "R", "V", "O"] if c not in load_model_record(workspace, model_id).classes]
    assert missing  # the sample's pure clusters name only some of the stages
    tuning = validation_curves(workspace, model_id, 0.8)
    assert tuning.details["classes_without_labels"] == missing
    assert tuning.choice.threshold is None and tuning.choice.precision is None
    assert f"no label of {', '.join(missing)}" in tuning.choice.withheld
    assert all(c.threshold is None and c.withheld for c in tuning.per_class_choice.values())
    assert tuning.details["suggested"] == {"threshold": None, "source": "withheld"}
    assert tuning.format().startswith("overall: no threshold suggested")
    assert validation_curves(workspace, model_id, 0.8, truth="ground_truth").choice.withheld is None

    code, out = cli("thresholds", "--workspace", workspace.root, "--model", model_id, "--target", "0.8")
    assert code == 0 and out["classes_without_labels"] == missing and out["choice"]["threshold"] is None

    remove_labels(workspace, missing)  # the collection holds none of them: the same curve suggests again
    tuning = validation_curves(workspace, model_id, 0.8)
    assert tuning.details["classes_without_labels"] == [] and tuning.choice.withheld is None
    assert tuning.choice.threshold is not None and tuning.details["suggested"]["source"] == "curve"
    undo(workspace)
    assert validation_curves(workspace, model_id, 0.8).choice.withheld is not None

    truth = dict(zip(*ground_truth(workspace)[:2]))
    unlabeled = set(draw_pool_ids(workspace, model_id, limit=10**6).tolist())
    for name in missing:  # three labels of each class, and the model trained again: still too few to speak for them
        label_images(workspace, [i for i, t in truth.items() if t == name and i in unlabeled][:3], name)
    tuning = validation_curves(workspace, routed(workspace), 0.8)
    assert tuning.details["classes_without_labels"] == []
    assert {name: tuning.details["classes_short_of_labels"][name] for name in missing} == {name: 3 for name in missing}
    assert tuning.choice.threshold is None and f"fewer than {threshold.MIN_CLASS_LABELS} labels of {missing[0]} (3)" in tuning.choice.withheld
    code, out = cli("thresholds", "--workspace", workspace.root, "--target", "0.8")
    assert code == 0 and out["classes_short_of_labels"] == tuning.details["classes_short_of_labels"] and out["choice"]["threshold"] is None
    for name in tuning.details["classes_short_of_labels"]:  # enough of each
        have = tuning.details["labels_per_class"].get(name, 0)
        label_images(workspace, [i for i, t in truth.items() if t == name and i in unlabeled][3:3 + threshold.MIN_CLASS_LABELS - have], name)
    tuning = validation_curves(workspace, routed(workspace), 0.8)
    assert tuning.details["classes_short_of_labels"] == {} and tuning.choice.withheld is None


def test_curves_of_many_labels_are_measured_on_a_seeded_sample_and_say_so(workspace, monkeypatch):
    label_like_a_user(workspace)
    model_id = routed(workspace)
    full = validation_curves(workspace, model_id, target=0.8)
    assert full.details["measured_on"]["sampled_from"] == full.details["measured_on"]["images"] == full.details["images"]
    monkeypatch.setattr(threshold, "CURVE_SAMPLE", 40)
    sampled = validation_curves(workspace, model_id, target=0.8, seed=1)
    measured = sampled.details["measured_on"]
    assert measured["images"] == 40 and measured["sampled_from"] == sampled.details["images"] == full.details["images"] > 40
    assert measured_images(measured) == f"a random 40 of {full.details['images']} images"
    oof = model_oof(workspace, load_model_record(workspace, model_id))
    again = curve_sample(oof, seed=1, limit=40)
    assert np.array_equal(again.image_ids, curve_sample(oof, seed=1, limit=40).image_ids)
    position = {image: row for row, image in enumerate(oof.image_ids)}
    rows = [position[i] for i in again.image_ids]
    assert np.array_equal(again.proba, oof.proba[rows]) and np.array_equal(again.labels, oof.labels[rows])
    assert curve_sample(oof, limit=len(oof)) is oof


def test_predict_prepares_the_curves_so_the_first_view_computes_nothing(workspace):
    label_like_a_user(workspace)
    model = train_model(workspace, "head", feature_set=FEATURES)
    stored = "SELECT COUNT(*) FROM model_evaluations WHERE model_id=? AND name LIKE 'representativeness-%'"
    assert workspace.db.execute(stored, (model.id,)).fetchone()[0] == 0
    code, data = cli("predict", "--workspace", workspace.root, "--model", str(model.id))
    assert code == 0, data
    assert workspace.db.execute(stored, (model.id,)).fetchone()[0] == 1
    assert load_calibration(workspace, model.id) is not None
    assert list(workspace.models_dir.glob(f"model-{model.id}-confidences-*.npz"))
    validation_curves(workspace, model.id, seed=0)
    assert workspace.db.execute(stored, (model.id,)).fetchone()[0] == 1  # the page's view reads the same weights


def test_the_routed_pool_is_drawn_once_per_prediction_run(workspace):
    label_like_a_user(workspace)
    model = train_model(workspace, "head", feature_set=FEATURES)
    unlabeled = [r[0] for r in workspace.db.execute("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM current_labels) ORDER BY id")]
    predict(workspace, model.id, unlabeled[:30])
    first = routed_pool(workspace, model.id, seed=2, limit=20)
    assert first.image_ids.tolist() == draw_pool_ids(workspace, model.id, seed=2, limit=20).tolist() and len(first.image_ids) == 20
    stored = "SELECT COUNT(*) FROM model_evaluations WHERE model_id=? AND name LIKE 'routed-pool-%'"
    assert workspace.db.execute(stored, (model.id,)).fetchone()[0] == 1
    assert routed_pool(workspace, model.id, seed=2, limit=20).image_ids.tolist() == first.image_ids.tolist()
    predict(workspace, model.id, unlabeled[30:60])  # a new prediction run: the pool is drawn again, from all 60
    again = routed_pool(workspace, model.id, seed=2, limit=20)
    assert again.image_ids.tolist() == draw_pool_ids(workspace, model.id, seed=2, limit=20).tolist()
    assert set(again.image_ids) <= set(unlabeled[:60]) and set(again.image_ids) - set(unlabeled[:30])


def test_routing_applies_the_stored_calibration(workspace):
    label_like_a_user(workspace)
    model_id = routed(workspace, C=100.0)
    validation_curves(workspace, model_id, 0.8)
    calibrator, _ = load_calibration(workspace, model_id)
    code, data = cli("route", "--workspace", workspace.root, "--threshold", "0.0")
    assert code == 0 and data["pseudo_labeled"] > 0
    pending = current_labels(workspace).query("status == 'pending'")
    from serieslabeler.models import load_predictions

    predictions = load_predictions(workspace, model_id, pending["image_id"].to_numpy())
    proba = predictions.proba / predictions.proba.sum(axis=1, keepdims=True)
    assert np.allclose(pending["confidence"].to_numpy(), calibrator.transform(proba).max(axis=1))
    assert not np.allclose(pending["confidence"].to_numpy(), predictions.confidence)


def test_audit_answers_become_labels_and_count_as_interactions(workspace):
    label_like_a_user(workspace)
    model_id = routed(workspace)
    assert cli("route", "--workspace", workspace.root, "--threshold", "0.0")[0] == 0
    code, data = cli("audit", "--workspace", workspace.root, "draw", "--size", "12", "--seed", "4")
    assert code == 0, data
    audit = data["audit"]
    items = audit["items"]
    assert len(items) == 12 and audit["routed"] > 12
    assert {i["predicted"] for i in items} == set(audit["population"])  # every class drawn
    truth = dict(zip(*ground_truth(workspace)[:2]))
    right = [i["image_id"] for i in items if truth[i["image_id"]] == i["predicted"]]
    wrong = [i for i in items if truth[i["image_id"]] != i["predicted"]]
    before = interaction_count(workspace)
    assert audit_answers_version(workspace, model_id) == 0  # drawn, not answered
    if right:
        code, data = cli("audit", "--workspace", workspace.root, "answer", "--images", ",".join(map(str, right)), "--correct")
        assert code == 0, data
    for item in wrong:
        code, data = cli("audit", "--workspace", workspace.root, "answer", "--images", str(item["image_id"]), "--label", truth[item["image_id"]])
        assert code == 0, data
    assert interaction_count(workspace) - before == 12  # one per audited image
    answered = audit_answers_version(workspace, model_id)
    assert answered == last_event_id(workspace) > 0
    unaudited = next(i for i in range(1, 221) if i not in {item["image_id"] for item in items})
    label_images(workspace, [unaudited], truth[unaudited])
    assert audit_answers_version(workspace, model_id) == answered  # a label elsewhere leaves the curves' cache key
    labels = current_labels(workspace).set_index("image_id")
    for item in items:
        assert labels.loc[item["image_id"], "status"] == "accepted"
        assert labels.loc[item["image_id"], "label"] == truth[item["image_id"]]
    code, data = cli("audit", "--workspace", workspace.root, "report")
    assert code == 0
    overall = data["report"]["overall"]
    assert data["report"]["answered"] == 12 and data["report"]["complete"]
    assert overall["low"] <= overall["estimate"] <= overall["high"]
    assert overall["successes"] == len(right)
    code, data = cli("thresholds", "--workspace", workspace.root, "--target", "0.5", "--lower-bound")
    assert code == 0 and data["trusted"]["source"] == "audit" and data["audit"]["answered"] == 12
    assert data["lower_bound"] and data["audit_threshold"]["target"] == 0.5
    curves = validation_curves(workspace, model_id, 0.99)  # the curves do not depend on the target
    for target, lower_bound in ((0.5, True), (0.9, False), (0.7, True)):
        direct = validation_curves(workspace, model_id, target, lower_bound=lower_bound)
        moved = choose_thresholds(workspace, curves, target, lower_bound)
        assert json.dumps(moved.to_dict(), default=str) == json.dumps(direct.to_dict(), default=str)
    assert "audit_threshold" in moved.details and "audit_threshold" not in choose_thresholds(workspace, moved, 0.7).details


def test_audit_input_errors_name_the_problem(workspace):
    code, data = cli("audit", "--workspace", workspace.root, "draw")
    assert code == 2 and "no pending pseudo-labels" in data["error"]
    label_like_a_user(workspace)
    routed(workspace)
    cli("route", "--workspace", workspace.root, "--threshold", "0.0")
    audit = draw_audit(workspace, 5, seed=1)
    outsider = int(current_labels(workspace).query("status == 'accepted'")["image_id"].iloc[0])
    code, data = cli("audit", "--workspace", workspace.root, "answer", "--images", str(outsider), "--correct")
    assert code == 2 and f"image {outsider} is not in audit {audit.id}" in data["error"]
    first = audit.items[0].image_id
    answer_audit(workspace, [first], correct=True)
    code, data = cli("audit", "--workspace", workspace.root, "answer", "--images", str(first), "--correct")
    assert code == 2 and "answered already" in data["error"]


def test_the_floor_counts_images_unlike_the_labels_as_wrong():
    from serieslabeler.loop import precision_floor

    # 4 labeled images of the labeled subjects (confidence 0.9) and 4 left unlabeled there (0.9):
    # half of what those subjects hold at 0.9 is typical. The pool: those 4, and 4 of other subjects.
    floor = precision_floor([0.5, 0.95], [0.8, 0.8], [0.9] * 4, [0.9] * 8, [True] * 4 + [False] * 4)
    # at 0.5: 8 routed, of which 4 * 0.5 = 2 typical -> 2/8 of them at precision 0.8
    assert floor[0] == pytest.approx(0.25 * 0.8)
    assert floor[1] == pytest.approx(0.8)  # nothing routed at 0.95: nothing to discount


def _prefix_sizes_by_hand(correct, weights, groups) -> list[float]:
    """The cluster-robust effective size of each prefix, one prefix at a time (the formula as written)."""
    sizes = []
    for k in range(1, len(correct) + 1):
        c, w, g = correct[:k].astype(float), weights[:k], groups[:k]
        p = (w * c).sum() / w.sum()
        kish = w.sum() ** 2 / (w**2).sum()
        names = np.unique(g)
        residuals = np.array([(w[g == name] * (c[g == name] - p)).sum() for name in names])
        variance = len(names) / max(len(names) - 1, 1) * (residuals**2).sum() / w.sum() ** 2
        size = min(kish, p * (1 - p) / variance) if 0 < p < 1 and variance > 0 else kish
        sizes.append(min(size, 1.0) if len(names) == 1 else size)
    return sizes


def test_the_effective_size_of_each_prefix_counts_subjects_as_the_formula_does():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(1, 40))
        correct, weights, groups = rng.random(n) < 0.7, rng.random(n) + 0.1, rng.integers(0, 5, n)
        assert clustered_effective_sizes(correct, weights, groups) == pytest.approx(_prefix_sizes_by_hand(correct, weights, groups))


def test_errors_that_go_with_one_subject_are_worth_fewer_images_than_errors_spread_over_subjects():
    groups = np.repeat(np.arange(5), 20)
    ones = np.ones(len(groups))
    together = groups != 0  # one subject of five entirely wrong
    spread = np.tile(np.r_[np.zeros(4, bool), np.ones(16, bool)], 5)  # as many wrong, 4 in each subject
    assert together.sum() == spread.sum()
    assert clustered_effective_sizes(together, ones, groups)[-1] < 0.25 * effective_sample_size(ones)
    assert clustered_effective_sizes(spread, ones, groups)[-1] == pytest.approx(effective_sample_size(ones))
    assert clustered_effective_sizes(np.ones(20, bool), np.ones(20), np.zeros(20))[-1] == pytest.approx(1.0)  # one subject
    assert clustered_effective_sizes(np.ones(20, bool), np.ones(20), np.arange(20) % 4)[-1] == pytest.approx(20.0)  # no error: Kish
    confidence = np.linspace(1.0, 0.5, len(groups))
    wide = tune_thresholds(together.astype(str), np.full(len(groups), "True"), confidence, 0.5, groups=groups).overall
    narrow = tune_thresholds(together.astype(str), np.full(len(groups), "True"), confidence, 0.5).overall
    assert wide.low[0] < narrow.low[0] - 0.1 and wide.high[0] >= narrow.high[0]


def test_the_intervals_of_the_curves_count_the_labeled_subjects(workspace):
    label_like_a_user(workspace)
    model_id = routed(workspace)
    tuning = validation_curves(workspace, model_id, 0.8)
    record = load_model_record(workspace, model_id)
    oof = model_oof(workspace, record)
    calibrator, _ = load_calibration(workspace, model_id)
    pool = routed_pool(workspace, model_id)
    weights = threshold.representativeness_weights(workspace, record, oof, pool)
    inputs = (oof.labels, oof.predicted, calibrator.calibrated_confidence(oof.proba), 0.8, None, weights)
    by_subject = tune_thresholds(*inputs, groups=oof.subjects).overall
    by_image = tune_thresholds(*inputs).overall
    assert tuning.overall.effective_n == pytest.approx(by_subject.effective_n)
    assert (by_subject.effective_n <= by_image.effective_n + 1e-9).all() and (by_subject.effective_n < by_image.effective_n - 1).any()
    assert "subject" in tuning.details["measured_on"]["interval"]
