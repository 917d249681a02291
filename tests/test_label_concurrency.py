"""Real processes on one real workspace file: concurrent labeling loses no event, and a process
killed in the middle of a labeling write leaves the workspace consistent with its earlier labels."""
from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import sys
import types

import pytest

from serieslabeler import labels
from serieslabeler.store import Workspace

ACTIONS_PER_WORKER = 25
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(autouse=True)
def plain_main(monkeypatch):
    """A spawned process first runs the parent's ``__main__`` file again; after an AppTest in the
    same pytest process that is the last page script AppTest ran (it leaves it there), so the
    workers ran a page, failed and exited 1 before labeling anything. They start from a bare one."""
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


def label_concurrently(root: str, author: str, start, image_ids: list[int]) -> None:
    """Alternate cluster labels, manual labels on images the other worker labels too, and undos."""
    with Workspace.open(root) as ws:
        start.wait(60)
        for k in range(ACTIONS_PER_WORKER):
            if k % 5 == 4 and author == "b":
                labels.undo(ws, author=author)
            elif k % 2:
                labels.label_cluster(ws, 1, k % 8, f"{author}{k}", author=author)
            else:
                labels.label_images(ws, image_ids[k % 5 :: 5], f"{author}{k}", author=author)


def test_two_processes_labeling_at_once_lose_no_event(bananas_clustered):
    with Workspace.open(bananas_clustered) as ws:
        image_ids = labels.cluster_members(ws, 1, 0)[0].tolist()[:20]
    start = SPAWN.Barrier(2)  # both begin once both are up
    workers = [SPAWN.Process(target=label_concurrently, args=(str(bananas_clustered), a, start, image_ids)) for a in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]

    with Workspace.open(bananas_clustered) as ws:
        by_author = dict(ws.db.execute("SELECT author, COUNT(*) FROM label_events GROUP BY author").fetchall())
        assert by_author == {"a": ACTIONS_PER_WORKER, "b": ACTIONS_PER_WORKER}
        assert labels.current_labels(ws).equals(labels.replay_labels(ws))
        # every image carries the label of the latest event that changed it; earlier ones stay in the log
        for image_id, label, origin in ws.db.execute("SELECT image_id, label, event_id FROM current_labels").fetchall():
            last = ws.db.execute(
                "SELECT e.action, i.label, i.prev_event_id FROM label_event_images i JOIN label_events e ON e.id = i.event_id "
                "WHERE i.image_id=? ORDER BY i.event_id DESC LIMIT 1",
                (image_id,),
            ).fetchone()
            assert last["label"] == label
            if last["action"] != "undo":
                assert origin == ws.db.execute("SELECT MAX(event_id) FROM label_event_images WHERE image_id=?", (image_id,)).fetchone()[0]
        conflicts = ws.db.execute(
            "SELECT COUNT(*) FROM (SELECT i.image_id FROM label_event_images i JOIN label_events e ON e.id = i.event_id "
            "WHERE e.action != 'undo' GROUP BY i.image_id HAVING COUNT(DISTINCT e.author) = 2)"
        ).fetchone()[0]
        assert conflicts >= 20
        kept = [json.loads(r[0]).get("kept") for r in ws.db.execute("SELECT details FROM label_events WHERE action='undo'")]
        assert len(kept) == ACTIONS_PER_WORKER // 5 and not any(kept)


def label_and_die(root: str, statement: str) -> None:
    """Label a cluster, but exit abruptly the moment the transaction runs ``statement``."""
    with Workspace.open(root) as ws:
        ws.db.set_trace_callback(lambda sql: os._exit(1) if sql.lstrip().startswith(statement) else None)
        labels.label_cluster(ws, 1, 0, "Torso", author="doomed")


@pytest.mark.parametrize(
    "statement", ["INSERT INTO label_event_images", "INSERT INTO current_labels", "INSERT INTO cluster_label_counts", "INSERT INTO label_counts", "INSERT INTO vocabulary"]
)
def test_process_killed_inside_a_labeling_write_leaves_the_workspace_consistent(bananas_clustered, statement):
    with Workspace.open(bananas_clustered) as ws:
        cluster_0 = labels.cluster_members(ws, 1, 0)[0].tolist()
        labels.label_cluster(ws, 1, 1, "Arm")
        labels.label_images(ws, cluster_0[:3], "Hand")
        before = labels.current_labels(ws)
        status_before = labels.cluster_status(ws, 1)
        events_before = ws.db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0]

    child = SPAWN.Process(target=label_and_die, args=(str(bananas_clustered), statement))
    child.start()
    child.join(60)
    assert child.exitcode == 1

    with Workspace.open(bananas_clustered) as ws:
        assert ws.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert ws.db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0] == events_before
        assert ws.db.execute(
            "SELECT COUNT(*) FROM label_event_images WHERE event_id NOT IN (SELECT id FROM label_events)"
        ).fetchone()[0] == 0
        assert labels.current_labels(ws).equals(before)
        assert labels.current_labels(ws).equals(labels.replay_labels(ws))
        assert labels.cluster_status(ws, 1) == status_before
        assert labels.vocabulary(ws) == ["Arm", "Hand"]
        event = labels.label_cluster(ws, 1, 0, "Torso")  # the workspace is not left locked
        assert event.id == events_before + 1
    with sqlite3.connect(bananas_clustered / "catalog.sqlite") as db:  # a fresh reader agrees
        assert db.execute("SELECT COUNT(*) FROM current_labels WHERE label='Torso'").fetchone()[0] == len(cluster_0)
