"""What ingest stores once for the pages to read: the collection summary, and a clustering's
scores against the ground truth (kept until an ingest changes the ground truth)."""
from __future__ import annotations

import csv
import json

import pytest
from conftest import ingest_bananas

from serieslabeler.clustering import evaluate_clustering
from serieslabeler.clustering.evaluate import truth_scores
from serieslabeler.metrics import cluster_purity, score_against_truth
from serieslabeler.store import Workspace, collection_summary, ground_truth_version, queries, summarize
from serieslabeler.store.summary import SUMMARY_META, count_collection


def changed_metadata(bananas, tmp_path, **changes) -> object:
    """The bananas CSV with ``column=[(row, value), ...]`` changes, written to ``tmp_path``."""
    rows = list(csv.DictReader(open(bananas / "metadata.csv")))
    for column, edits in changes.items():
        for row, value in edits:
            rows[row][column] = value
    path = tmp_path / "changed.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_ingest_stores_the_collection_summary_and_the_next_ingest_refreshes_it(bananas_workspace, bananas, tmp_path):
    with Workspace.open(bananas_workspace) as workspace:
        stored = json.loads(workspace.get_meta(SUMMARY_META))
        assert stored == count_collection(workspace) and stored["images"] == 220
        assert {k: summarize(workspace)[k] for k in stored} == stored
    metadata = changed_metadata(bananas, tmp_path, group=[(0, "X")], ripeness=[(1, "O")])
    code, report = ingest_bananas(bananas_workspace, bananas / "images", metadata)
    assert code == 0, report
    with Workspace.open(bananas_workspace) as workspace:
        summary = collection_summary(workspace)
        assert summary == count_collection(workspace)
        assert summary["attributes"]["group"]["values"]["X"] == 1
        assert summary["ground_truth"]["O"] == 96


def test_a_workspace_without_a_stored_summary_gets_one_on_first_read(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        expected = count_collection(workspace)
        with workspace.transaction() as db:
            db.execute("DELETE FROM meta WHERE key=?", (SUMMARY_META,))
    with Workspace.open(bananas_workspace, read_only=True) as workspace:
        assert collection_summary(workspace) == expected
        assert workspace.get_meta(SUMMARY_META) is None  # a read-only workspace is only read
    with Workspace.open(bananas_workspace) as workspace:
        assert collection_summary(workspace) == expected
        assert json.loads(workspace.get_meta(SUMMARY_META)) == expected


def per_image_scores(workspace: Workspace, clustering_id: int) -> tuple[dict, list]:
    rows = workspace.db.execute(
        "SELECT m.cluster, g.label FROM cluster_members m JOIN ground_truth g ON g.image_id = m.image_id WHERE m.clustering_id=?",
        (clustering_id,),
    ).fetchall()
    truth, clusters = [r[1] for r in rows], [r[0] for r in rows]
    return score_against_truth(truth, clusters), cluster_purity(truth, clusters)


def test_a_clusterings_truth_scores_are_stored_until_an_ingest_changes_the_ground_truth(bananas_clustered, bananas, tmp_path):
    with Workspace.open(bananas_clustered) as workspace:
        version = ground_truth_version(workspace)
        first = evaluate_clustering(workspace, 1)
        scores, per_cluster = per_image_scores(workspace, 1)
        assert first.evaluated == 220 and first.per_cluster == per_cluster
        assert {name: getattr(first, name) for name in scores} == pytest.approx(scores)
        stored = json.loads(workspace.db.execute("SELECT evaluation FROM clusterings WHERE id=1").fetchone()[0])
        assert stored["truth"]["version"] == version and "silhouette" in stored
        stored["truth"]["purity"] = 0.123  # a page reads what is stored: it does not count again
        with workspace.transaction() as db:
            db.execute("UPDATE clusterings SET evaluation=? WHERE id=1", (json.dumps(stored),))
        assert evaluate_clustering(workspace, 1).purity == 0.123
    unchanged = ingest_bananas(bananas_clustered)
    assert unchanged[0] == 0
    with Workspace.open(bananas_clustered) as workspace:
        assert ground_truth_version(workspace) == version  # the same ground truth again: still valid
    relabeled = changed_metadata(bananas, tmp_path, ripeness=[(row, "U") for row in range(0, 220, 3)])
    assert ingest_bananas(bananas_clustered, bananas / "images", relabeled)[0] == 0
    with Workspace.open(bananas_clustered) as workspace:
        assert ground_truth_version(workspace) == version + 1
        again = evaluate_clustering(workspace, 1)
        scores, per_cluster = per_image_scores(workspace, 1)
        assert {name: getattr(again, name) for name in scores} == pytest.approx(scores)
        assert again.per_cluster == per_cluster and again.purity != first.purity
        assert truth_scores(workspace, 1)["purity"] == pytest.approx(again.purity)


def test_the_timeline_of_the_first_subjects_reads_only_those(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        everything = queries.images_per_subject_day(workspace)
        first = queries.images_per_subject_day(workspace, 3)
    names = sorted(set(everything["subject"]))[:3]
    assert sorted(set(first["subject"])) == names
    assert first.reset_index(drop=True).equals(everything[everything["subject"].isin(names)].reset_index(drop=True))
