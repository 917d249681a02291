"""Safe on a shared lab server (issue 14): listening, one root, no code from data, authors,
stale tabs, and every bad input refused with one message, exit 2 and nothing written."""
from __future__ import annotations

import csv
import os
import pickle
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from conftest import BANANAS, BANANAS_MAPPING, ROOT, SAMPLE, cli, served_on
from streamlit.testing.v1 import AppTest
from test_app import from_server_folders, run_page

from serieslabeler.labels import add_labels
from serieslabeler.store import Workspace

APP = ROOT / "dashboard" / "app.py"
TIMEOUT = 180


@pytest.fixture
def served(sample_workspace, monkeypatch):
    """The prepared sample as the app's default workspace, its folder the app's root; no password."""
    monkeypatch.setenv("LABELER_WORKSPACE", str(sample_workspace))
    monkeypatch.delenv("LABELER_ROOT", raising=False)
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    monkeypatch.delenv("LABELER_IMPORT_ROOTS", raising=False)
    with served_on("127.0.0.1"):
        yield sample_workspace


def column_pickers(app: AppTest) -> list:
    """The Add images tab's column mapping (shown only once a CSV could be read)."""
    return [s for s in app.selectbox if not (s.key or "").startswith("weather_")]


def folder_input(app: AppTest):
    return next(t for t in app.text_input if t.label == "Folder under the root")


def choose_label(app: AppTest, name: str) -> None:
    """Pick the label in the Label page's picker (it starts empty: a click never applies a default)."""
    with Workspace.open(served_root(app)) as workspace:
        add_labels(workspace, [name], author="test")
    app.run()
    next(s for s in app.selectbox if s.key and s.key.startswith("label_")).set_value(name).run()


def served_root(app: AppTest):
    return Path(os.environ["LABELER_WORKSPACE"])


def app_run(**params) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key, value in params.items():
        app.query_params[key] = str(value)
    return app.run()


# --- 1. listen safely ---------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20", "::", None])
def test_the_app_refuses_a_network_address_without_access_control(served, address):
    with served_on(address):
        app = app_run()
    assert not app.exception
    assert "Refusing to serve" in app.error[0].value and "LABELER_PASSWORD" in app.error[0].value
    assert not app.metric, "nothing of the workspace is shown"


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1"])
def test_the_app_serves_loopback_without_a_password(served, address):
    with served_on(address):
        app = app_run()
    assert not app.exception and not app.error
    assert app.metric


def test_a_network_address_with_a_password_asks_for_it_and_a_name(served, monkeypatch):
    monkeypatch.setenv("LABELER_PASSWORD", "s3cret")
    with served_on("0.0.0.0"):
        app = app_run()
        assert not app.error and not app.metric
        assert [t.label for t in app.text_input] == ["Your name", "Password"]
        app.text_input[1].set_value("s3cret")
        app.button[0].click().run()
        assert "Type your name" in app.error[0].value and not app.metric
        app.text_input[0].set_value("Ada Lovelace")
        app.button[0].click().run()
    assert not app.error and app.metric
    assert app.session_state["author_name"] == "Ada Lovelace"


# --- 2. one root --------------------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path_factory):
    """A workspace outside the app's root (a crafted one dropped in /tmp, say)."""
    target = tmp_path_factory.mktemp("outside") / "x"
    Workspace.create(target).close()
    return target


def test_a_bare_expression_in_a_page_writes_nothing_to_it():
    """The app's config turns Streamlit's magic off: a stray expression statement (a user's
    string, a value) is never written to the page as markdown."""
    app = AppTest.from_string('text = "<b>someone\'s</b> **caption**"\ntext\n42\nimport streamlit as st\nst.caption("drawn")\n').run()
    assert not app.exception
    assert [e.value for e in app.caption] == ["drawn"]
    assert not app.markdown and not app.get("json") and not app.text


MARKDOWN_NAMES = {"*early*": r"\*early\*", "adv [l](http://x.org)": r"adv \[l\]\(http\://x\.org\)"}


def named_controls(app: AppTest) -> list[str]:
    """The labels of the buttons and checkboxes that show one of ``MARKDOWN_NAMES``, raw or escaped."""
    shown = [w.label for w in [*app.button, *app.checkbox]]
    return [text for text in shown if any(raw in text or escaped in text for raw, escaped in MARKDOWN_NAMES.items())]


def assert_escaped(texts: list[str]) -> None:
    for text in texts:
        assert any(escaped in text for escaped in MARKDOWN_NAMES.values()), text
        assert not any(raw in text for raw in MARKDOWN_NAMES), f"a label name reaches markdown unescaped: {text}"


def test_label_names_with_markdown_are_shown_as_typed_on_the_label_and_series_pages(served):
    """A label (a stage) named ``*early*`` or with a link in it is text in a widget label, never
    bold or a link: Streamlit reads button and checkbox labels as markdown."""
    from serieslabeler.clustering import evaluate_clustering, list_clusterings
    from serieslabeler.labels import cluster_status, label_cluster
    from serieslabeler.models import predict, train_model

    names = list(MARKDOWN_NAMES)
    with Workspace.open(served) as workspace:
        add_labels(workspace, names, author="test", ordered=True)
        clustering = list_clusterings(workspace)[0]["id"]
        for name, purity in zip(names, evaluate_clustering(workspace, clustering, with_silhouette=False).per_cluster[:2]):
            label_cluster(workspace, clustering, purity.cluster, name, author="test")
        predict(workspace, train_model(workspace, "head", seed=0).id)
        open_cluster = next(row["cluster"] for row in cluster_status(workspace, clustering) if row["state"] == "open")

    label = run_page("label", clustering=clustering, cluster=open_cluster)
    assert not label.exception and not label.error
    shown = named_controls(label)
    assert any(text.startswith("Use ") for text in shown), "the model's suggestion is offered"
    assert_escaped(shown)
    next(b for b in label.button if b.label.startswith("Use ")).click().run()
    assert next(s for s in label.selectbox if s.label == "Label").value in names, "the escaped button still picks the label as typed"

    series = run_page("series")
    assert not series.exception and not series.error
    for stage in names:
        series.selectbox(key="stage").set_value(stage).run()
        shown = named_controls(series)
        assert f"Starts {MARKDOWN_NAMES[stage]}" in shown, shown
        assert_escaped(shown)
    start = next(b for b in series.button if b.key and b.key.startswith("start_"))
    start.click().run()
    unmark = series.button(key=start.key.replace("start_", "unmark_"))
    assert unmark.label == r"Unmark adv \[l\]\(http\://x\.org\)"
    assert_escaped(named_controls(series))


def test_ws_outside_the_root_is_refused(served, outside):
    app = app_run(ws=outside)
    assert not app.exception
    assert "outside" in app.error[0].value and not app.metric


def test_ws_through_a_symlink_inside_the_root_is_refused(served, outside):
    link = served.parent / "innocent"
    link.symlink_to(outside, target_is_directory=True)
    for app in (app_run(ws=link), run_page("home", ws="innocent")):
        assert not app.exception
        assert "outside" in app.error[0].value and not app.metric


def test_ws_relative_to_the_root_opens(served):
    app = run_page("home", ws=served.name)
    assert not app.error and app.metric


def test_create_outside_the_root_is_refused_and_makes_nothing(served, tmp_path_factory):
    target = tmp_path_factory.mktemp("elsewhere") / "new"
    app = app_run()
    folder_input(app).set_value(str(target))
    next(b for b in app.button if b.key == "create_typed").click().run()
    assert "outside" in app.error[0].value
    assert not target.exists()
    folder_input(app).set_value("../../" + target.name)
    next(b for b in app.button if b.key == "create_typed").click().run()
    assert "outside" in app.error[0].value


def collection_with_server_csv(ws, csv) -> AppTest:
    return from_server_folders(run_page("collection", ws=ws), SAMPLE / "images", csv)


def test_server_paths_are_not_offered_without_import_roots(served):
    app = run_page("collection")
    assert [r.options for r in app.radio] == [["Upload a .zip"], ["Upload a CSV"]]
    assert any("Uploads only" in c.value for c in app.caption)


def test_server_csv_outside_the_import_roots_is_refused_and_never_echoed(served, monkeypatch, tmp_path_factory):
    secret = tmp_path_factory.mktemp("private") / "passwd.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\nfile,fruit,date\n")
    monkeypatch.setenv("LABELER_IMPORT_ROOTS", str(SAMPLE))
    app = collection_with_server_csv(served, secret)
    assert not app.exception
    assert any("not inside any of the import folders" in e.value for e in app.error)
    shown = " ".join([*(str(s.options) for s in app.selectbox), *(m.value for m in app.markdown), *(e.value for e in app.error)])
    assert "root:x" not in shown and not column_pickers(app)
    assert any(str(SAMPLE) in c.value or "import" in c.value for c in app.caption), "the import roots are listed"


def test_server_csv_through_a_symlink_out_of_an_import_root_is_refused(served, monkeypatch, tmp_path_factory):
    allowed = tmp_path_factory.mktemp("imports")
    secret = tmp_path_factory.mktemp("private") / "secret.csv"
    secret.write_text("file,fruit,date\n")
    (allowed / "meta.csv").symlink_to(secret)
    monkeypatch.setenv("LABELER_IMPORT_ROOTS", f"{SAMPLE}{os.pathsep}{allowed}")
    app = collection_with_server_csv(served, allowed / "meta.csv")
    assert any("not inside any of the import folders" in e.value for e in app.error) and not column_pickers(app)


def labeled(ws: Path) -> None:
    from serieslabeler.clustering import list_clusterings
    from serieslabeler.labels import label_cluster

    with Workspace.open(ws) as workspace:
        label_cluster(workspace, list_clusterings(workspace)[0]["id"], 0, "O", author="Ada")


def test_export_outside_the_root_is_refused_and_writes_nothing(served, tmp_path_factory):
    labeled(served)
    target = tmp_path_factory.mktemp("exports") / "labels.csv"
    app = run_page("export")
    app.text_input[0].set_value(str(target)).run()
    next(b for b in app.button if b.label == "Write").click().run()
    assert not app.exception
    assert "outside" in app.error[0].value and not target.exists()


def test_export_inside_the_root_is_written(served):
    labeled(served)
    app = run_page("export")
    app.text_input[0].set_value("exports/labels.csv").run()
    next(b for b in app.button if b.label == "Write").click().run()
    assert not app.error and (served.parent / "exports" / "labels.csv").is_file()


def test_export_onto_a_workspace_catalog_is_refused(served):
    """A relative file name under the root can name a workspace's own catalog: it is refused, not overwritten."""
    labeled(served)
    before = (served / "catalog.sqlite").read_bytes()
    app = run_page("export")
    app.text_input[0].set_value(f"{served.name}/catalog.sqlite").run()
    next(b for b in app.button if b.label == "Write").click().run()
    assert not app.exception and "inside the workspace folder" in app.error[0].value
    assert (served / "catalog.sqlite").read_bytes() == before


def test_weights_outside_the_root_are_refused(served, tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights") / "net.pt"
    weights.write_bytes(b"not read")
    app = run_page("map")
    next(t for t in app.text_input if t.label == "Weights").set_value(str(weights)).run()
    next(b for b in app.button if b.label == "Embed").click().run()
    assert not app.exception
    assert "outside" in app.error[0].value


class Uploaded:
    """What ``st.file_uploader`` hands the page: an id, a name and the bytes."""

    def __init__(self, file_id: str, name: str, data: bytes):
        self.file_id, self.name, self.data = file_id, name, data

    def getbuffer(self) -> memoryview:
        return memoryview(self.data)


def test_uploads_are_staged_under_the_root_and_removed_once_ingested_or_abandoned(served):
    from serieslabeler_app.uploads import (
        ABANDONED_AFTER_S,
        discard_upload,
        remove_abandoned_uploads,
        stage_upload,
    )

    kept = stage_upload(Uploaded("a1", "../../meta.csv", b"x,y\n"))
    assert kept.is_relative_to(served.parent / ".uploads") and kept.name == "meta.csv"
    ingested = stage_upload(Uploaded("b2", "images.zip", b"zip"))
    discard_upload(ingested)
    assert not ingested.parent.exists() and kept.exists()
    old = time.time() - ABANDONED_AFTER_S - 60
    os.utime(kept.parent, (old, old))
    assert remove_abandoned_uploads() == [kept.parent] and not kept.parent.exists()
    discard_upload(SAMPLE / "metadata.csv")
    assert (SAMPLE / "metadata.csv").is_file(), "only staged uploads are ever removed"


# --- 3. no code from data -----------------------------------------------------------------------
class Payload:
    """A pickle that, if ever loaded, leaves a file behind (what a crafted model would run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def trained(served):
    """The sample with two clusters labeled and a head model trained on them (model 1)."""
    from serieslabeler.clustering import list_clusterings
    from serieslabeler.labels import label_cluster
    from serieslabeler.models import train_model

    with Workspace.open(served) as workspace:
        clustering = list_clusterings(workspace)[0]["id"]
        for cluster, label in ((0, "U"), (1, "O"), (2, "V")):
            label_cluster(workspace, clustering, cluster, label, author="Ada")
        record = train_model(workspace, "head")
    assert record.id == 1 and record.path == "models/model-1.npz"
    return served


def set_model_path(ws: Path, path: str) -> None:
    with Workspace.open(ws) as workspace, workspace.transaction() as db:
        db.execute("UPDATE models SET path=? WHERE id=1", (path,))


def test_a_head_model_is_saved_as_arrays_and_predicts(trained):
    import numpy as np

    with np.load(trained / "models" / "model-1.npz", allow_pickle=False) as saved:
        assert "__meta__" in saved.files
    code, data = cli("predict", "--workspace", trained)
    assert code == 0 and data["images"] > 0


@pytest.mark.parametrize("stored", ["absolute", "relative"])
def test_a_crafted_workspace_with_a_pickled_model_is_refused_unread(trained, tmp_path_factory, stored):
    marker = tmp_path_factory.mktemp("marker") / "ran"
    pickled = pickle.dumps(Payload(marker))
    if stored == "absolute":
        evil = tmp_path_factory.mktemp("evil") / "model.pkl"
        path, expected = str(evil), "absolute"
    else:
        evil = trained / "models" / "model-1.pkl"
        path, expected = "models/model-1.pkl", "pickle"
    evil.write_bytes(pickled)
    set_model_path(trained, path)
    code, data = cli("predict", "--workspace", trained)
    assert code == 2 and expected in data["error"]
    (trained / "models" / "model-1.npz").write_bytes(pickled)
    set_model_path(trained, "models/model-1.npz")
    code, data = cli("predict", "--workspace", trained)
    assert code == 2 and "pickle" in data["error"]
    assert not marker.exists(), "the pickle was never loaded"


def test_a_model_path_climbing_out_of_the_workspace_is_refused(trained):
    set_model_path(trained, "../sample/models/model-1.npz")
    code, data = cli("predict", "--workspace", trained)
    assert code == 2 and "'..'" in data["error"]


def rewrite_versions(path: Path, library: str, version: str) -> None:
    """The same model file, as if made with another version of ``library``."""
    import json

    import numpy as np

    with np.load(path, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["versions"][library] = version
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_a_model_from_another_scikit_learn_is_a_clear_message(trained):
    rewrite_versions(trained / "models" / "model-1.npz", "sklearn", "0.1.0")
    code, data = cli("predict", "--workspace", trained)
    assert code == 2 and "model 1" in data["error"] and "scikit-learn 0.1" in data["error"] and "retrain" in data["error"]


def test_a_map_model_is_saved_as_arrays_and_places_images(served):
    from serieslabeler.space import list_maps, place_images

    with Workspace.open(served) as workspace:
        saved = list_maps(workspace)[0]
        with np_load(served / workspace.db.execute("SELECT path FROM maps").fetchone()[0]) as coords:
            ids = coords["ids"][:5]
        assert not list((served / "maps").glob("*.pkl"))
        assert place_images(workspace, saved["id"], ids).shape == (5, 2)


def np_load(path: Path):
    import numpy as np

    return np.load(path, allow_pickle=False)


def test_an_old_pickled_map_model_or_a_crafted_map_path_is_refused(served, tmp_path_factory):
    from serieslabeler.errors import PipelineError
    from serieslabeler.space import load_map, place_images

    marker = tmp_path_factory.mktemp("marker") / "ran"
    with Workspace.open(served) as workspace:
        relative = workspace.db.execute("SELECT path FROM maps WHERE id=1").fetchone()[0]
        model = (served / relative).with_name(Path(relative).name.replace(".npz", ".model.npz"))
        model.rename(model.with_suffix(".pkl"))
        model.with_suffix(".pkl").write_bytes(pickle.dumps(Payload(marker)))
        with pytest.raises(PipelineError, match="pickle.*recompute the map"):
            place_images(workspace, 1, [1, 2])
        with workspace.transaction() as db:
            db.execute("UPDATE maps SET path=? WHERE id=1", (str(served / relative),))
        with pytest.raises(PipelineError, match="absolute"):
            load_map(workspace, 1)
    assert not marker.exists()


def test_torch_estimators_on_features_round_trip_through_arrays():
    import numpy as np

    from serieslabeler.models import (
        FuzzyOvercluster,
        LatentVAE,
        classifier_from_arrays,
        classifier_to_arrays,
    )

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.array(["a", "b"] * 20, dtype=object)
    for model in (
        FuzzyOvercluster(epochs=2, hidden=8, device="cpu").fit(X, y),
        LatentVAE(latent_dim=2, hidden=8, pretrain_epochs=1, epochs=1, device="cpu").fit(X, y),
    ):
        back = classifier_from_arrays(*classifier_to_arrays(model), device="cpu")
        assert type(back) is type(model) and list(back.classes_) == ["a", "b"]
        np.testing.assert_allclose(back.predict_proba(X), model.predict_proba(X), rtol=1e-5)
        assert [vars(h) for h in back.history_] == [vars(h) for h in model.history_]


def test_a_feature_shard_path_outside_the_workspace_is_refused(served):
    with Workspace.open(served) as workspace, workspace.transaction() as db:
        db.execute("UPDATE feature_shards SET path='/etc/passwd.npy'")
    code, data = cli("cluster", "--workspace", served, "--features", "efficientnet_lite0", "--algorithm", "kmeans", "--k", "3")
    assert code == 2 and "absolute" in data["error"]


# --- 4. people, not "app" -----------------------------------------------------------------------
def first_clustering(workspace) -> int:
    from serieslabeler.clustering import list_clusterings

    return list_clusterings(workspace)[0]["id"]


def labels_of(workspace, cluster: int) -> set:
    from serieslabeler.labels import cluster_members, current_labels

    ids, _ = cluster_members(workspace, first_clustering(workspace), cluster)
    frame = current_labels(workspace)
    return set(frame.loc[frame["image_id"].isin(ids), "label"])


def test_two_authors_undo_and_redo_independently(sample_workspace):
    from serieslabeler.errors import PipelineError
    from serieslabeler.labels import label_cluster, redo, undo

    with Workspace.open(sample_workspace) as workspace:
        clustering = first_clustering(workspace)
        ada = label_cluster(workspace, clustering, 0, "U", author="Ada")
        label_cluster(workspace, clustering, 1, "O", author="Bob")
        assert [e.reverses for e in undo(workspace, author="Ada")] == [ada.id]
        assert labels_of(workspace, 0) == set() and labels_of(workspace, 1) == {"O"}, "Bob's label stands"
        with pytest.raises(PipelineError, match="nothing to undo by Ada"):
            undo(workspace, author="Ada")
        label_cluster(workspace, clustering, 2, "V", author="Bob")
        assert redo(workspace, author="Ada").details["redo_of"] == ada.id, "Bob's newer action does not block Ada's redo"
        assert labels_of(workspace, 0) == {"U"} and labels_of(workspace, 2) == {"V"}


def test_undoing_someone_elses_event_is_an_explicit_logged_choice(sample_workspace):
    from serieslabeler.labels import events, label_cluster

    with Workspace.open(sample_workspace) as workspace:
        bob = label_cluster(workspace, first_clustering(workspace), 1, "O", author="Bob")
    code, data = cli("undo", "--workspace", sample_workspace, "--author", "Ada")
    assert code == 2 and "nothing to undo by Ada" in data["error"]
    code, data = cli("undo", "--workspace", sample_workspace, "--author", "Ada", "--any-author")
    assert code == 0
    with Workspace.open(sample_workspace) as workspace:
        latest = events(workspace, limit=1)[0]
        assert latest["author"] == "Ada" and latest["reverses"] == bob.id
        details = workspace.db.execute("SELECT details FROM label_events WHERE id=?", (latest["id"],)).fetchone()[0]
        assert '"other_author": "Bob"' in details
        assert labels_of(workspace, 1) == set()


def test_a_stale_label_is_refused_naming_who_changed_what(sample_workspace):
    from serieslabeler.errors import PipelineError
    from serieslabeler.labels import (
        label_cluster,
        label_images,
        latest_event_id,
        skip_cluster,
    )

    with Workspace.open(sample_workspace) as workspace:
        clustering = first_clustering(workspace)
        ids, _ = __import__("serieslabeler.labels", fromlist=["cluster_members"]).cluster_members(workspace, clustering, 0)
        seen = latest_event_id(workspace)
        label_cluster(workspace, clustering, 0, "R", author="Bob", expected_event_id=seen)
        for action in (
            lambda: label_cluster(workspace, clustering, 0, "U", author="Ada", expected_event_id=seen),
            lambda: skip_cluster(workspace, clustering, 0, author="Ada", expected_event_id=seen),
            lambda: label_images(workspace, ids[:2], "U", author="Ada", expected_event_id=seen),
        ):
            with pytest.raises(PipelineError, match=r"changed since this page showed it: Bob did label cluster as 'R'"):
                action()
        assert labels_of(workspace, 0) == {"R"}


def test_events_on_other_images_since_the_page_was_drawn_do_not_refuse_an_action(sample_workspace):
    """The page carries the log's latest event; only later events touching its cluster refuse,
    and finding them reads the log's rows of those later events (a key range), not the log."""
    from serieslabeler.labels import cluster_members, label_cluster, label_images, latest_event_id, latest_event_touching

    with Workspace.open(sample_workspace) as workspace:
        clustering = first_clustering(workspace)
        ids, _ = cluster_members(workspace, clustering, 0)
        others, _ = cluster_members(workspace, clustering, 1)
        label_images(workspace, ids[:1], "U", author="Bob")
        seen = latest_event_id(workspace)
        label_images(workspace, others[:2], "V", author="Bob")
        assert latest_event_touching(workspace, ids, clustering, 0, after=seen) == 0
        assert latest_event_touching(workspace, ids, clustering, 0) == seen, "from the start, Bob's label of the first image"
        label_cluster(workspace, clustering, 0, "R", author="Ada", expected_event_id=seen)
        assert labels_of(workspace, 0) == {"R"}
        plan = " ".join(r[3] for r in workspace.db.execute(
            "EXPLAIN QUERY PLAN SELECT MAX(i.event_id) FROM label_event_images i "
            "WHERE i.event_id > ? AND i.image_id IN (SELECT value FROM json_each(?))", (seen, "[1]")))
        assert "USING PRIMARY KEY (event_id>?)" in plan, plan


def test_the_label_page_refuses_a_stale_tab_and_then_shows_the_change(served):
    from serieslabeler.labels import label_cluster

    tab = run_page("label", clustering=1, cluster=0)
    assert not tab.error
    choose_label(tab, "R")
    with Workspace.open(served) as workspace:
        label_cluster(workspace, 1, 0, "R", author="Bob")
    next(b for b in tab.button if b.label.startswith("Label ")).click().run()
    assert "Bob did label cluster as 'R'" in tab.error[0].value
    with Workspace.open(served) as workspace:
        assert labels_of(workspace, 0) == {"R"}, "the first tab's label is kept"
    tab.query_params["cluster"] = "0"
    next(b for b in tab.button if b.label.startswith("Label ")).click().run()
    assert not tab.error, "once the tab has shown the change, labeling works"


def test_in_password_mode_each_visitor_is_the_author_of_their_labels(served, monkeypatch):
    monkeypatch.setenv("LABELER_PASSWORD", "s3cret")
    app = app_run()
    app.text_input[0].set_value("Ada")
    app.text_input[1].set_value("s3cret")
    app.button[0].click().run()
    app.switch_page("app_pages/label.py").run()
    assert not app.exception and not app.error
    choose_label(app, "R")
    next(b for b in app.button if b.label.startswith("Label ")).click().run()
    next(b for b in app.button if b.label == "Undo").click().run()
    with Workspace.open(served) as workspace:
        rows = workspace.db.execute("SELECT id, author, action, reverses FROM label_events ORDER BY id").fetchall()
    assert [tuple(r)[1:3] for r in rows[-2:]] == [("Ada", "label_cluster"), ("Ada", "undo")]
    assert rows[-1]["reverses"] == rows[-2]["id"], "Undo took Ada's own action"


# --- 5. every bad input refused: one message naming file/row/field, exit 2, nothing written ------
def fingerprint(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time (what 'nothing written' means)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv, ws: Path | None, *expected: str) -> str:
    before = fingerprint(ws) if ws is not None and ws.is_dir() else None
    code, data = cli(*argv)
    assert code == 2, data
    for text in expected:
        assert text in data["error"], data["error"]
    assert "Traceback" not in data["error"]
    if before is not None:
        assert fingerprint(ws) == before, "nothing was written"
    return data["error"]


def csv_with(tmp_path: Path, edit) -> Path:
    """The bananas metadata CSV with ``edit(lines)`` applied."""
    lines = (BANANAS / "metadata.csv").read_text().splitlines()
    edit(lines)
    path = tmp_path / "metadata.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def bananas_header() -> list[str]:
    """The header cells as written (quoted), for editing rows by position (no cell holds a comma)."""
    return (BANANAS / "metadata.csv").read_text().splitlines()[0].split(",")


def ingest_argv(ws: Path, metadata: Path, images: Path = BANANAS / "images", *extra) -> list:
    return ["ingest", "--workspace", ws, "--images", images, "--metadata", metadata, *BANANAS_MAPPING, *extra]


def test_a_long_csv_field_is_read_and_one_over_the_cap_is_refused_naming_the_line(bananas_workspace, tmp_path):
    from serieslabeler.ingest import MAX_FIELD_CHARS

    def long_note(size):
        def edit(lines):
            lines[0] += ",note"
            lines[1:] = [line + "," for line in lines[1:]]
            lines[2] += "x" * size
        return edit

    code, data = cli(*ingest_argv(bananas_workspace, csv_with(tmp_path, long_note(200_000))))
    assert code == 0, data
    refused(ingest_argv(bananas_workspace, csv_with(tmp_path, long_note(MAX_FIELD_CHARS + 1))), bananas_workspace, "line 3", "longer than 1,000,000 characters")


def test_a_duplicated_column_header_is_refused(bananas_workspace, tmp_path):
    def edit(lines):
        lines[0] += ",day"
        lines[1:] = [line + ",9" for line in lines[1:]]

    refused(ingest_argv(bananas_workspace, csv_with(tmp_path, edit)), bananas_workspace, "line 1", "column 'day' appears twice")


def test_a_forced_numeric_attribute_with_text_is_refused_naming_the_row(bananas_workspace, tmp_path):
    day = bananas_header().index('"day"')

    def edit(lines):
        cells = lines[5].split(",")
        cells[day] = "abc"
        lines[5] = ",".join(cells)

    argv = ingest_argv(bananas_workspace, csv_with(tmp_path, edit))
    argv[argv.index("group,day,hour")] = "group,day:numeric,hour"
    refused(argv, bananas_workspace, "line 6", "column 'day' (numeric attribute): 'abc' is not a number")


def test_a_time_zone_suffix_is_refused_explicitly(bananas_workspace, tmp_path):
    date = bananas_header().index('"date"')

    def edit(lines):
        cells = lines[2].split(",")
        cells[date] += "T10:00+02:00"
        lines[2] = ",".join(cells)

    refused(ingest_argv(bananas_workspace, csv_with(tmp_path, edit)), bananas_workspace, "line 3", "time-zone suffix ('+02:00')")


@pytest.fixture
def immutable(bananas_workspace):
    """The workspace folder and its catalog made immutable (even root cannot write them)."""
    paths = [bananas_workspace / "catalog.sqlite", bananas_workspace]
    for path in paths:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    yield bananas_workspace
    for path in paths:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_workspace_reads_work_and_writes_are_one_line(immutable, tmp_path):
    code, data = cli("info", "--workspace", immutable)
    assert code == 0 and data["images"] == 220
    code, data = cli("export", "--workspace", immutable, "--format", "csv", "--out", tmp_path / "labels.csv")
    assert code == 0 and (tmp_path / "labels.csv").is_file()
    for argv in (["label-images", "--workspace", immutable, "--images", "1", "--as", "O"], ingest_argv(immutable, BANANAS / "metadata.csv")):
        message = refused(argv, immutable, "read-only", "nothing was changed")
        assert "\n" not in message


def test_full_disk_errors_are_one_line():
    import errno
    import sqlite3

    from serieslabeler.cli.main import os_error_line
    from serieslabeler.store.workspace import write_error

    assert "the disk is full" in str(write_error(Path("/ws"), sqlite3.OperationalError("database or disk is full")))
    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", "/ws/features/a.npy"))
    assert line == "/ws/features/a.npy: the disk is full (free some space and try again)"


def test_export_to_an_existing_folder_is_refused(bananas_workspace, tmp_path):
    (tmp_path / "out").mkdir()
    refused(["export", "--workspace", bananas_workspace, "--format", "csv", "--out", tmp_path / "out"], bananas_workspace, "is an existing folder")


def test_a_workspace_that_is_a_file_or_a_catalog_that_is_no_database_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    refused(["info", "--workspace", tmp_path / "file"], None, "is a file, not a workspace folder")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "catalog.sqlite").write_text("not a database at all" * 100)
    refused(["info", "--workspace", tmp_path / "ws"], tmp_path / "ws", "not a usable catalog")


def test_an_image_id_of_two_to_the_seventy_is_a_clean_message(bananas_workspace):
    refused(["label-images", "--workspace", bananas_workspace, "--images", str(2**70), "--as", "O"], bananas_workspace, "is not an image id")
    refused(["label", "--workspace", bananas_workspace, "--clustering", str(2**70), "--cluster", "0", "--as", "O"], bananas_workspace, "too large")


def zip_of(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_zip_entries_over_the_ratio_or_the_total_are_refused_before_reading(bananas_workspace, tmp_path):
    from serieslabeler.ingest import list_source
    from serieslabeler.ingest.archive import ZipLimits

    bomb = zip_of(tmp_path / "bomb.zip", {"images/a.jpg": bytes(4 << 20)})
    refused(ingest_argv(bananas_workspace, BANANAS / "metadata.csv", bomb), bananas_workspace, "a.jpg", "to 1 limit")
    several = zip_of(tmp_path / "several.zip", {f"images/{i}.jpg": os.urandom(1 << 20) for i in range(4)})
    entries, problems = list_source(several, ZipLimits(max_total_bytes=3 << 20))
    assert entries == [] and "over the 3145728 limit; nothing read" in problems[-1].message


def test_decoding_threads_share_one_byte_budget():
    import threading

    from serieslabeler.ingest.images import ByteBudget

    budget, held, peak, lock = ByteBudget(limit=100), [0], [0], threading.Lock()

    def hold(size):
        with budget.reserve(size):
            with lock:
                held[0] += size
                peak[0] = max(peak[0], held[0])
            time.sleep(0.01)
            with lock:
                held[0] -= size

    threads = [threading.Thread(target=hold, args=(size,)) for size in (60, 60, 60, 150, 30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] <= 150, "never more than the budget, or one larger entry alone"


def test_csv_export_neutralises_formulas(bananas_clustered, tmp_path):
    from serieslabeler.labels import label_cluster

    with Workspace.open(bananas_clustered) as workspace:
        label_cluster(workspace, 1, 0, "=cmd|' /C calc'!A0", author="Ada")
    code, _ = cli("export", "--workspace", bananas_clustered, "--format", "csv", "--out", tmp_path / "labels.csv")
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert rows and all(row["label"] == "'=cmd|' /C calc'!A0" for row in rows)


def test_staging_left_by_a_killed_ingest_is_removed_on_the_next_open(bananas_workspace):
    dead = bananas_workspace / ".staging-999999999-abc"
    alive = bananas_workspace / f".staging-{os.getpid()}-xyz"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "x.jpg").write_bytes(b"x")
    code, _ = cli("info", "--workspace", bananas_workspace)
    assert code == 0 and not dead.exists() and alive.exists(), "only an ingest whose process is gone"


def test_a_file_symlink_leaving_the_image_folder_is_refused(bananas_workspace, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(BANANAS / "images", images)
    first = sorted(images.rglob("*.jpg"))[0]
    outside = tmp_path / "outside.jpg"
    first.rename(outside)
    first.symlink_to(outside)
    refused(ingest_argv(bananas_workspace, BANANAS / "metadata.csv", images), bananas_workspace, first.name, "outside the image folder")


# --- the password gate in a real browser --------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_the_password_gate_covers_every_page_in_chromium(sample_workspace, monkeypatch):
    from serieslabeler_app.common import APP_TITLE, PAGES
    from serieslabeler_app.screenshots import (
        CHROMIUM,
        chromium_page,
        open_app_page,
        running_app,
    )

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium: 'make browser')")
    monkeypatch.setenv("LABELER_PASSWORD", "s3cret")
    with running_app(sample_workspace) as url, chromium_page() as page:
        for spec in PAGES:
            open_app_page(page, f"{url}/{'' if spec.file == 'home.py' else spec.url}?ws={sample_workspace}")
            assert [h.strip() for h in page.locator("h1").all_inner_texts()] == [APP_TITLE], spec.title
            assert page.locator('input[type="password"]').count() == 1, f"the {spec.title} page asks for the password"
            for hidden in ("stMetric", "stPageLink", "stDataFrame", "stImage", "stVegaLiteChart"):
                assert page.locator(f'[data-testid="{hidden}"]').count() == 0, f"{hidden} shown on {spec.title} before the password"
        page.get_by_role("textbox", name="Your name").fill("Ada")
        page.locator('input[type="password"]').fill("s3cret")
        page.get_by_role("button", name="Enter").click()
        page.locator('[data-testid="stMetric"]').first.wait_for(timeout=120_000)
        assert page.locator('input[type="password"]').count() == 0, "the right password opens the gate"
        assert page.locator('[data-testid="stPageLink"]').count() > 0, "onto the app, with its menu"
