"""What the app and the command line tell a labeler (loop.guidance), idempotent routing, readable
dates and sizes, the export's iteration column."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cli

from serieslabeler.clustering import evaluate_clustering
from serieslabeler.export import export_rows
from serieslabeler.ingest import readable_time
from serieslabeler.labels import (
    cluster_status,
    label_cluster,
    next_open_cluster,
    skip_cluster,
)
from serieslabeler.loop import (
    model_for_current_labels,
    next_step,
    suggested_label,
)
from serieslabeler.models import predict, train_model
from serieslabeler.progress import human_size
from serieslabeler.sampling import draw_sample, find_sample, list_samples
from serieslabeler.store import Workspace, summarize
from serieslabeler.views import sample_coverage

FEATURES = "efficientnet_lite0@imagenet"


@pytest.fixture
def workspace(bananas_clustered):
    with Workspace.open(bananas_clustered) as ws:
        yield ws


def label_by_majority(ws: Workspace, clusters) -> None:
    for purity in evaluate_clustering(ws, 1, with_silhouette=False).per_cluster:
        if purity.cluster in clusters:
            label_cluster(ws, 1, purity.cluster, purity.majority, author="test")


def test_readable_times_and_sizes():
    assert readable_time("2020-05-28T18:20:00") == "28 May 2020 18:20"
    assert readable_time("2020-06-03") == "3 Jun 2020"
    assert readable_time(None) == "" and readable_time("soon") == "soon"
    assert [human_size(n) for n in (840, 4200, 12_345_678)] == ["840 bytes", "4.2 kB", "12.3 MB"]


def test_the_suggestion_is_the_latest_models_majority_with_its_confidence(workspace):
    assert suggested_label(workspace, 1, 0) is None, "no model, no suggestion"
    label_by_majority(workspace, {0, 1, 2, 3})
    model = train_model(workspace, "head", feature_set=FEATURES)
    predictions = predict(workspace, model.id)
    open_cluster = next(row["cluster"] for row in cluster_status(workspace, 1) if row["state"] == "open")
    suggestion = suggested_label(workspace, 1, open_cluster)
    members = {r[0] for r in workspace.db.execute("SELECT image_id FROM cluster_members WHERE clustering_id=1 AND cluster=?", (open_cluster,))}
    predicted = {int(i): (label, p) for i, label, p in zip(predictions.image_ids, predictions.labels, predictions.confidence) if int(i) in members}
    votes = [label for label, _ in predicted.values()]
    assert suggestion.label == max(set(votes), key=votes.count) and suggestion.share == pytest.approx(votes.count(suggestion.label) / len(votes))
    assert suggestion.confidence == pytest.approx(np.mean([p for label, p in predicted.values() if label == suggestion.label]))
    assert f"mean confidence {suggestion.confidence:.2f}" in suggestion.describe()


def test_next_cluster_and_next_step_after_the_last_cluster(workspace):
    assert next_open_cluster(workspace, 1, 6) == 7 and next_open_cluster(workspace, 1, 7) == 0
    assert next_step(workspace, 1) is None
    label_by_majority(workspace, set(range(7)))
    skip_cluster(workspace, 1, 7, author="test")
    assert next_open_cluster(workspace, 1, 7) is None
    step = next_step(workspace, 1)
    assert step.action == "train" and "7 labeled, 1 skipped" in step.message
    model = train_model(workspace, "head", feature_set=FEATURES)
    assert next_step(workspace, 1).action == "cluster"
    assert model_for_current_labels(workspace, "head", FEATURES, 0) == model.id
    assert model_for_current_labels(workspace, "head", FEATURES, 1) is None, "another seed is other work"
    label_cluster(workspace, 1, 7, "U", author="test")
    assert model_for_current_labels(workspace, "head", FEATURES, 0) is None, "new labels: train again"


def test_sample_coverage_says_which_stages_a_sample_holds(workspace):
    sample = draw_sample(workspace, "subjects", subjects=1, seed=0)
    coverage = sample_coverage(workspace, sample.image_ids)
    assert coverage.stages_source == "ground truth" and sum(s.images for s in coverage.stages) == 20
    totals = summarize(workspace)["ground_truth"]
    assert {s.stage: s.in_collection for s in coverage.stages} == {s.stage: totals[s.stage] for s in coverage.stages}
    assert sorted([s.stage for s in coverage.stages] + coverage.missing) == sorted(totals)
    words = coverage.describe_stages()
    assert words.startswith("By ground truth, the sample holds ") and all(f"{s.stage} {s.images} of {s.in_collection}" in words for s in coverage.stages)
    assert find_sample(workspace, "subjects", sample.image_ids) == sample.id
    assert find_sample(workspace, "random", sample.image_ids) is None


def test_route_twice_with_the_same_model_and_threshold_gives_one_routed_sample(workspace):
    label_by_majority(workspace, {0, 1, 2})
    assert cli("train", "--workspace", workspace.root, "--features", FEATURES)[0] == 0
    cli("predict", "--workspace", workspace.root)
    first = cli("route", "--workspace", workspace.root, "--threshold", "0.99")[1]
    second = cli("route", "--workspace", workspace.root, "--threshold", "0.99")[1]
    assert first["to_cluster"] > 0 and second["routed_sample"] == first["routed_sample"]
    assert second["pseudo_labeled"] == 0, "what was pseudo-labeled the first time is not labeled again"
    assert sum(s["strategy"] == "routed" for s in list_samples(workspace)) == 1
    third = cli("route", "--workspace", workspace.root, "--threshold", "0.999")[1]
    assert third["routed_sample"] != first["routed_sample"], "another threshold is another routing"


def test_exported_labels_carry_their_iteration(workspace):
    label_by_majority(workspace, {0, 1})
    model = train_model(workspace, "head", feature_set=FEATURES)
    predict(workspace, model.id)
    cli("route", "--workspace", workspace.root, "--threshold", "0.5")
    label_by_majority(workspace, {2})
    rows = export_rows(workspace, include_pending=True)
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"], set()).add(row["iteration"])
    assert None not in {row["iteration"] for row in rows}
    assert by_source["pseudo"] == {1} and by_source["cluster"] == {1, 2}


@pytest.mark.parametrize(
    "message, shown",
    [
        ("model 3 has no predictions for these images; run 'serieslabeler predict --model 3' first",
         "model 3 has no predictions for these images; predict on the Train & route page first"),
        ("strategy 'subjects' needs the number of subjects to take (--subjects K), at least 1",
         "strategy 'subjects' needs the number of subjects to take, at least 1"),
        ("ask for at most 3 or pass --include-labeled", "ask for at most 3 or turn on 'include labeled'"),
        ("make a map of them ('serieslabeler map --features a --sample ID')", "make a map of them (make a map on the Embed & map page)"),
    ],
)
def test_library_messages_reach_people_without_commands_or_options(message, shown):
    from serieslabeler.errors import for_people

    assert for_people(message) == shown
