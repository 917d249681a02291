"""The first hour of a new user, in the real app (AppTest): a new collection from Home, a column
mapping that refuses to guess, no label applied without a choice, idempotent routing."""
from __future__ import annotations

import pytest
from conftest import SAMPLE
from streamlit.testing.v1.errors import AppTestError
from test_app import add_vocabulary, assert_clean, button, param, run_page, sample  # noqa: F401  (sample is a fixture)

from serieslabeler.labels import label_images
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


def train_and_predict(root) -> int:
    """Two clusters labeled by their majority, a head trained on them, predictions for the rest; the model id."""
    from test_app import label_two_clusters_by_their_majority

    from serieslabeler.models import predict, train_model

    label_two_clusters_by_their_majority(root)
    with Workspace.open(root) as workspace:
        model = train_model(workspace, "head", seed=0)
        predict(workspace, model.id)
        return model.id


def test_the_label_picker_starts_empty_and_l_with_no_chosen_label_labels_nothing(sample):
    from serieslabeler.labels import current_labels, interaction_count

    add_vocabulary(sample, "U", "R", "V", "O")
    app = run_page("label")
    picker = next(s for s in app.selectbox if s.label == "Label")
    assert picker.value is None, "no label is preselected"
    label_button = next(b for b in app.button if b.label.startswith("Label "))
    assert label_button.disabled and label_button.proto.shortcut.lower() == "l"
    with pytest.raises(AppTestError, match="disabled"):
        label_button.click()  # what the L key does on a disabled button: nothing
    app.run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert current_labels(workspace).empty and interaction_count(workspace) == 0


def test_the_model_suggestion_is_shown_with_its_confidence_but_not_chosen(sample):
    from serieslabeler.labels import cluster_status, current_labels
    from serieslabeler.loop import suggested_label

    model_id = train_and_predict(sample)
    with Workspace.open(sample) as workspace:
        clustering = workspace.db.execute("SELECT MAX(id) FROM clusterings").fetchone()[0]
        open_cluster = next(row["cluster"] for row in cluster_status(workspace, clustering) if row["state"] == "open")
        suggestion = suggested_label(workspace, clustering, open_cluster)
        before = len(current_labels(workspace))
    assert suggestion.model_id == model_id and 0 < suggestion.confidence <= 1 and 0 < suggestion.share <= 1
    app = run_page("label", clustering=clustering, cluster=open_cluster)
    assert_clean(app)
    assert next(s for s in app.selectbox if s.label == "Label").value is None
    assert any(c.value.startswith("Suggested: ") and "mean confidence" in c.value for c in app.caption)
    button(app, f"Use {suggestion.label}").click().run()
    assert next(s for s in app.selectbox if s.label == "Label").value == suggestion.label
    with Workspace.open(sample) as workspace:
        assert len(current_labels(workspace)) == before, "taking the suggestion labels nothing by itself"


def test_route_twice_gives_one_routed_sample_and_train_twice_one_model(sample):
    from test_app import label_two_clusters_by_their_majority, metric

    from serieslabeler.models import list_models
    from serieslabeler.sampling import list_samples

    label_two_clusters_by_their_majority(sample)
    app = run_page("train")
    button(app, "Train on the accepted labels").click().run()
    button(app, "Train on the accepted labels").click().run()
    assert_clean(app)
    assert any("already trained" in i.value for i in app.info)
    with Workspace.open(sample) as workspace:
        assert len(list_models(workspace)) == 1
    button(app, "Predict the unlabeled images").click().run()
    next(s for s in app.slider if s.label == "Confidence threshold").set_value(1.0).run()
    assert int(metric(app, "Sent to clustering")) > 0
    for _ in range(2):
        button(app, "Route").click().run()
        assert_clean(app)
    with Workspace.open(sample) as workspace:
        routed = [s for s in list_samples(workspace) if s["strategy"] == "routed"]
    assert len(routed) == 1, routed
    assert f"sample {routed[0]['id']}" in app.success[0].value


def test_the_sample_page_defaults_to_subjects_says_which_stages_it_covers_and_saves_once(sample):
    from serieslabeler.sampling import list_samples

    app = run_page("sample")
    assert_clean(app)
    assert next(s for s in app.selectbox if s.label == "Strategy").value == "subjects"
    assert any(c.value.startswith("By ground truth, the sample holds") for c in app.caption)
    with Workspace.open(sample) as workspace:
        before = len(list_samples(workspace))
    button(app, "Save this sample").click().run()
    assert any("already saved as sample" in i.value for i in app.info), "the demo already saved this subjects sample"
    with Workspace.open(sample) as workspace:
        assert len(list_samples(workspace)) == before


def test_the_viewer_opens_an_original_with_its_metadata_and_steps_through_the_cluster(sample):
    from serieslabeler.labels import review_order

    with Workspace.open(sample) as workspace:
        clustering = workspace.db.execute("SELECT MAX(id) FROM clusterings").fetchone()[0]
        members = review_order(workspace, clustering, 0).tolist()
    app = run_page("label", clustering=clustering, cluster=0)
    app.button(key=f"view_{members[0]}").click().run()
    assert_clean(app)
    assert param(app, "view") == str(members[0])
    assert any("Photo 1 of" in m.value for m in app.markdown)
    table = next(df.value for df in app.dataframe if "value" in df.value.columns)
    shown = dict(zip(table.iloc[:, 0], table["value"]))
    assert {"subject", "taken", "days since the subject's first photo", "group"} <= set(shown)
    assert "T" not in shown["taken"] and "2020" in shown["taken"]
    app.button(key="viewer_next").click().run()
    assert param(app, "view") == str(members[1])
    app.slider(key="viewer_zoom").set_value(3.0).run()
    assert_clean(app)
    app.button(key="viewer_close").click().run()
    assert "view" not in app.query_params


def test_the_display_setting_is_kept_per_person_in_the_workspace(sample):
    app = run_page("series")
    app.slider(key="display_brightness").set_value(2.0).run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert '"brightness": 2.0' in workspace.get_meta("display:local")
    again = run_page("label")
    assert again.slider(key="display_brightness").value == 2.0, "a new session starts from the person's setting"


def test_export_is_one_click_with_its_real_size(sample):
    from test_app import label_two_clusters_by_their_majority

    label_two_clusters_by_their_majority(sample)
    app = run_page("export")
    assert_clean(app)
    label = app.get("download_button")[0].proto.label
    assert label.startswith("Download labels.csv (") and label.endswith("kB)"), label
    app.radio[0].set_value("imagefolder").run()
    assert "about" in app.get("download_button")[0].proto.label and "0.0 MB" not in app.get("download_button")[0].proto.label


def test_the_sample_page_offers_only_what_is_left_to_sample(sample):  # noqa: F811 (the imported fixture)
    with Workspace.open(sample) as workspace:
        rows = workspace.db.execute("SELECT i.id, s.name FROM images i JOIN subjects s ON s.id = i.subject_id ORDER BY i.id").fetchall()
        names = sorted({name for _, name in rows})
        label_images(workspace, [i for i, name in rows if name != names[0]], "R", author="test")
    app = run_page("sample")
    assert_clean(app)  # a slider cannot run from 1 to 1: one subject left is said, not offered
    assert any(c.value == "Subjects: 1 (the only one left to sample)" for c in app.caption)
    assert any(c.value.startswith("By ground truth, the sample holds") for c in app.caption)
    with Workspace.open(sample) as workspace:
        label_images(workspace, [i for i, name in rows if name == names[0]], "R", author="test")
    app.run()
    assert_clean(app)
    assert any("nothing is left to sample" in i.value for i in app.info)
    next(t for t in app.toggle if t.label == "Include labeled").set_value(True).run()
    assert_clean(app)
    assert next(s for s in app.slider if s.label == "Subjects").max == len(names)
