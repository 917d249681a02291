"""Schema migrations: a workspace made by the previous schema upgrades in place; a current one is
opened without a write, so read-only commands work on a read-only folder."""
from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import cli, ingest_bananas

from serieslabeler.clustering import (
    evaluate_clustering,
    list_clusterings,
    load_clustering,
)
from serieslabeler.errors import PipelineError
from serieslabeler.labels import cluster_status, label_images
from serieslabeler.store import CATALOG, MIGRATIONS, SCHEMA_VERSION, Workspace

# What migration 8 changed, undone: a catalog set back to an older version looks like one.
UNDO_EVENT_COUNTS = "ALTER TABLE label_events DROP COLUMN labeled; CREATE INDEX label_event_images_image ON label_event_images(image_id);"
# What migration 10 added, undone.
UNDO_CLUSTER_PREDICTIONS = "DROP TABLE cluster_predictions;"
# What migration 11 changed, undone.
UNDO_LABEL_COUNTS = "DROP TABLE label_counts; CREATE INDEX current_labels_label ON current_labels(label);"
UNDO_STORED_EVALUATIONS = (
    "ALTER TABLE clusterings DROP COLUMN images; ALTER TABLE clusterings DROP COLUMN sizes; "
    "ALTER TABLE clusterings DROP COLUMN evaluation; DROP TABLE model_evaluations;"
)


def previous_schema_workspace(root, bananas):
    """A workspace as the first release made it: its catalog holds exactly the version-1 tables
    (made by migration 1 alone) with the rows of an ingested, labeled workspace."""
    made = root.parent / "current"
    code, _ = ingest_bananas(made, bananas / "images", bananas / "metadata.csv")
    assert code == 0
    with Workspace.open(made) as ws:
        label_images(ws, [1, 2, 3], "R")
    root.mkdir()
    for folder in ("images", "thumbs"):
        (root / folder).symlink_to(made / folder)
    db = sqlite3.connect(root / CATALOG)
    db.executescript(MIGRATIONS[0].script)
    db.execute("ATTACH DATABASE ? AS made", (str(made / CATALOG),))
    tables = [r[0] for r in db.execute("SELECT name FROM main.sqlite_master WHERE type='table'")]
    for table in tables:
        columns = ", ".join(r[1] for r in db.execute(f"PRAGMA main.table_info({table})"))
        db.execute(f"INSERT INTO main.{table}({columns}) SELECT {columns} FROM made.{table}")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()


def test_previous_schema_upgrades_in_place(tmp_path, bananas):
    root = tmp_path / "ws"
    previous_schema_workspace(root, bananas)
    db = sqlite3.connect(root / CATALOG)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError):  # version 1 knows no 'series' source
        db.execute("UPDATE current_labels SET source='series' WHERE image_id=1")
    db.close()

    with Workspace.open(root) as ws:
        assert ws.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == MIGRATIONS[-1].version
        rows = ws.db.execute("SELECT image_id, label, source FROM current_labels ORDER BY image_id").fetchall()
        assert [tuple(r) for r in rows] == [(1, "R", "manual"), (2, "R", "manual"), (3, "R", "manual")]
        indexes = {r[0] for r in ws.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"cluster_members_image", "predictions_image", "label_events_author"} <= indexes
        assert "current_labels_label" not in indexes, "version 11 drops it"
        with ws.transaction() as db:
            db.execute("UPDATE current_labels SET source='series' WHERE image_id=1")
        assert ws.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert ws.db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_clusterings_saved_before_stored_sizes_get_them_on_upgrade(bananas_clustered):
    db = sqlite3.connect(bananas_clustered / CATALOG)
    db.executescript(f"BEGIN; {UNDO_STORED_EVALUATIONS} {UNDO_EVENT_COUNTS} {UNDO_CLUSTER_PREDICTIONS} {UNDO_LABEL_COUNTS} PRAGMA user_version=3; COMMIT;")
    db.close()
    with Workspace.open(bananas_clustered) as ws:
        row = ws.db.execute("SELECT images, sizes, evaluation FROM clusterings WHERE id=1").fetchone()
        sizes = load_clustering(ws, 1).sizes()
        assert row["images"] == 220 == list_clusterings(ws)[0]["images"]
        assert {int(k): v for k, v in json.loads(row["sizes"]).items()} == sizes
        assert row["evaluation"] is None
        silhouette = evaluate_clustering(ws, 1).silhouette
        assert silhouette is not None
        stored = ws.db.execute("SELECT evaluation FROM clusterings WHERE id=1").fetchone()[0]
        assert json.loads(stored)["silhouette"] == silhouette


def test_label_counts_per_cluster_are_counted_on_upgrade(bananas_clustered):
    with Workspace.open(bananas_clustered) as ws:
        label_images(ws, [1, 2, 3], "R")
        label_images(ws, [4, 5], "U")
        expected = cluster_status(ws, 1)
    db = sqlite3.connect(bananas_clustered / CATALOG)
    db.executescript(f"BEGIN; DROP TABLE cluster_label_counts; DROP INDEX label_events_cluster; {UNDO_EVENT_COUNTS} {UNDO_CLUSTER_PREDICTIONS} {UNDO_LABEL_COUNTS} PRAGMA user_version=5; COMMIT;")
    db.close()
    with Workspace.open(bananas_clustered) as ws:
        assert sorted(r[0] for r in ws.db.execute("SELECT label FROM cluster_label_counts WHERE n > 0")) != []
        assert cluster_status(ws, 1) == expected
        assert sum(s["labeled"] for s in expected) == 5
        label_images(ws, [6], "U")  # a label after the upgrade moves the counts
        assert sum(s["labeled"] for s in cluster_status(ws, 1)) == 6


MEMBERS_OF_A_CLUSTER = "SELECT image_id, distance FROM cluster_members WHERE clustering_id=? AND cluster=? ORDER BY image_id"
CLUSTERS_OF_AN_IMAGE = "SELECT clustering_id, cluster FROM cluster_members WHERE image_id=?"


def plan(ws, sql: str, params) -> str:
    return " ".join(row[3] for row in ws.db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_members_and_clusters_are_read_through_covering_indexes_after_upgrade(bananas_clustered):
    """A cluster's members were read by scanning the whole clustering's keys (or one table lookup
    per member); version 7 makes both lookups range reads of an index holding every column."""
    with Workspace.open(bananas_clustered) as ws:
        expected = [tuple(r) for r in ws.db.execute(MEMBERS_OF_A_CLUSTER, (1, 0))]
    db = sqlite3.connect(bananas_clustered / CATALOG)
    db.executescript(
        "BEGIN; DROP INDEX cluster_members_cluster; CREATE INDEX cluster_members_cluster ON cluster_members(clustering_id, cluster); "
        f"DROP INDEX cluster_members_image; CREATE INDEX cluster_members_image ON cluster_members(image_id); {UNDO_EVENT_COUNTS} {UNDO_CLUSTER_PREDICTIONS} {UNDO_LABEL_COUNTS} PRAGMA user_version=6; COMMIT;"
    )
    db.close()
    with Workspace.open(bananas_clustered) as ws:
        assert "COVERING INDEX cluster_members_cluster" in plan(ws, MEMBERS_OF_A_CLUSTER, (1, 0))
        assert "COVERING INDEX cluster_members_image" in plan(ws, CLUSTERS_OF_AN_IMAGE, (1,))
        assert [tuple(r) for r in ws.db.execute(MEMBERS_OF_A_CLUSTER, (1, 0))] == expected


def test_label_events_get_their_labeled_counts_and_the_log_loses_its_image_index_on_upgrade(bananas_clustered):
    """Version 8 stores each event's labeled images (a session's throughput adds them up) and
    drops the log's index by image, which every label click wrote a random page of per image."""
    from serieslabeler.labels import end_session, start_session, undo, unlabel_images

    with Workspace.open(bananas_clustered) as ws:
        session = start_session(ws, "expert")
        label_images(ws, [1, 2, 3], "R", session_id=session)
        label_images(ws, [4, 5], "U", session_id=session)
        unlabel_images(ws, [1], session_id=session)
        label_images(ws, [6], "U", session_id=session)
        undo(ws)
    db = sqlite3.connect(bananas_clustered / CATALOG)
    db.executescript(f"BEGIN; {UNDO_EVENT_COUNTS} {UNDO_CLUSTER_PREDICTIONS} {UNDO_LABEL_COUNTS} PRAGMA user_version=7; COMMIT;")
    db.close()
    with Workspace.open(bananas_clustered) as ws:
        counts = [tuple(r) for r in ws.db.execute("SELECT action, labeled FROM label_events ORDER BY id")]
        assert counts == [("label_images", 3), ("label_images", 2), ("unlabel", 0), ("label_images", 1), ("undo", 0)]
        indexes = {r[0] for r in ws.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "label_event_images_image" not in indexes
        stats = end_session(ws, session)
        assert stats.images_labeled == 3 + 2, "the undone label of image 6 does not count"


def test_the_logs_image_rows_leave_the_image_check_to_current_labels_after_upgrade(bananas_clustered):
    """Version 9 rebuilds the log's per-image rows without their own reference to ``images``:
    the rows stay, and a label naming no image is still refused, leaving no trace in the log."""
    with Workspace.open(bananas_clustered) as ws:
        label_images(ws, [1, 2, 3], "R")
        logged = [tuple(r) for r in ws.db.execute("SELECT * FROM label_event_images ORDER BY event_id, image_id")]
    db = sqlite3.connect(bananas_clustered / CATALOG)
    db.executescript(f"BEGIN; {UNDO_CLUSTER_PREDICTIONS} {UNDO_LABEL_COUNTS} PRAGMA user_version=8; COMMIT;")
    db.close()
    with Workspace.open(bananas_clustered) as ws:
        references = {row[2] for row in ws.db.execute("PRAGMA foreign_key_list(label_event_images)")}
        assert references == {"label_events"}
        assert [tuple(r) for r in ws.db.execute("SELECT * FROM label_event_images ORDER BY event_id, image_id")] == logged
        with pytest.raises(sqlite3.IntegrityError), ws.transaction() as db:
            db.execute("INSERT INTO label_events(author, action) VALUES ('x', 'label_images')")
            event = db.execute("SELECT MAX(id) FROM label_events").fetchone()[0]
            db.execute("INSERT INTO label_event_images(event_id, image_id, label) VALUES (?, 99999, 'R')", (event,))
            db.execute("INSERT INTO current_labels(image_id, label, source, confidence, event_id) VALUES (99999, 'R', 'manual', 1, ?)", (event,))
        assert ws.db.execute("SELECT COUNT(*) FROM label_event_images").fetchone()[0] == len(logged)
        assert ws.db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_what_the_latest_model_predicts_per_cluster_is_counted_on_upgrade(bananas_clustered):
    """Version 10 stores the latest predicting model's predictions per cluster and label (the
    Label page's suggestion reads them), counted from the predictions already there."""
    from serieslabeler.models import predict, train_model

    with Workspace.open(bananas_clustered) as ws:
        label_images(ws, [1, 2, 3, 4], "U")
        label_images(ws, [200, 201, 202], "O")
        predict(ws, train_model(ws, "head", max_iter=200).id)
        live = "SELECT m.cluster, p.label, COUNT(*) FROM cluster_members m JOIN predictions p ON p.image_id = m.image_id GROUP BY 1, 2 ORDER BY 1, 2"
        expected = [tuple(r) for r in ws.db.execute(live)]
    db = sqlite3.connect(bananas_clustered / CATALOG)
    db.executescript(f"BEGIN; {UNDO_CLUSTER_PREDICTIONS} {UNDO_LABEL_COUNTS} PRAGMA user_version=9; COMMIT;")
    db.close()
    with Workspace.open(bananas_clustered) as ws:
        stored = [tuple(r) for r in ws.db.execute("SELECT cluster, label, n FROM cluster_predictions WHERE model_id = 1 AND clustering_id = 1 ORDER BY 1, 2")]
        assert stored == expected and len(expected) >= 8


def test_current_labels_are_counted_per_label_and_lose_their_label_index_on_upgrade(bananas_clustered):
    """Version 11 counts the current labels per label and source (the label writer moves the
    counts from then on) and drops the index of current labels by label."""
    from serieslabeler.labels import label_cluster
    from serieslabeler.store import summarize

    with Workspace.open(bananas_clustered) as ws:
        label_cluster(ws, 1, 0, "U")
        label_images(ws, [200, 201], "O")
    db = sqlite3.connect(bananas_clustered / CATALOG)
    db.executescript(f"BEGIN; {UNDO_LABEL_COUNTS} PRAGMA user_version=10; COMMIT;")
    expected = {
        "labels": dict(db.execute("SELECT label, COUNT(*) FROM current_labels GROUP BY label ORDER BY label").fetchall()),
        "labels_by_source": dict(db.execute("SELECT source, COUNT(*) FROM current_labels GROUP BY source ORDER BY source").fetchall()),
    }
    db.close()
    assert expected["labels_by_source"] == {"cluster": expected["labels"]["U"], "manual": 2}
    with Workspace.open(bananas_clustered) as ws:
        indexes = {r[0] for r in ws.db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='current_labels'")}
        assert indexes == {"current_labels_pending"}
        assert {k: summarize(ws)[k] for k in ("labels", "labels_by_source")} == expected
        label_images(ws, [202], "O")
        assert summarize(ws)["labels"]["O"] == expected["labels"]["O"] + 1


def test_opening_a_current_workspace_writes_nothing(tmp_path, bananas):
    root = tmp_path / "ws"
    ingest_bananas(root, bananas / "images", bananas / "metadata.csv")
    Workspace.open(root).close()
    before = (root / CATALOG).read_bytes()
    wal = root / (CATALOG + "-wal")
    wal_before = wal.read_bytes() if wal.exists() else b""
    with Workspace.open(root) as ws:
        assert ws.image_count() == 220
    assert (root / CATALOG).read_bytes() == before
    assert (wal.read_bytes() if wal.exists() else b"") == wal_before


def test_read_only_workspace_reads_and_refuses_writes_in_one_line(tmp_path, bananas):
    root = tmp_path / "ws"
    ingest_bananas(root, bananas / "images", bananas / "metadata.csv")
    with Workspace.open(root, read_only=True) as ws:
        assert ws.image_count() == 220
        with pytest.raises(PipelineError, match="read-only; nothing was changed"):
            label_images(ws, [1], "R")
    with Workspace.open(root) as ws:
        assert ws.db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0] == 0


def test_newer_schema_is_refused(tmp_path, bananas):
    root = tmp_path / "ws"
    ingest_bananas(root, bananas / "images", bananas / "metadata.csv")
    db = sqlite3.connect(root / CATALOG)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(PipelineError, match="newer than this tool's"):
        Workspace.open(root)


def test_workspace_that_is_a_file_or_not_a_database(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("hello")
    code, out = cli("info", "--workspace", a_file)
    assert code == 2 and "is a file, not a workspace folder" in out["error"]
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / CATALOG).write_bytes(b"this is not a database" * 100)
    code, out = cli("info", "--workspace", fake)
    assert code == 2 and "not a usable catalog" in out["error"]
