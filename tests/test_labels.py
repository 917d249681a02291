"""Labeling on real clusterings of the real bananas images: label events, exclusions, undo and
redo, pseudo-labels, vocabulary, review order, sessions, and the log as the source of truth."""
from __future__ import annotations

import json
import random
from datetime import datetime

import numpy as np
import pytest
from conftest import cli

from serieslabeler import labels
from serieslabeler.clustering import load_clustering, split_cluster
from serieslabeler.errors import PipelineError
from serieslabeler.store import Workspace

CLUSTERING = 1


@pytest.fixture
def ws(bananas_clustered):
    with Workspace.open(bananas_clustered) as workspace:
        yield workspace


def states(workspace: Workspace) -> dict[int, tuple]:
    frame = labels.current_labels(workspace)
    return {int(r.image_id): (r.label, r.source, r.confidence, r.status) for r in frame.itertuples()}


def members(workspace: Workspace, cluster: int) -> np.ndarray:
    return load_clustering(workspace, CLUSTERING).members(cluster)


def assert_log_is_truth(workspace: Workspace) -> None:
    assert labels.current_labels(workspace).equals(labels.replay_labels(workspace))


def assert_cluster_counts_are_truth(workspace: Workspace) -> None:
    """The label counts per cluster that every label change moves equal a count over the whole tables."""
    stored = {tuple(r[:3]): r[3] for r in workspace.db.execute("SELECT clustering_id, cluster, label, n FROM cluster_label_counts WHERE n != 0")}
    counted = {tuple(r[:3]): r[3] for r in workspace.db.execute(
        "SELECT m.clustering_id, m.cluster, c.label, COUNT(*) FROM cluster_members m JOIN current_labels c "
        "ON c.image_id = m.image_id WHERE c.status = 'accepted' GROUP BY m.clustering_id, m.cluster, c.label"
    )}
    assert stored == counted


def assert_label_counts_are_truth(workspace: Workspace) -> None:
    """The counts per label and source that every label change moves equal a count of the table."""
    stored = {tuple(r[:2]): r[2] for r in workspace.db.execute("SELECT label, source, n FROM label_counts")}
    counted = {tuple(r[:2]): r[2] for r in workspace.db.execute("SELECT label, source, COUNT(*) FROM current_labels GROUP BY label, source")}
    assert stored == counted


def test_label_cluster_with_exclusions_labels_every_other_member(ws):
    cluster = 2
    ids, distances = labels.cluster_members(ws, CLUSTERING, cluster)
    assert sorted(ids) == sorted(members(ws, cluster))
    excluded_unlabeled, excluded_manual, overwritten = (int(i) for i in ids[:3])
    manual = labels.label_images(ws, [excluded_manual, overwritten], "Hand")

    event = labels.label_cluster(
        ws, CLUSTERING, cluster, "Arm", excluded=[excluded_unlabeled, excluded_manual], cluster_confidence=0.8, a=0.5
    )

    expected_confidence = 0.8 * np.exp(-0.5 * distances / np.median(distances))
    now = states(ws)
    for image_id, confidence in zip(ids, expected_confidence):
        image_id = int(image_id)
        if image_id == excluded_unlabeled:
            assert image_id not in now
        elif image_id == excluded_manual:
            assert now[image_id] == ("Hand", "manual", 1.0, "accepted")
        else:
            label, source, stored, status = now[image_id]
            assert (label, source, status) == ("Arm", "cluster", "accepted")
            assert stored == pytest.approx(confidence, rel=1e-12)
    assert len(now) == len(ids) - 1  # nothing outside the cluster was touched
    assert event.changed == len(ids) - 2 and event.interactions == 3
    assert event.details["excluded"] == sorted([excluded_unlabeled, excluded_manual])
    assert labels.interaction_count(ws) == 2 + 3
    assert labels.vocabulary(ws) == ["Hand", "Arm"]
    assert manual.id < event.id
    assert_log_is_truth(ws)


def test_label_cluster_rejects_bad_requests_and_writes_nothing(ws):
    ids, _ = labels.cluster_members(ws, CLUSTERING, 0)
    outsider = int(members(ws, 1)[0])
    with pytest.raises(PipelineError, match=f"image {outsider} is not a member of cluster 0"):
        labels.label_cluster(ws, CLUSTERING, 0, "Arm", excluded=[outsider])
    with pytest.raises(PipelineError, match="every image of cluster 0 is excluded"):
        labels.label_cluster(ws, CLUSTERING, 0, "Arm", excluded=ids)
    with pytest.raises(PipelineError, match="clustering 1 has no cluster 99 \\(clusters: 0..7\\)"):
        labels.label_cluster(ws, CLUSTERING, 99, "Arm")
    with pytest.raises(PipelineError, match="no clustering 5"):
        labels.skip_cluster(ws, 5, 0)
    code, error = cli("labels", "--workspace", ws.root, "--clustering", "5")
    assert code == 2 and f"no clustering 5 in {ws.root} (known: {CLUSTERING})" in error["error"]
    with pytest.raises(PipelineError, match="p_c must be in"):
        labels.label_cluster(ws, CLUSTERING, 0, "Arm", cluster_confidence=1.5)
    with pytest.raises(PipelineError, match="no image with id 99999"):
        labels.label_images(ws, [1, 99999], "Arm")
    with pytest.raises(PipelineError, match="comma"):
        labels.label_images(ws, [1], "Arm, left")
    assert ws.db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0] == 0
    assert states(ws) == {} and labels.vocabulary(ws) == []


def test_a_relabel_undone_with_the_first_label_is_redone_after_it(ws):
    """Redoing the first label gives it back as a new event; redoing the relabel must still
    find the images as the relabel found them (the redo carries the first label's decision)."""
    labels.label_cluster(ws, CLUSTERING, 0, "Arm")
    after_first = states(ws)
    labels.label_cluster(ws, CLUSTERING, 0, "Head")
    after_second = states(ws)
    labels.undo(ws, 2)
    assert states(ws) == {}
    labels.redo(ws)
    assert states(ws) == after_first
    again = labels.redo(ws)
    assert again.changed == len(after_second) and not again.details["kept"]
    assert states(ws) == after_second
    labels.undo(ws)
    assert states(ws) == after_first, "undoing the redone relabel gives the first label back"
    labels.undo(ws)
    assert states(ws) == {}
    labels.redo(ws)
    labels.redo(ws)
    assert states(ws) == after_second
    replayed = labels.replay_labels(ws)
    assert replayed.equals(labels.current_labels(ws))


def test_undo_twice_then_redo_twice(ws):
    first = labels.label_cluster(ws, CLUSTERING, 0, "Arm")
    after_first = states(ws)
    labels.label_cluster(ws, CLUSTERING, 1, "Head", excluded=[int(members(ws, 1)[0])])
    after_second = states(ws)

    undone = labels.undo(ws, 2)
    assert [e.reverses for e in undone] == [first.id + 1, first.id]
    assert states(ws) == {}
    assert labels.vocabulary(ws) == []
    with pytest.raises(PipelineError, match="nothing to undo"):
        labels.undo(ws)

    redone = labels.redo(ws)
    assert redone.action == "label_cluster" and redone.details["redo_of"] == first.id
    assert states(ws) == after_first
    labels.redo(ws)
    assert states(ws) == after_second
    with pytest.raises(PipelineError, match="nothing to redo"):
        labels.redo(ws)

    labels.undo(ws)
    labels.label_images(ws, [int(members(ws, 2)[0])], "Torso")  # a new action ends the redo chain
    with pytest.raises(PipelineError, match="nothing to redo"):
        labels.redo(ws)
    assert labels.interaction_count(ws) == 1 + 2 + 1  # undo and redo are free; undone effort still counts
    log = labels.events(ws)
    assert [e["undone"] for e in log] == [False, False, True, False, False, False, True, True]
    assert_log_is_truth(ws)


def test_undo_restores_earlier_manual_and_pending_labels(ws):
    ids = [int(i) for i in members(ws, 3)]
    manual = labels.label_images(ws, ids[:3], "Hand")
    pseudo = labels.add_pseudo_labels(ws, ids[3:5], ["Foot", "Head"], [0.9, 0.7], model_id=1)
    before = states(ws)

    labels.label_cluster(ws, CLUSTERING, 3, "Arm")
    assert {states(ws)[i][0] for i in ids} == {"Arm"}
    labels.undo(ws)

    assert states(ws) == before
    origins = dict(zip(*[labels.current_labels(ws)[c] for c in ("image_id", "event_id")]))
    assert [origins[i] for i in ids[:5]] == [manual.id] * 3 + [pseudo.id] * 2
    assert labels.vocabulary(ws) == ["Hand", "Foot", "Head"]
    assert_log_is_truth(ws)


def test_interactions_and_session_rates(ws):
    session = labels.start_session(ws, "expert")
    ids = [int(i) for i in members(ws, 4)]
    labels.label_cluster(ws, CLUSTERING, 4, "Legs", excluded=ids[:3], session_id=session)  # 1 + 3
    labels.label_images(ws, ids[:2], "Foot", session_id=session)  # 2
    labels.skip_cluster(ws, CLUSTERING, 5, session_id=session, reason="mixed")  # 1
    others = [int(i) for i in members(ws, 6)[:4]]
    labels.add_pseudo_labels(ws, others, ["Arm", "Arm", "Head", "Head"], [0.9, 0.8, 0.7, 0.6], model_id=1)  # 0
    labels.accept_pseudo(ws, label="Arm", session_id=session)  # 1 for the whole class
    labels.reject_pseudo(ws, others[2:3], session_id=session)  # 1 per image named
    labels.undo(ws, session_id=session)  # 0
    labels.label_images(ws, [int(members(ws, 7)[0])], "Head", author="other")  # outside the session: 1

    assert labels.interaction_count(ws) == 4 + 2 + 1 + 1 + 1 + 1
    assert labels.interaction_count(ws, session_id=session) == 4 + 2 + 1 + 1 + 1
    assert labels.interaction_count(ws, author="other") == 1
    stats = labels.end_session(ws, session)
    assert stats.interactions == 9
    assert stats.images_labeled == (len(ids) - 3) + 2 + 2  # cluster members, the 2 by hand, the 2 accepted
    assert stats.images_per_interaction == pytest.approx(stats.images_labeled / 9)
    started, ended = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (stats.started_at, stats.ended_at))
    assert stats.minutes == pytest.approx((ended - started).total_seconds() / 60) and stats.minutes < 5
    with pytest.raises(PipelineError, match="ended"):
        labels.label_images(ws, ids[:1], "Foot", session_id=session)
    with pytest.raises(PipelineError, match="no labeling session 42"):
        labels.skip_cluster(ws, CLUSTERING, 0, session_id=42)
    status = labels.cluster_status(ws, CLUSTERING)
    assert [c["state"] for c in status] == ["open"] * 4 + ["labeled", "skipped", "open", "open"]
    assert (status[4]["top_label"], status[4]["top_count"], status[0]["top_label"]) == ("Legs", len(ids) - 3, None)


def test_pseudo_labels_review_by_ids_and_class_and_training_weights(ws):
    ids = [int(i) for i in members(ws, 0)[:6]]
    labels.label_images(ws, ids[:1], "Torso")
    event = labels.add_pseudo_labels(ws, ids, ["Arm", "Arm", "Arm", "Head", "Head", "Head"], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], model_id=3, iteration=2)
    assert event.details == {"model_id": 3, "kept": [ids[0]], "vocabulary": {"added": ["Arm", "Head"], "removed": [], "renamed": []}}
    now = states(ws)
    assert now[ids[0]] == ("Torso", "manual", 1.0, "accepted")
    assert now[ids[1]] == ("Arm", "pseudo", 0.8, "pending")

    image_ids, _, _ = labels.training_labels(ws)
    assert image_ids.tolist() == [ids[0]]  # pending labels do not train
    labels.accept_pseudo(ws, label="arm")  # class names match the vocabulary regardless of case
    labels.reject_pseudo(ws, [ids[3]])
    labels.accept_pseudo(ws, [ids[4]])
    with pytest.raises(PipelineError, match=f"image {ids[3]} has no pending pseudo-label"):
        labels.accept_pseudo(ws, [ids[3]])
    with pytest.raises(PipelineError, match="no pending pseudo-labels of class 'Arm'"):
        labels.reject_pseudo(ws, label="Arm")

    image_ids, names, weights = labels.training_labels(ws)
    assert dict(zip(image_ids.tolist(), zip(names, weights))) == {
        ids[0]: ("Torso", 1.0), ids[1]: ("Arm", 0.8), ids[2]: ("Arm", 0.7), ids[4]: ("Head", 0.5)
    }
    assert states(ws)[ids[5]][3] == "pending" and ids[3] not in states(ws)
    assert_log_is_truth(ws)


def test_vocabulary_rename_and_merge_are_events_and_history_keeps_old_names(ws):
    assert labels.add_default_vocabulary(ws).details["vocabulary"]["added"] == labels.DEFAULT_VOCABULARY
    assert labels.add_default_vocabulary(ws) is None
    ids = [int(i) for i in members(ws, 1)]
    first = labels.label_images(ws, ids[:2], "arm")  # the vocabulary's spelling is used
    labels.label_images(ws, ids[2:4], "Hand")
    assert first.label == "Arm"

    labels.rename_label(ws, "Arm", "Upper limb")
    assert {states(ws)[i][0] for i in ids[:2]} == {"Upper limb"}
    history = ws.db.execute("SELECT DISTINCT label FROM label_event_images WHERE event_id=?", (first.id,)).fetchall()
    assert [r[0] for r in history] == ["Arm"]
    assert labels.vocabulary(ws)[0] == "Upper limb"  # keeps its place
    with pytest.raises(PipelineError, match="already exists; merge"):
        labels.rename_label(ws, "Hand", "upper limb")

    labels.merge_labels(ws, ["Hand"], into="Upper limb")
    assert {states(ws)[i][0] for i in ids[:4]} == {"Upper limb"}
    assert "Hand" not in labels.vocabulary(ws)
    labels.undo(ws, 2)
    assert [states(ws)[i][0] for i in ids[:4]] == ["Arm", "Arm", "Hand", "Hand"]
    assert sorted(labels.vocabulary(ws)) == sorted(labels.DEFAULT_VOCABULARY)  # a restored name comes last
    assert_log_is_truth(ws)


def test_removing_an_unused_label_is_an_event_undo_restores_it_in_the_order(ws):
    labels.add_labels(ws, ["U", "R", "V", "O"], ordered=True)
    ids = [int(i) for i in members(ws, 1)]
    labels.label_images(ws, ids[:2], "R")
    with pytest.raises(PipelineError, match="label 'R' is the label of 2 image"):
        labels.remove_labels(ws, ["r"])
    with pytest.raises(PipelineError, match="not in the vocabulary"):
        labels.remove_labels(ws, ["Z"])
    event = labels.remove_labels(ws, ["u", "O"])  # the vocabulary's spelling is used
    assert event.action == "vocab_remove" and event.details["removed"] == ["U", "O"]
    assert labels.vocabulary(ws) == ["R", "V"] and labels.vocabulary_order(ws) == ["R", "V"]
    assert {states(ws)[i][0] for i in ids[:2]} == {"R"}
    labels.undo(ws)
    assert sorted(labels.vocabulary(ws)) == ["O", "R", "U", "V"] and labels.vocabulary_order(ws) == ["U", "R", "V", "O"]
    code, out = cli("vocab", "--workspace", ws.root, "--remove", "O")
    assert code == 0 and out["vocabulary"] == ["R", "V", "U"] and out["order"] == ["U", "R", "V"]
    code, out = cli("vocab", "--workspace", ws.root, "--remove", "R")
    assert code == 2 and "merge it into another label" in out["error"]
    assert_log_is_truth(ws)


def test_review_order_and_representatives(ws):
    ids, distances = labels.cluster_members(ws, CLUSTERING, 0)
    atypical = labels.review_order(ws, CLUSTERING, 0)
    by_id = dict(zip(ids.tolist(), distances))
    assert [by_id[i] for i in atypical] == sorted(distances, reverse=True)
    assert atypical.tolist() == members(ws, 0).tolist()
    assert labels.review_order(ws, CLUSTERING, 0, "typical").tolist() == atypical[::-1].tolist()
    interleaved = labels.review_order(ws, CLUSTERING, 0, "interleaved").tolist()
    assert interleaved[:4] == [atypical[0], atypical[-1], atypical[1], atypical[-2]]
    assert sorted(interleaved) == sorted(ids.tolist())

    picks = labels.representatives(ws, CLUSTERING, 0, n=6)
    assert len(set(picks.tolist())) == 6 and set(picks.tolist()) <= set(ids.tolist())
    assert picks[0] == ids[np.argmin(distances)]
    assert labels.representatives(ws, CLUSTERING, 7, n=500).tolist() == labels.review_order(ws, CLUSTERING, 7, "typical").tolist()


ACTIONS = ("cluster", "cluster", "images", "unlabel", "skip", "pseudo", "accept", "reject", "undo", "undo", "redo", "rename", "merge")


def random_action(workspace: Workspace, rng: random.Random, all_ids: list[int]) -> None:
    names = ["Arm", "Hand", "Foot", "Head", "Torso"]
    action = rng.choice(ACTIONS)
    if action == "cluster":
        cluster = rng.randrange(8)
        ids = labels.cluster_members(workspace, CLUSTERING, cluster)[0].tolist()
        labels.label_cluster(workspace, CLUSTERING, cluster, rng.choice(names), excluded=rng.sample(ids, rng.randrange(3)), a=rng.random())
    elif action == "images":
        labels.label_images(workspace, rng.sample(all_ids, rng.randrange(1, 6)), rng.choice(names))
    elif action == "unlabel":
        labels.unlabel_images(workspace, rng.sample(sorted(states(workspace)), 2))
    elif action == "skip":
        labels.skip_cluster(workspace, CLUSTERING, rng.randrange(8))
    elif action == "pseudo":
        ids = rng.sample(all_ids, 10)
        labels.add_pseudo_labels(workspace, ids, [rng.choice(names) for _ in ids], [rng.random() for _ in ids], model_id=1)
    elif action in ("accept", "reject"):
        review = labels.accept_pseudo if action == "accept" else labels.reject_pseudo
        pending = {i: s[0] for i, s in states(workspace).items() if s[3] == "pending"}
        if rng.random() < 0.5:
            review(workspace, label=rng.choice(sorted(set(pending.values()))))
        else:
            review(workspace, rng.sample(sorted(pending), min(len(pending), 3)))
    elif action == "undo":
        labels.undo(workspace, rng.randrange(1, 3), any_author=True)  # one stack, as before authors
        if rng.random() < 0.5:
            labels.redo(workspace, any_author=True)
    elif action == "redo":
        labels.redo(workspace, any_author=True)
    elif action == "rename":
        old = rng.choice(labels.vocabulary(workspace))
        labels.rename_label(workspace, old, old + "*" if len(old) < 12 else old.rstrip("*"))
    else:
        labels.merge_labels(workspace, rng.sample(labels.vocabulary(workspace), 1), into=rng.choice(labels.vocabulary(workspace)))


def test_current_labels_always_equal_a_replay_of_the_log(ws):
    """Property-style: after every action of a seeded random sequence the maintained table equals
    the replay, and the label counts per cluster (moved by every change; a clustering made halfway
    counts the labels it finds) equal a recount, the log only grows (rows never change), a
    failed action writes nothing, and undoing everything brings back the empty start."""
    rng = random.Random(20240607)
    all_ids = [r[0] for r in ws.db.execute("SELECT image_id FROM cluster_members WHERE clustering_id=1")]
    log_so_far: list[tuple] = []
    applied = 0
    for step in range(80):
        if step == 40:
            split_cluster(ws, CLUSTERING, 0)
        before = states(ws)
        try:
            random_action(ws, rng, all_ids)
            applied += 1
        except (PipelineError, IndexError, ValueError):
            assert states(ws) == before
        assert_log_is_truth(ws)
        assert_cluster_counts_are_truth(ws)
        assert_label_counts_are_truth(ws)
        log = [tuple(r) for r in ws.db.execute(
            "SELECT e.*, i.* FROM label_events e LEFT JOIN label_event_images i ON i.event_id = e.id ORDER BY e.id, i.image_id"
        )]
        assert log[: len(log_so_far)] == log_so_far
        log_so_far = log
    assert applied > 40
    kept = [json.loads(r[0]).get("kept") for r in ws.db.execute("SELECT details FROM label_events WHERE reverses IS NOT NULL")]
    assert len(kept) > 5 and not any(kept)  # no undo or redo found an image changed behind its back

    while True:
        try:
            labels.undo(ws, 10, any_author=True)
        except PipelineError:
            break
    assert states(ws) == {} and labels.vocabulary(ws) == []
    assert_log_is_truth(ws)
    assert_cluster_counts_are_truth(ws)
    assert_label_counts_are_truth(ws)
    assert ws.db.execute("SELECT COUNT(*) FROM cluster_label_counts WHERE n != 0").fetchone()[0] == 0


def test_cli_label_skip_undo_redo_vocab_pseudo_labels(bananas_clustered):
    ws = bananas_clustered
    with Workspace.open(ws) as workspace:
        ids, size_2 = members(workspace, 0), len(members(workspace, 2))
    code, data = cli("vocab", "--workspace", ws, "--defaults")
    assert code == 0 and data["vocabulary"] == labels.DEFAULT_VOCABULARY
    code, data = cli("label", "--workspace", ws, "--clustering", 1, "--cluster", 0, "--as", "Full Body", "--exclude", f"{ids[0]},{ids[1]}")
    assert code == 0 and data["interactions"] == 3 and data["events"][0]["changed"] == len(ids) - 2
    code, data = cli("label-images", "--workspace", ws, "--images", f"{ids[0]}", "--as", "Stake")
    assert code == 0 and data["interactions"] == 4
    code, data = cli("skip", "--workspace", ws, "--clustering", 1, "--cluster", 1)
    assert code == 0 and data["interactions"] == 5
    code, data = cli("undo", "--workspace", ws, "--n", 2)
    assert code == 0 and [e["action"] for e in data["events"]] == ["undo", "undo"]
    code, data = cli("redo", "--workspace", ws)
    assert code == 0 and data["events"][0]["action"] == "label_images"
    code, data = cli("labels", "--workspace", ws, "--clustering", 1)
    assert code == 0 and data["by_label"] == {"Full Body": {"accepted": len(ids) - 2}, "Stake": {"accepted": 1}}
    assert data["interactions"] == 5 and [c["state"] for c in data["clusters"]][:2] == ["labeled", "open"]
    code, data = cli("vocab", "--workspace", ws, "--rename", "Stake", "--to", "Pole")
    assert code == 0 and "Pole" in data["vocabulary"]
    code, data = cli("pseudo", "--workspace", ws, "accept")
    assert code == 2 and "no pending pseudo-labels" in data["error"]
    code, data = cli("label", "--workspace", ws, "--clustering", 1, "--cluster", 0, "--as", "Arm", "--exclude", "x1")
    assert code == 2 and "'x1' is not an image id" in data["error"]
    code, data = cli("session", "--workspace", ws, "start", "--author", "expert")
    assert code == 0
    code, data = cli("label", "--workspace", ws, "--clustering", 1, "--cluster", 2, "--as", "Arm", "--session", data["session"])
    code, data = cli("session", "--workspace", ws, "stats", "--id", 1)
    assert code == 0 and data["interactions"] == 1 and data["images_labeled"] == size_2
