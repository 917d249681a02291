"""The demo that runs itself: oracle rounds marked as demo events, undone as one (CLI and Home page)."""
from __future__ import annotations

import json

from conftest import cli
from test_app import assert_clean, button, run_page, sample  # noqa: F401 (a fixture)

from serieslabeler.demo import is_sample_workspace
from serieslabeler.labels import current_labels, events, label_images
from serieslabeler.labels.series import boundary_changes
from serieslabeler.loop import list_iterations
from serieslabeler.models.evaluation import held_out_subjects
from serieslabeler.store import Workspace


def test_iterate_rounds_with_the_oracle_are_demo_events_undone_as_one(bananas_embedded):
    code, data = cli("iterate", "--workspace", bananas_embedded, "--oracle", "--rounds", "2", "--metadata", "days=0.5", "--seed", "1")
    assert code == 0, data
    assert len(data["rounds"]) == 2
    with Workspace.open(bananas_embedded) as ws:
        made = [e for e in events(ws) if e["author"] not in ("model",)]
        assert made and {e["author"] for e in made} == {"demo"}
        assert len(current_labels(ws)) > 0
    code, data = cli("undo", "--workspace", bananas_embedded, "--demo")
    assert code == 0 and len(data["events"]) >= 2
    with Workspace.open(bananas_embedded) as ws:
        assert len(current_labels(ws)) == 0
    code, data = cli("undo", "--workspace", bananas_embedded, "--demo")
    assert code == 2 and "no demo to undo" in data["error"]


def test_a_demo_that_runs_out_of_images_stops_there_and_says_so(bananas_embedded):
    assert cli("vocab", "--workspace", bananas_embedded, "--add", "U,R,V,O", "--ordered")[0] == 0
    code, data = cli("iterate", "--workspace", bananas_embedded, "--oracle", "--rounds", "6", "--subjects", "4", "--seed", "1")
    assert code == 0, data
    assert data["asked"] == 6 and 1 <= len(data["rounds"]) < 6
    assert "nothing left to iterate on" in data["stopped"]
    with Workspace.open(bananas_embedded) as ws:
        held = {int(s) for s in held_out_subjects(ws, seed=1)}
        subject_of = dict(ws.db.execute("SELECT id, subject_id FROM images").fetchall())
        done = {int(i) for i in current_labels(ws)["image_id"]}
        assert all(i in done for i, subject in subject_of.items() if subject not in held), "every other image is labeled"
    code, data = cli("iterate", "--workspace", bananas_embedded, "--oracle", "--rounds", "2", "--seed", "1")
    assert code == 2 and "nothing left to iterate on" in data["error"], "a demo with nothing to do at all is an error"


def test_a_demo_on_an_ordered_vocabulary_labels_series_by_their_boundaries(bananas_embedded):
    assert cli("vocab", "--workspace", bananas_embedded, "--add", "U,R,V,O", "--ordered")[0] == 0
    code, data = cli("iterate", "--workspace", bananas_embedded, "--oracle", "--rounds", "2", "--seed", "1")
    assert code == 0, data
    assert all(r["iteration"]["record"]["routing"]["monotone"] for r in data["rounds"] if r["iteration"]["record"]["routing"])
    with Workspace.open(bananas_embedded) as ws:
        made = ws.db.execute("SELECT action, interactions, details FROM label_events WHERE author='demo'").fetchall()
        assert made and {action for action, _, _ in made} == {"label_series"}
        proposals = 0
        for _, interactions, details in made:
            details = json.loads(details)
            boundaries, proposal = [tuple(b) for b in details["boundaries"]], details["proposal"]
            if proposal is None:  # placed by hand: one click per boundary
                assert interactions == len(boundaries) + len(details["excluded"])
            else:  # the model's proposal accepted and corrected, cheaper than by hand
                proposals += 1
                changes = boundary_changes([tuple(b) for b in proposal], boundaries)
                assert interactions == 1 + changes + len(details["excluded"]) and 1 + changes < len(boundaries)
        assert proposals > 0
        truth = dict(ws.db.execute("SELECT image_id, label FROM ground_truth").fetchall())
        labeled = current_labels(ws, include_pending=False)
        series = labeled[labeled["source"] == "series"]
        assert len(series) and all(truth[i] == label for i, label in zip(series["image_id"], series["label"]))
        held = {int(s) for s in held_out_subjects(ws, seed=1)}
        subject_of = dict(ws.db.execute("SELECT id, subject_id FROM images").fetchall())
        assert not {subject_of[int(i)] for i in labeled["image_id"]} & held
    assert cli("undo", "--workspace", bananas_embedded, "--demo")[0] == 0
    with Workspace.open(bananas_embedded) as ws:
        assert len(current_labels(ws)) == 0


def test_a_demo_undo_never_takes_someone_elses_work(bananas_embedded):
    assert cli("iterate", "--workspace", bananas_embedded, "--oracle", "--rounds", "1", "--metadata", "days=0.5")[0] == 0
    with Workspace.open(bananas_embedded) as ws:
        unlabeled = ws.db.execute("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM current_labels) LIMIT 1").fetchone()[0]
        label_images(ws, [unlabeled], "U", author="ana")
    code, data = cli("undo", "--workspace", bananas_embedded, "--demo")
    assert code == 2 and "by ana came after the demo began" in data["error"]
    code, data = cli("iterate", "--workspace", bananas_embedded, "--rounds", "1")
    assert code == 2 and "add --oracle" in data["error"]


def test_the_home_page_runs_and_undoes_the_demo(sample):  # noqa: F811 (the imported fixture)
    app = run_page("home")
    assert_clean(app)
    assert button(app, "Undo the demo").disabled
    next(n for n in app.number_input if n.label == "Rounds").set_value(1).run()
    button(app, "Run the demo").click().run()
    assert_clean(app)
    assert app.success and "iteration 1" in app.success[0].value
    with Workspace.open(sample) as ws:
        assert {e["author"] for e in events(ws)} <= {"demo", "model"} and len(current_labels(ws)) > 0
    button(app, "Undo the demo").click().run()
    assert_clean(app)
    with Workspace.open(sample) as ws:
        assert len(current_labels(ws)) == 0


def test_the_home_page_says_when_the_demo_ran_out_of_images_before_its_last_round(sample):  # noqa: F811 (the imported fixture)
    app = run_page("home")
    next(n for n in app.number_input if n.label == "Rounds").set_value(20).run()
    button(app, "Run the demo").click().run()
    assert_clean(app)
    assert app.success and "iteration" in app.success[0].value
    stopped = [i.value for i in app.info if "The demo stopped after" in i.value]
    assert stopped and "of 20 rounds" in stopped[0] and "nothing left to iterate on" in stopped[0]


def test_the_sample_is_prepared_only_in_a_new_workspace_or_the_samples_own(bananas_workspace, sample_workspace, tmp_path):
    assert is_sample_workspace(tmp_path / "new") and is_sample_workspace(sample_workspace)
    assert not is_sample_workspace(bananas_workspace)
    code, data = cli("demo", "--workspace", bananas_workspace)
    assert code == 2 and "holds a collection of its own" in data["error"], data
    with Workspace.open(bananas_workspace) as ws:
        assert ws.db.execute("SELECT (SELECT COUNT(*) FROM feature_sets) + (SELECT COUNT(*) FROM maps) "
                             "+ (SELECT COUNT(*) FROM clusterings) + (SELECT COUNT(*) FROM samples)").fetchone()[0] == 0
    code, data = cli("demo", "--workspace", sample_workspace)
    assert code == 0, data


def test_a_demo_clusters_what_comes_back_finer_when_a_round_named_too_few_so_labels_keep_growing(sample):  # noqa: F811 (the imported fixture)
    code, data = cli("iterate", "--workspace", sample, "--oracle", "--rounds", "4")
    assert code == 0, data
    with Workspace.open(sample) as ws:
        rounds = [r.record for r in list_iterations(ws)]
    labeled = [sum(n for source, n in r["labels_added"].items() if source != "pseudo") for r in rounds]
    assert len(rounds) >= 2 and all(n > 0 for n in labeled), labeled  # every round names images: none repeats the last
    for before, after in zip(rounds, rounds[1:]):
        if after["sample"]["strategy"] == "routed" and labeled[rounds.index(before)] < 2 * before["interactions"]:
            assert after["clustering"]["k"] == min(2 * before["clustering"]["k"], after["sample"]["size"])
