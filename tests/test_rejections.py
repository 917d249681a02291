"""What the expert said an image is not (misfits clicked out, rejected pseudo-labels, images clicked
out of a series): read from the label log, and never routed back as a pseudo-label."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli

from serieslabeler.clustering import run_clustering
from serieslabeler.labels import (
    add_labels,
    current_labels,
    label_cluster,
    label_images,
    label_series,
    merge_labels,
    pending_labels,
    reject_pseudo,
    rejected_labels,
    rejected_members,
    rename_label,
    undo,
)
from serieslabeler.errors import PipelineError
from serieslabeler.loop import ground_truth, label_with_oracle, propose_series, route_predictions
from serieslabeler.models import load_predictions, predict, train_model
from serieslabeler.store import Workspace
from serieslabeler.store.series import get_series

FEATURES = "efficientnet_lite0@imagenet"


@pytest.fixture
def workspace(bananas_clustered):
    with Workspace.open(bananas_clustered) as ws:
        yield ws


def misfits(workspace: Workspace) -> dict[int, str]:
    """Each image clicked out of a cluster, with the label of that cluster (from the log's details)."""
    out = {}
    for label, details in workspace.db.execute("SELECT label, details FROM label_events WHERE action='label_cluster'"):
        out.update({int(i): label for i in json.loads(details)["excluded"]})
    return out


def test_a_misfit_clicked_out_of_a_cluster_is_never_routed_back_into_it(workspace):
    label_with_oracle(workspace, 1, 0.6)
    clicked_out = misfits(workspace)
    assert clicked_out, "the oracle should click misfits out of the clusters it names"
    assert rejected_labels(workspace).labels == {i: frozenset([label]) for i, label in clicked_out.items()}
    model = train_model(workspace, "head", feature_set=FEATURES)
    predict(workspace, model.id)
    ids = np.array(sorted(clicked_out))
    predicted = load_predictions(workspace, model.id, ids)
    back = predicted.image_ids[predicted.labels == np.array([clicked_out[int(i)] for i in predicted.image_ids])]
    assert len(back) > 0, "the model predicts some misfits as the cluster they were clicked out of"
    routing = route_predictions(workspace, model.id, 0.0, support=None)
    assert not np.isin(back, routing.pseudo_ids).any() and np.isin(back, routing.to_cluster_ids).all()
    assert set(routing.rejected.tolist()) == set(back.tolist()) and routing.summary()["rejected"] == len(back)
    others = np.setdiff1d(ids, back)
    assert np.isin(others, routing.pseudo_ids).all()  # a misfit predicted as another class is routed as usual
    assert "a label the expert rejected" in routing.held_back()


def trained_on_six_subjects(workspace: Workspace):
    """A head trained on the true labels of the first 6 subjects, its predictions stored; and
    every image's subject."""
    ids, truth, subjects = ground_truth(workspace)
    chosen = np.isin(subjects, np.unique(subjects)[:6])
    for label in np.unique(truth[chosen]):
        label_images(workspace, ids[chosen & (truth == label)], label, author="test")
    model = train_model(workspace, "head", feature_set=FEATURES)
    predict(workspace, model.id)
    return model, subjects


def test_a_rejected_pseudo_label_is_not_routed_again_until_the_rejection_is_undone(workspace):
    model, subjects = trained_on_six_subjects(workspace)
    first = route_predictions(workspace, model.id, 0.0, support=None)
    pending = pending_labels(workspace).set_index("image_id")
    image, label = int(first.pseudo_ids[0]), str(pending.loc[int(first.pseudo_ids[0]), "label"])
    reject_pseudo(workspace, [image], author="expert")
    assert rejected_labels(workspace).labels == {image: frozenset([label])}
    code, again = cli("route", "--workspace", workspace.root, "--model", model.id, "--threshold", "0", "--no-support")
    assert code == 0 and again["rejected"] == 1 and again["pseudo_labeled"] == 0 and again["to_cluster"] == 1
    undo(workspace, author="expert")
    assert len(rejected_labels(workspace)) == 0


def test_a_rejection_follows_its_label_through_a_rename_and_is_dropped_by_a_merge(workspace):
    members = np.array([r[0] for r in workspace.db.execute(
        "SELECT image_id FROM cluster_members WHERE clustering_id=1 AND cluster=0 ORDER BY image_id")])
    label_cluster(workspace, 1, 0, "U", excluded=members[:2], author="expert")
    assert rejected_labels(workspace).mask(members[:3], ["U", "U", "U"]).tolist() == [True, True, False]
    rename_label(workspace, "U", "unripe", author="expert")
    moved = rejected_labels(workspace)
    assert moved.labels == {int(i): frozenset(["unripe"]) for i in members[:2]}
    assert moved.mask(members[:2], ["U", "R"]).tolist() == [False, False]
    undo(workspace, author="expert")
    assert rejected_labels(workspace).labels == {int(i): frozenset(["U"]) for i in members[:2]}
    add_labels(workspace, ["R"], author="expert")
    merge_labels(workspace, ["U"], "R", author="expert")  # "not U" says nothing about U or R together
    assert len(rejected_labels(workspace)) == 0
    undo(workspace, n=2, author="expert")
    undo(workspace, author="expert")  # the cluster label itself: its misfits are rejected for nothing
    assert len(rejected_labels(workspace)) == 0


def test_an_image_clicked_out_of_a_series_is_no_stage_at_all(workspace):
    add_labels(workspace, ["U", "R", "V", "O"], author="expert", ordered=True)
    series = get_series(workspace, workspace.db.execute("SELECT name FROM subjects ORDER BY name LIMIT 1").fetchone()[0])
    stake = series.image_ids[5]
    label_series(workspace, series, [("U", series.image_ids[0]), ("R", series.image_ids[8])], exclude=[stake], author="expert")
    rejections = rejected_labels(workspace)
    assert rejections.everything == frozenset([stake])
    assert rejections.mask([stake] * 4 + [series.image_ids[6]], ["U", "R", "V", "O", "U"]).tolist() == [True] * 4 + [False]


def test_a_misfit_met_again_in_a_cluster_of_the_label_it_lost_is_clicked_out_for_the_expert(workspace):
    members = np.array([r[0] for r in workspace.db.execute(
        "SELECT image_id FROM cluster_members WHERE clustering_id=1 AND cluster=0 ORDER BY image_id")])
    misfit = int(members[0])
    assert label_cluster(workspace, 1, 0, "U", excluded=[misfit], author="expert").interactions == 2
    again = run_clustering(workspace, FEATURES, "kmeans", 3, seed=1)
    cluster = workspace.db.execute("SELECT cluster FROM cluster_members WHERE clustering_id=? AND image_id=?", (again.id, misfit)).fetchone()[0]
    assert rejected_members(workspace, [misfit, int(members[1])], "U").tolist() == [misfit]
    event = label_cluster(workspace, again.id, cluster, "U", author="expert")
    assert event.interactions == 1 and event.details["rejected_before"] == [misfit] and event.details["excluded"] == [misfit]
    assert misfit not in set(current_labels(workspace)["image_id"].tolist())
    undo(workspace, author="expert")
    code, data = cli("label", "--workspace", workspace.root, "--clustering", again.id, "--cluster", cluster, "--as", "U",
                     "--include", misfit, "--author", "expert")
    assert code == 0 and data["events"][0]["interactions"] == 2 and data["events"][0]["details"]["included"] == [misfit]
    assert current_labels(workspace).set_index("image_id").loc[misfit, "label"] == "U"
    undo(workspace, author="expert")
    other = label_cluster(workspace, again.id, cluster, "R", author="expert")  # it was only ever "not U"
    assert other.details["rejected_before"] == [] and current_labels(workspace).set_index("image_id").loc[misfit, "label"] == "R"


def test_a_series_labeled_again_keeps_its_stake_out_unless_it_is_taken_back_in(workspace):
    add_labels(workspace, ["U", "R", "V", "O"], author="expert", ordered=True)
    series = get_series(workspace, workspace.db.execute("SELECT name FROM subjects ORDER BY name LIMIT 1").fetchone()[0])
    ids = series.image_ids
    label_series(workspace, series, [("U", ids[0]), ("R", ids[8])], exclude=[ids[9]], author="expert")
    stake = ids[9]
    again = label_series(workspace, series, [("U", ids[0]), ("R", ids[10])], author="expert")  # one boundary moved
    assert again.interactions == 1 and again.details["rejected_before"] == [stake] and stake in again.details["excluded"]
    assert stake not in set(current_labels(workspace)["image_id"].tolist())
    with pytest.raises(PipelineError, match="clicked out of series .* before; include it"):
        label_series(workspace, series, [("U", ids[0]), ("R", stake)], author="expert")
    code, data = cli("label-series", "--workspace", workspace.root, "--series", series.key, "--boundaries",
                     f"U@{ids[0]},R@{stake}", "--include", stake, "--author", "expert")
    assert code == 0 and data["events"][0]["interactions"] == 2 and data["events"][0]["details"]["included"] == [stake]
    assert not rejected_labels(workspace).everything  # taken back in: no longer rejected


def test_no_proposal_starts_a_stage_on_an_image_clicked_out_of_the_series(workspace):
    add_labels(workspace, ["U", "R", "V", "O"], author="expert", ordered=True)
    model, subjects = trained_on_six_subjects(workspace)
    name = workspace.db.execute("SELECT name FROM subjects WHERE id=?", (int(np.unique(subjects)[-1]),)).fetchone()[0]
    series = get_series(workspace, name)
    proposal = propose_series(workspace, series, model.id)
    assert len(proposal.boundaries) > 1, "the proposal places a boundary after the first photo"
    stage, stake = proposal.boundaries[1]
    label_series(workspace, series, [("U", series.image_ids[0])], exclude=[stake], author="expert")
    moved = dict(propose_series(workspace, series, model.id).boundaries)  # the same predictions: only the stake changed
    assert moved[stage] != stake and series.position(moved[stage]) > series.position(stake)
    routing = route_predictions(workspace, model.id, 0.0, monotone=True, support=None)
    assert stake in routing.rejected and stake not in routing.pseudo_ids and stake in routing.to_cluster_ids
