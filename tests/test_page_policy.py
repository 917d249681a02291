"""Library functions the app's pages show (learning curve, sample coverage, cluster table,
map subset), so the command line and the app read the same figures."""
from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
from conftest import BANANAS, cli

from serieslabeler import views
from serieslabeler.clustering import evaluate_clustering
from serieslabeler.labels import label_images
from serieslabeler.loop import evaluate_model, ground_truth, learning_curve
from serieslabeler.models import train_model
from serieslabeler.space import MAX_DRAWN, drawn_rows
from serieslabeler.store import Workspace


def bananas_rows() -> list[dict]:
    with open(BANANAS / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_learning_curve_has_one_point_per_model_oldest_first(bananas_embedded):
    with Workspace.open(bananas_embedded) as workspace:
        ids, truth, subjects = ground_truth(workspace)
        labeled = np.isin(subjects, np.unique(subjects)[:4])
        for rounds in (2, 4):
            chosen = labeled & np.isin(subjects, np.unique(subjects)[:rounds])
            for label in np.unique(truth[chosen]):
                label_images(workspace, ids[chosen & (truth == label)], label, author="test")
            train_model(workspace, "head", feature_set="efficientnet_lite0")
        points = learning_curve(workspace)
        assert [p.model_id for p in points] == [1, 2]
        assert [p.labeled_images for p in points] == [40, 80]
        assert points[0].interactions < points[1].interactions
        for point in points:
            report = evaluate_model(workspace, point.model_id).report
            assert (point.held_out_macro_f, point.held_out_top1) == (report["macro"]["F"], report["top1"])
        assert points[1].validation_top1 is not None and points[1].held_out_top1 > 0.6
        calls = []
        learning_curve(workspace, held_out=lambda model_id: calls.append(model_id) or evaluate_model(workspace, model_id).to_dict())
        assert calls == [1, 2]
    code, data = cli("learning-curve", "--workspace", bananas_embedded)
    assert code == 0 and data["points"] == [p.to_dict() for p in points]


def test_sample_coverage_counts_subjects_days_and_stages(bananas_workspace):
    rows = bananas_rows()
    chosen_fruits = sorted({r["fruit"] for r in rows})[:2]
    with Workspace.open(bananas_workspace) as workspace:
        by_file = dict(workspace.db.execute("SELECT file_name, id FROM images").fetchall())
        picked = [r for r in rows if r["fruit"] in chosen_fruits and int(r["day"]) <= 9]
        coverage = views.sample_coverage(workspace, [by_file[r["file"]] for r in picked])
    assert coverage.images == len(picked) > 10 and coverage.subjects == 2
    assert coverage.per_subject == dict(Counter(r["fruit"] for r in picked))
    hours = {r["file"]: float(r["hour"]) for r in picked}
    assert coverage.days_covered == pytest.approx(max(hours.values()) / 24, abs=0.05)
    in_sample, in_collection = Counter(r["ripeness"] for r in picked), Counter(r["ripeness"] for r in rows)
    assert [(s.stage, s.images, s.in_collection) for s in coverage.stages] == sorted(
        ((stage, n, in_collection[stage]) for stage, n in in_sample.items()), key=lambda item: (-item[1], item[0])
    )


def test_clustering_table_joins_labeling_state_and_purity(bananas_clustered):
    with Workspace.open(bananas_clustered) as workspace:
        evaluation = evaluate_clustering(workspace, 1, with_silhouette=False)
        table = views.clustering_table(workspace, 1, evaluation)
    assert table["cluster"].tolist() == list(range(8))
    assert table["size"].sum() == 220 and table["with truth"].sum() == 220
    assert set(table["state"]) == {"open"} and table["labeled"].sum() == 0
    by_cluster = {p.cluster: p for p in evaluation.per_cluster}
    assert table["majority (truth)"].tolist() == [by_cluster[c].majority for c in range(8)]
    weighted = (table["purity"] * table["with truth"]).sum() / 220
    assert weighted == pytest.approx(evaluation.purity)


def test_a_map_draws_every_point_up_to_the_limit_then_the_same_subset():
    assert drawn_rows(10).tolist() == list(range(10))
    subset = drawn_rows(3 * MAX_DRAWN)
    assert len(subset) == MAX_DRAWN == len(np.unique(subset)) and np.all(np.diff(subset) > 0)
    assert np.array_equal(subset, drawn_rows(3 * MAX_DRAWN))
    assert subset.max() > 2 * MAX_DRAWN  # spread over the whole map, not its first rows
