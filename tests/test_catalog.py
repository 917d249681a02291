"""Read-only catalog views, the sample preview and labeling sessions, on real workspaces."""
from __future__ import annotations

import sqlite3

from serieslabeler import views as catalog
from serieslabeler.labels import end_session, label_images, open_session
from serieslabeler.sampling import draw_sample
from serieslabeler.store import Workspace, queries


def test_image_table_and_timeline(bananas_workspace):
    workspace = Workspace.open(bananas_workspace)
    table = queries.image_table(workspace)
    assert len(table) == 220 and list(table.columns) == queries.IMAGE_COLUMNS
    one = queries.image_table(workspace, subject="11")
    assert len(one) == 20 and one["taken_at"].is_monotonic_increasing
    picked = queries.image_table(workspace, [5, 1, 3])
    assert picked["image_id"].tolist() == [5, 1, 3]
    timeline = queries.images_per_subject_day(workspace)
    assert timeline["images"].sum() == 220 and set(timeline["subject"]) == set(queries.subject_names(workspace))
    assert queries.has_ground_truth(workspace)


def test_image_details_join_labels_and_truth(bananas_embedded):
    workspace = Workspace.open(bananas_embedded)
    label_images(workspace, [2], "R")
    details = catalog.image_details(workspace, [1, 2]).set_index("image_id")
    assert details.loc[2, "label"] == "R" and details.loc[2, "source"] == "manual"
    assert details.loc[1, "days"] == 0.0
    assert set(details["truth"]) <= {"U", "R", "V", "O"}


def test_sample_preview_writes_nothing(bananas_workspace):
    workspace = Workspace.open(bananas_workspace)
    before = list(sqlite3.connect(bananas_workspace / "catalog.sqlite").iterdump())
    preview = draw_sample(workspace, "subjects", subjects=2, seed=3, save=False)
    assert preview.id is None and preview.size == 40
    assert list(sqlite3.connect(bananas_workspace / "catalog.sqlite").iterdump()) == before
    saved = draw_sample(workspace, "subjects", subjects=2, seed=3)
    assert saved.id is not None and list(saved.image_ids) == list(preview.image_ids)


def test_open_session_reuses_the_open_one(bananas_workspace):
    workspace = Workspace.open(bananas_workspace)
    first = open_session(workspace, "ana")
    assert open_session(workspace, "ana") == first
    assert open_session(workspace, "ben") != first
    end_session(workspace, first)
    assert open_session(workspace, "ana") != first
    assert queries.session_ids(workspace) == sorted(queries.session_ids(workspace))


def test_ground_truth_counts_when_it_covers_two_subjects(bananas_workspace):
    workspace = Workspace.open(bananas_workspace)
    assert queries.has_ground_truth(workspace)
    subjects = queries.subject_names(workspace)
    keep_one = "DELETE FROM ground_truth WHERE image_id IN (SELECT i.id FROM images i JOIN subjects s ON s.id = i.subject_id WHERE s.name != ?)"
    with workspace.transaction() as db:
        db.execute(keep_one, (subjects[0],))
    assert not queries.has_ground_truth(workspace)
    with workspace.transaction() as db:
        db.execute("DELETE FROM ground_truth")
    assert not queries.has_ground_truth(workspace)
