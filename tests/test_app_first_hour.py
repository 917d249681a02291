"""The first hour of a new user, in the real app (AppTest): a new collection from Home, a column
mapping that refuses to guess, no label applied without a choice, idempotent routing."""
from __future__ import annotations

import pytest
from conftest import SAMPLE
from test_app import assert_clean, button, param, run_page, sample  # noqa: F401  (sample is a fixture)

from serieslabeler.store import Workspace

NAMES = sorted(p.name for p in (SAMPLE / "images").iterdir())[:6]


@pytest.fixture
def root(sample, tmp_path, monkeypatch):
    """The folder the app makes new collections in."""
    folder = tmp_path / "collections"
    folder.mkdir()
    monkeypatch.setenv("LABELER_ROOT", str(folder))
    return folder


def sample_csv(rename: dict[str, str] | None = None) -> bytes:
    """The sample's CSV rows for ``NAMES``, with columns renamed as asked."""
    lines = (SAMPLE / "metadata.csv").read_text().splitlines()
    header = ",".join((rename or {}).get(c, c) for c in lines[0].split(","))
    rows = [line for line in lines[1:] if line.split(",")[0] in NAMES]
    return ("\n".join([header, *rows]) + "\n").encode()


def start_new_collection(name: str, csv: bytes):
    app = run_page("home")
    app.text_input(key="new_name").set_value(name)
    app.file_uploader(key="new_images").set_value([(n, (SAMPLE / "images" / n).read_bytes(), "image/jpeg") for n in NAMES])
    app.file_uploader(key="new_metadata").set_value(("metadata.csv", csv, "text/csv"))
    return app.run()


def has_button(app, label: str) -> bool:
    return any(b.label.startswith(label) for b in app.button)


def test_a_new_collection_from_home_is_ingested_into_a_workspace_under_the_root(root):
    app = start_new_collection("Banana series / 1", sample_csv())
    assert_clean(app)
    assert app.selectbox(key="new_subject").value == "fruit"
    assert any("A guess" in c.value and "fruit" in c.value for c in app.caption), "a pre-filled role is said to be a guess"
    button(app, "Ingest").click().run()
    assert_clean(app)
    target = root / "Banana-series-1"
    assert "6 added" in app.success[0].value
    assert param(app, "ws") == str(target)
    with Workspace.open(target) as workspace:
        assert workspace.image_count() == 6
    again = start_new_collection("Banana series / 1", sample_csv())
    assert any("already exists" in e.value for e in again.error), "an existing name is refused"
    assert not has_button(again, "Ingest")


def test_a_subject_column_that_is_not_recognisable_is_not_ingested_until_subject_is_chosen(root):
    app = start_new_collection("plots", sample_csv({"fruit": "plot"}))
    assert not app.exception
    assert app.selectbox(key="new_subject").value == "(choose a column)"
    assert any("choose the Subject column" in w.value for w in app.warning)
    assert not has_button(app, "Ingest"), "nothing can be ingested before Subject is chosen"
    assert not (root / "plots").exists()
    app.selectbox(key="new_subject").set_value("plot").run()
    button(app, "Ingest").click().run()
    assert_clean(app)
    with Workspace.open(root / "plots") as workspace:
        assert workspace.image_count() == 6
        assert workspace.db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0] == len({n.split("_")[0] for n in NAMES})


def test_one_column_cannot_take_two_roles(root):
    app = start_new_collection("twice", sample_csv())
    app.selectbox(key="new_subject").set_value("file").run()
    assert any("both Subject and File name" in e.value for e in app.error)
    assert not has_button(app, "Ingest")
    app.selectbox(key="new_file").set_value("(find it)").run()
    assert any("every photo would be its own subject" in w.value for w in app.warning), "as many subjects as images is a warning"
