"""Sampling strategies on the real bananas workspace: what each picks, reproducibility, exclusions, errors."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import BANANAS, cli, ingest_bananas

from serieslabeler.errors import PipelineError
from serieslabeler.sampling import (
    draw_sample,
    greedy_k_center,
    list_samples,
    sample_pool,
)
from serieslabeler.store import FeatureStore, Workspace, sample_ids


@pytest.fixture
def workspace(bananas_workspace):
    with Workspace.open(bananas_workspace) as ws:
        yield ws


def image_table(ws: Workspace) -> dict[int, tuple[str, str]]:
    """``{image_id: (subject, date)}``."""
    rows = ws.db.execute("SELECT i.id, s.name, substr(i.taken_at, 1, 10) FROM images i JOIN subjects s ON s.id = i.subject_id")
    return {r[0]: (r[1], r[2]) for r in rows}


def label_directly(ws: Workspace, image_ids, label: str = "R") -> None:
    """Rows in ``current_labels`` as the labeling code writes them (one event, then its labels)."""
    with ws.transaction() as db:
        event = db.execute("INSERT INTO label_events(author, action, label, source) VALUES ('test', 'label', ?, 'manual')", (label,)).lastrowid
        db.executemany(
            "INSERT INTO current_labels(image_id, label, source, confidence, event_id) VALUES (?, ?, 'manual', 1.0, ?)",
            [(int(i), label, event) for i in image_ids],
        )


def test_pool_matches_the_whole_table_computation(workspace):
    """The pool's one query gives what a window over every image, filtered in numpy, gave."""
    labeled = [3, 4, 50, 51]
    label_directly(workspace, labeled)
    rows = workspace.db.execute(
        "SELECT id, subject_id, julianday(taken_at) - MIN(julianday(taken_at)) OVER (PARTITION BY subject_id) FROM images ORDER BY id"
    ).fetchall()
    table = np.array([tuple(r) for r in rows], dtype=float)
    subset = [7, 3, 100, 220, 51]
    for include_labeled, image_ids in ((False, None), (True, None), (False, subset), (True, subset)):
        keep = np.ones(len(table), dtype=bool) if include_labeled else ~np.isin(table[:, 0], labeled)
        if image_ids is not None:
            keep &= np.isin(table[:, 0], image_ids)
        pool = sample_pool(workspace, include_labeled, image_ids)
        assert np.array_equal(pool.ids, table[keep, 0].astype(np.int64))
        assert np.array_equal(pool.subjects, table[keep, 1].astype(np.int64))
        assert np.array_equal(pool.days, table[keep, 2]) and pool.days.max() > 10
    assert len(sample_pool(workspace).ids) == 216


def test_the_collections_times_are_read_once_per_ingest_and_the_labels_every_time(bananas_workspace, tmp_path):
    """A second pool reads no image row (only which images are labeled); an ingest that moves a
    subject's first photo 8 days earlier gives its other photos 8 more days."""
    with Workspace.open(bananas_workspace) as ws:
        first = sample_pool(ws)
        reads = []
        ws.db.set_trace_callback(lambda sql: reads.append(sql) if "FROM images" in sql else None)
        label_directly(ws, first.ids[:5])
        again = sample_pool(ws)
        ws.db.set_trace_callback(None)
        assert reads == []
        assert np.array_equal(again.ids, first.ids[5:]) and np.array_equal(again.days, first.days[5:])
        subject = ws.db.execute("SELECT id FROM subjects WHERE name = '11'").fetchone()[0]
    with open(BANANAS / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    moved = next(r for r in rows if r["file"] == "11_F_2020-05-28_18-20_U.jpg")
    moved["date"] = "2020-05-20"
    with open(tmp_path / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), quoting=csv.QUOTE_NONNUMERIC)
        writer.writeheader()
        writer.writerows(rows)
    code, _ = ingest_bananas(bananas_workspace, BANANAS / "images", tmp_path / "metadata.csv")
    assert code == 0
    with Workspace.open(bananas_workspace) as ws:
        later = sample_pool(ws, include_labeled=True)
    before = sample_pool_of(first, subject)
    after = sample_pool_of(later, subject)
    others = after[0] != after[0][np.argmin(after[1])]
    assert np.allclose(after[1][others], before[1][np.isin(before[0], after[0][others])] + 8)


def sample_pool_of(pool, subject: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, days)`` of one subject's images in a pool."""
    mine = pool.subjects == subject
    return pool.ids[mine], pool.days[mine]


def test_subjects_takes_every_day_of_k_subjects(workspace):
    where = image_table(workspace)
    sample = draw_sample(workspace, "subjects", subjects=3, seed=7)
    subjects = {where[i][0] for i in sample.image_ids}
    assert sample.size == 60 and len(subjects) == 3
    expected = sorted(i for i, (s, _) in where.items() if s in subjects)
    assert sample.image_ids.tolist() == expected
    for subject in subjects:
        assert len({where[i][1] for i in sample.image_ids if where[i][0] == subject}) == 20
    again = draw_sample(workspace, "subjects", subjects=3, seed=7)
    assert again.id != sample.id and np.array_equal(again.image_ids, sample.image_ids)
    chosen = {tuple(draw_sample(workspace, "subjects", subjects=3, seed=s).image_ids) for s in range(5)}
    assert len(chosen) > 1, "different seeds should pick different subjects"


def test_random_is_reproducible_and_saved_with_its_parameters(workspace):
    first = draw_sample(workspace, "random", size=30, seed=3)
    second = draw_sample(workspace, "random", size=30, seed=3)
    other = draw_sample(workspace, "random", size=30, seed=4)
    assert first.size == 30 and len(set(first.image_ids)) == 30
    assert np.array_equal(first.image_ids, second.image_ids)
    assert not np.array_equal(first.image_ids, other.image_ids)
    assert np.array_equal(sample_ids(workspace, first.id), first.image_ids)
    saved = {s["id"]: s for s in list_samples(workspace)}[first.id]
    assert saved["strategy"] == "random" and saved["size"] == 30
    assert saved["params"] == {"size": 30, "seed": 3, "include_labeled": False}


def test_time_stratified_spreads_over_days_and_subjects(workspace):
    pool = sample_pool(workspace)
    days = dict(zip(pool.ids.tolist(), pool.days))
    subjects = dict(zip(pool.ids.tolist(), pool.subjects))
    sample = draw_sample(workspace, "time-stratified", size=20, seed=1, bins=10)
    # bananas: about 20 days, so ten bins of about two days each, two images from each bin
    edges = np.linspace(pool.days.min(), pool.days.max(), 11)
    counts, _ = np.histogram([days[i] for i in sample.image_ids], bins=edges)
    assert counts.tolist() == [2] * 10
    assert len({subjects[i] for i in sample.image_ids}) >= 8
    assert np.array_equal(draw_sample(workspace, "time-stratified", size=20, seed=1, bins=10).image_ids, sample.image_ids)
    # more images than one bin holds: the others take up the rest
    assert draw_sample(workspace, "time-stratified", size=200, seed=0, bins=20).size == 200


def test_labeled_images_are_excluded_unless_asked(workspace):
    where = image_table(workspace)
    labeled = [i for i, (s, _) in where.items() if s in ("11", "12", "13")]
    label_directly(workspace, labeled)
    for strategy, amount in [("random", {"size": 160}), ("subjects", {"subjects": 8}), ("time-stratified", {"size": 100})]:
        sample = draw_sample(workspace, strategy, seed=0, **amount)
        assert not set(sample.image_ids) & set(labeled), strategy
    with pytest.raises(PipelineError, match="only 8 have unlabeled images"):
        draw_sample(workspace, "subjects", subjects=9)
    with pytest.raises(PipelineError, match="only 160 are available"):
        draw_sample(workspace, "random", size=161)
    assert draw_sample(workspace, "random", size=220, include_labeled=True).size == 220


def add_predictions(ws: Workspace, rows) -> int:
    """A model and its predictions: rows of (image_id, confidence, margin, entropy)."""
    with ws.transaction() as db:
        model = db.execute("INSERT INTO models(mode, path, classes, params) VALUES ('head', 'm.pt', '[]', '{}')").lastrowid
        db.executemany(
            "INSERT INTO predictions(model_id, image_id, label, confidence, margin, entropy, topk) VALUES (?,?,'R',?,?,?,'[]')",
            [(model, *row) for row in rows],
        )
    return model


def test_uncertainty_picks_what_the_model_is_least_sure_about(workspace):
    with pytest.raises(PipelineError, match="no predictions yet.*train"):
        draw_sample(workspace, "uncertainty", size=2)
    #          image, confidence, margin, entropy
    rows = [(1, 0.90, 0.80, 0.30), (2, 0.40, 0.05, 1.20), (3, 0.35, 0.30, 1.00), (4, 0.60, 0.02, 0.90), (5, 0.99, 0.98, 0.05)]
    model = add_predictions(workspace, rows)
    assert draw_sample(workspace, "uncertainty", size=2, measure="entropy").image_ids.tolist() == [2, 3]
    assert draw_sample(workspace, "uncertainty", size=2, measure="margin").image_ids.tolist() == [2, 4]
    assert draw_sample(workspace, "uncertainty", size=2, measure="least-confidence", model=model).image_ids.tolist() == [2, 3]
    label_directly(workspace, [2])
    assert draw_sample(workspace, "uncertainty", size=2, measure="margin").image_ids.tolist() == [3, 4]
    with pytest.raises(PipelineError, match="only 4 are available"):
        draw_sample(workspace, "uncertainty", size=5)
    with pytest.raises(PipelineError, match="unknown uncertainty measure"):
        draw_sample(workspace, "uncertainty", size=1, measure="variance")


def test_coreset_covers_the_groups_and_avoids_labeled_ones(workspace):
    """Toy 2-D features: three tight, far-apart groups of images."""
    ids = np.array([r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id")])
    group = ids % 3
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    vectors = centres[group] + np.random.default_rng(0).normal(scale=0.5, size=(len(ids), 2))
    store = FeatureStore(workspace)
    store.register("toy@random", "toy", "random", dim=2)
    store.append("toy@random", ids, vectors)
    for seed in range(3):
        picked = draw_sample(workspace, "coreset", size=3, seed=seed, features="toy").image_ids
        assert sorted(picked % 3) == [0, 1, 2]
    label_directly(workspace, ids[group == 0])
    picked = draw_sample(workspace, "coreset", size=2, features="toy@random").image_ids
    assert sorted(picked % 3) == [1, 2], "with group 0 labeled, the picks cover the other groups"
    with pytest.raises(PipelineError, match="needs a feature set"):
        draw_sample(workspace, "coreset", size=2)


def test_greedy_k_center_takes_the_farthest_point_each_time():
    X = np.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
    rng = np.random.default_rng(0)
    assert greedy_k_center(X, 3, rng, anchors=np.array([[0.0]])).tolist() == [2, 3, 4]


def test_bad_requests_are_clear(workspace):
    with pytest.raises(PipelineError, match="unknown sampling strategy 'smart'"):
        draw_sample(workspace, "smart", size=3)
    with pytest.raises(PipelineError, match="does not take option.*measure"):
        draw_sample(workspace, "random", size=3, measure="entropy")
    with pytest.raises(PipelineError, match="only 11 have"):
        draw_sample(workspace, "subjects", subjects=12)
    with pytest.raises(PipelineError, match="needs a sample size"):
        draw_sample(workspace, "random")
    with pytest.raises(PipelineError, match="no sample 99"):
        sample_ids(workspace, 99)


def test_cli_round_trip(bananas_workspace):
    code, data = cli("sample", "--workspace", bananas_workspace, "--strategy", "subjects", "--subjects", "2", "--seed", "5")
    assert code == 0 and data["size"] == 40 and data["strategy"] == "subjects"
    with Workspace.open(bananas_workspace) as ws:
        assert sample_ids(ws, data["id"]).tolist() == data["image_ids"]
    code, listing = cli("samples", "--workspace", bananas_workspace)
    assert code == 0 and listing["samples"][0]["id"] == data["id"]
    code, error = cli("sample", "--workspace", bananas_workspace, "--strategy", "uncertainty", "--size", "3")
    assert code == 2 and "predict" in error["error"]
