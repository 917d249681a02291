"""The demo that runs itself: oracle rounds marked as demo events, undone as one (CLI and Home page)."""
from __future__ import annotations

from conftest import cli
from test_app import assert_clean, button, run_page, sample  # noqa: F401 (a fixture)

from serieslabeler.labels import current_labels, events, label_images
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
