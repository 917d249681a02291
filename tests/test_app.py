"""The real Streamlit app, driven by streamlit.testing.v1.AppTest on a copy of the prepared sample."""
from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import ROOT, SAMPLE, served_on
from serieslabeler_app.uploads import uploads_dir
from streamlit.testing.v1 import AppTest

from serieslabeler.clustering import evaluate_clustering, list_clusterings, run_clustering
from serieslabeler.labels import (
    cluster_status,
    current_labels,
    interaction_count,
    label_cluster,
    review_order,
    undo,
)
from serieslabeler.space import list_maps
from serieslabeler.store import CATALOG, Workspace, checkpoints

APP = ROOT / "dashboard" / "app.py"
PAGES = sorted((ROOT / "dashboard" / "app_pages").glob("*.py"))
TIMEOUT = 180


@pytest.fixture
def sample(sample_workspace, monkeypatch):
    """The prepared sample is the app's default workspace."""
    monkeypatch.setenv("LABELER_WORKSPACE", str(sample_workspace))
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    with served_on("127.0.0.1"):
        yield sample_workspace


def add_vocabulary(root: Path, *names: str) -> None:
    """Label names the expert would have typed (the sample starts with an empty vocabulary)."""
    from serieslabeler.labels import add_labels

    with Workspace.open(root) as workspace:
        add_labels(workspace, names, author="test")


def from_server_folders(app: AppTest, images, metadata) -> AppTest:
    """On the Collection page, take the images and the metadata CSV from server paths."""
    app.radio[0].set_value("folder")
    app.radio[1].set_value("folder")
    app.run()
    app.text_input(key="images_path").set_value(str(images))
    app.text_input(key="metadata_path").set_value(str(metadata))
    return app.run()


def run_page(name: str, **params) -> AppTest:
    app = AppTest.from_file(str(ROOT / "dashboard" / "app_pages" / f"{name}.py"), default_timeout=TIMEOUT)
    for key, value in params.items():
        app.query_params[key] = str(value)
    return app.run()


def assert_clean(app: AppTest) -> None:
    assert not app.exception, [e.message for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert not any(m.proto.allow_html for m in [*app.markdown, *app.caption]), "no HTML is rendered from text"


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label.startswith(label))


def param(app: AppTest, key: str) -> str:
    """A query parameter's value (AppTest holds some as one-item lists)."""
    value = app.query_params[key]
    return value[0] if isinstance(value, list) else value


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_page_renders_on_its_own(sample, page):
    app = AppTest.from_file(str(page), default_timeout=TIMEOUT).run()
    assert_clean(app)
    assert app.title, "every page has a heading"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_page_renders_on_an_empty_workspace(sample, page, tmp_path):
    Workspace.create(tmp_path / "empty").close()
    app = AppTest.from_file(str(page), default_timeout=TIMEOUT)
    app.query_params["ws"] = str(tmp_path / "empty")
    assert_clean(app.run())


def test_app_opens_on_the_sample_with_a_menu_that_keeps_the_workspace(sample):
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert_clean(app)
    assert [m.value for m in app.metric][:2] == ["80", "4"]
    app.query_params["ws"] = str(sample)
    app.run()
    links = app.get("page_link")
    assert len(links) >= len(PAGES), "a menu entry per page"
    assert {link.proto.query_string for link in links} == {urlencode({"ws": str(sample)})}
    app.switch_page("app_pages/label.py").run()
    assert_clean(app)
    assert app.title[0].value == "Label"


def test_the_sidebar_names_the_bundled_sample_only_when_it_is_open(sample):
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert any(m.value.endswith("(bundled sample)") for m in app.sidebar.markdown)


def test_the_app_pointed_at_a_collection_of_ones_own_prepares_no_sample_in_it(bananas_workspace, monkeypatch):
    """``LABELER_WORKSPACE`` names where the sample lives; pointed at a workspace of one's own
    (220 photos, not embedded), the app used to embed every photo and add a map and a clustering
    to it at first start, and call it the bundled sample."""
    monkeypatch.setenv("LABELER_WORKSPACE", str(bananas_workspace))
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    with served_on("127.0.0.1"):
        app = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert_clean(app)
    assert [m.value for m in app.metric][:2] == ["220", "11"]
    assert not any("(bundled sample)" in m.value for m in app.sidebar.markdown)
    with Workspace.open(bananas_workspace) as ws:
        assert list_maps(ws) == [] and list_clusterings(ws) == []
        assert ws.db.execute("SELECT COUNT(*) FROM feature_sets").fetchone()[0] == 0


def test_a_missing_workspace_is_a_message_not_a_traceback(sample, tmp_path):
    app = run_page("home", ws=tmp_path / "nowhere")
    assert not app.exception
    assert "not a workspace" in app.error[0].value


def test_workspace_picker_creates_a_new_workspace_and_keeps_it_in_the_address(sample, tmp_path):
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    next(t for t in app.text_input if t.label == "Folder under the root").set_value(str(tmp_path / "fresh"))
    button_create = next(b for b in app.button if b.key == "create_typed")
    button_create.click().run()
    assert_clean(app)
    assert param(app, "ws") == str(tmp_path / "fresh")
    assert (tmp_path / "fresh" / "catalog.sqlite").is_file()
    assert app.title[0].value == "Collection"


def test_collection_reports_bad_rows_then_ingests_the_good_part(sample, tmp_path, monkeypatch):
    monkeypatch.setenv("LABELER_IMPORT_ROOTS", f"{SAMPLE}{os.pathsep}{tmp_path}")
    bad_csv = tmp_path / "metadata.csv"
    lines = (SAMPLE / "metadata.csv").read_text().splitlines()
    lines[3] = lines[3].replace("2020-05-30", "2020-13-45")
    bad_csv.write_text("\n".join(lines) + "\n")
    target = tmp_path / "new"
    Workspace.create(target).close()
    app = from_server_folders(run_page("collection", ws=target), SAMPLE / "images", bad_csv)
    mapping = {s.label: s for s in app.selectbox}
    mapping["Subject"].set_value("fruit")
    mapping["Ground truth (optional)"].set_value("ripeness")
    app.run()
    assert any("line 4" in str(df.value) for df in app.dataframe), "the preview lists the bad row"
    button(app, "Ingest").click().run()
    assert not app.exception
    assert app.error and "nothing was written" in app.error[0].value
    with Workspace.open(target) as workspace:
        assert workspace.image_count() == 0
    app.toggle[0].set_value(True)
    button(app, "Ingest").click().run()
    assert not app.exception
    assert "79 added" in app.success[0].value
    with Workspace.open(target) as workspace:
        assert workspace.image_count() == 79


def test_collection_ingests_uploads_under_sanitized_names(sample, tmp_path):
    names = sorted(p.name for p in (SAMPLE / "images").iterdir())[:5]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in names:
            zipped.write(SAMPLE / "images" / name, f"photos/{name}")
    rows = [line for line in (SAMPLE / "metadata.csv").read_text().splitlines() if line.split(",")[0] in names]
    header = (SAMPLE / "metadata.csv").read_text().splitlines()[0]
    target = tmp_path / "uploaded"
    Workspace.create(target).close()
    app = run_page("collection", ws=target)
    app.file_uploader[0].set_value(("../../photos.zip", archive.getvalue(), "application/zip"))
    app.file_uploader[1].set_value(("..\\evil/../meta data.csv", ("\n".join([header, *rows]) + "\n").encode(), "text/csv"))
    app.run()
    {s.label: s for s in app.selectbox}["Subject"].set_value("fruit")
    app.run()
    staged = [p for p in uploads_dir().rglob("*") if p.is_file()]
    assert {"photos.zip", "meta_data.csv"} <= {p.name for p in staged}
    assert all(p.resolve().is_relative_to(uploads_dir().resolve()) and ".." not in p.name for p in staged)
    button(app, "Ingest").click().run()
    assert_clean(app)
    assert "5 added" in app.success[0].value
    assert not any(p.exists() for p in staged)  # an ingested upload is removed


def test_cluster_page_runs_a_clustering_and_splits_a_cluster(sample):
    app = run_page("cluster")
    button(app, "Run the clustering").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert len(list_clusterings(workspace)) == 2
    button(app, "Split in two").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        newest = list_clusterings(workspace)[0]
        assert newest["parent_id"] == 2 and newest["k"] == 5


def test_map_page_embeds_and_computes_a_map(sample):
    app = run_page("map")
    button(app, "Embed").click().run()
    assert_clean(app)
    assert "80 already there" in app.success[0].value
    button(app, "Compute the map").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert len(list_maps(workspace)) == 2


def test_map_page_colours_by_every_option_including_attributes(sample):
    """Attribute columns are named ``attribute: NAME``; the colon once broke Altair's shorthand."""
    app = run_page("map")
    colour = next(r for r in app.radio if r.label == "Color by")
    assert {"group", "day", "hour"} <= set(colour.options)
    for option in colour.options:
        next(r for r in app.radio if r.label == "Color by").set_value(option).run()
        assert_clean(app)
        assert app.get("vega_lite_chart"), option


def test_vega_field_escapes_what_vega_lite_reads_as_nested_access():
    from serieslabeler_app.widgets import vega_field

    assert vega_field("attribute: site.name[0]") == "attribute: site\\.name\\[0\\]"


def test_label_page_labels_a_cluster_with_one_exclusion_and_undoes_it(sample):
    add_vocabulary(sample, "U", "R", "V", "O")
    app = run_page("label")
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        clustering = list_clusterings(workspace)[0]["id"]
        members = review_order(workspace, clustering, 0)
    toggle = app.button(key=f"toggle_{members[0]}")
    toggle.click().run()
    assert param(app, "x") == str(members[0])
    assert app.button(key=f"toggle_{members[0]}").label == "Excluded"
    next(s for s in app.selectbox if s.label == "Label").set_value("R").run()
    button(app, f"Label {len(members) - 1} images").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        labels = current_labels(workspace)
        assert set(labels["image_id"]) == set(members[1:].tolist())
        assert interaction_count(workspace) == 2
        assert cluster_status(workspace, clustering)[0]["state"] == "labeled"
    assert param(app, "cluster") == "1", "moves on to the next open cluster"
    assert "x" not in app.query_params
    button(app, "Undo").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert current_labels(workspace).empty
    assert param(app, "cluster") == "0", "back to the cluster the undone action was on"


def test_a_misfit_met_again_in_a_cluster_of_the_label_it_lost_is_shown_clicked_out_and_can_be_taken_back(sample):
    add_vocabulary(sample, "U", "R", "V", "O")
    with Workspace.open(sample) as workspace:
        first = list_clusterings(workspace)[0]["id"]
        misfit = int(review_order(workspace, first, 0)[0])
        label_cluster(workspace, first, 0, "R", excluded=[misfit], author="expert")
        again = run_clustering(workspace, "efficientnet_lite0@imagenet", "kmeans", 2, seed=1)
        cluster = workspace.db.execute("SELECT cluster FROM cluster_members WHERE clustering_id=? AND image_id=?", (again.id, misfit)).fetchone()[0]
        members = review_order(workspace, again.id, cluster)
        before = interaction_count(workspace)
    app = run_page("label", clustering=again.id, cluster=cluster)
    assert app.button(key=f"toggle_{misfit}").label == "Exclude", "nothing is clicked out before a label is chosen"
    next(s for s in app.selectbox if s.label == "Label").set_value("R").run()
    assert_clean(app)
    assert app.button(key=f"toggle_{misfit}").label == "Excluded"
    assert any("1 of them because you took R from them before" in c.value for c in app.caption)
    app.button(key=f"toggle_{misfit}").click().run()  # taken back: it is labeled with the others
    assert param(app, "in") == str(misfit) and app.button(key=f"toggle_{misfit}").label == "Exclude"
    app.button(key=f"toggle_{misfit}").click().run()
    assert "in" not in app.query_params
    button(app, f"Label {len(members) - 1} images").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert misfit not in set(current_labels(workspace)["image_id"].tolist())
        assert interaction_count(workspace) - before == 1, "clicked out for the expert: no click paid"


def test_a_label_click_draws_the_page_once(sample, monkeypatch):
    """The Label button acts in its callback: the click's run draws the page once, not a render up
    to the button, the label and a rerun (at a million images each render is a third of a second)."""
    from serieslabeler import views

    add_vocabulary(sample, "U", "R", "V", "O")
    app = run_page("label")
    next(s for s in app.selectbox if s.label == "Label").set_value("R").run()
    drawn = []
    real = views.cluster_table
    monkeypatch.setattr(views, "cluster_table", lambda *args: drawn.append(args) or real(*args))
    button(app, "Label ").click().run()
    assert_clean(app)
    assert len(drawn) == 1
    with Workspace.open(sample) as workspace:
        assert set(current_labels(workspace)["label"]) == {"R"}


def test_the_app_leaves_checkpoints_to_a_keeper_thread(sample):
    """The app's connections do not checkpoint in a click's commit: its keeper does, just after."""
    add_vocabulary(sample, "U", "R", "V", "O")
    app = run_page("label")
    next(s for s in app.selectbox if s.label == "Label").set_value("R").run()
    keeper = checkpoints.keeper_for(sample / CATALOG)
    before = keeper.checkpoints
    button(app, "Label ").click().run()
    assert_clean(app)
    deadline = time.monotonic() + 10
    while keeper.checkpoints == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert keeper.checkpoints > before


def test_a_label_click_on_a_cluster_someone_changed_since_is_refused(sample):
    add_vocabulary(sample, "U", "R", "V", "O")
    app = run_page("label")
    next(s for s in app.selectbox if s.label == "Label").set_value("R").run()
    with Workspace.open(sample) as workspace:
        clustering = list_clusterings(workspace)[0]["id"]
        label_cluster(workspace, clustering, 0, "U", author="Bob")
    button(app, "Label ").click().run()
    assert "Bob did label cluster as 'U'" in app.error[0].value
    assert "cluster" not in app.query_params, "stays on the cluster"
    with Workspace.open(sample) as workspace:
        assert set(current_labels(workspace)["label"]) == {"U"}, "Bob's label is kept"
        assert interaction_count(workspace) == 1


def test_a_new_label_typed_by_the_user_is_shown_as_text(sample):
    app = run_page("label")
    next(s for s in app.selectbox if s.label == "Label").set_value("+ new label").run()
    app.text_input[0].set_value("<b>Torso</b>").run()
    button(app, "Label").click().run()
    app.query_params["cluster"] = "0"
    app.run()
    assert_clean(app)
    shown = [m.value for m in [*app.markdown, *app.caption] if "Torso" in m.value]
    assert shown and all("<b>" not in text for text in shown)


def label_two_clusters_by_their_majority(workspace_root) -> None:
    with Workspace.open(workspace_root) as workspace:
        clustering = list_clusterings(workspace)[0]["id"]
        for purity in evaluate_clustering(workspace, clustering, with_silhouette=False).per_cluster[:2]:
            label_cluster(workspace, clustering, purity.cluster, purity.majority)


def test_moving_the_threshold_changes_the_routed_counts(sample):
    label_two_clusters_by_their_majority(sample)
    app = run_page("train")
    button(app, "Train on the accepted labels").click().run()
    assert_clean(app)
    button(app, "Predict the unlabeled images").click().run()
    assert_clean(app)
    threshold = next(s for s in app.slider if s.label == "Confidence threshold")
    counts = {}
    for value in (0.0, 1.0):
        threshold.set_value(value).run()
        assert_clean(app)
        counts[value] = (int(metric(app, "Would be pseudo-labeled")), int(metric(app, "Sent to clustering")))
    total = int(metric(app, "Unlabeled predicted"))
    assert counts[0.0] == (total, 0)
    assert counts[1.0][0] < total and sum(counts[1.0]) == total
    threshold.set_value(0.0).run()
    button(app, "Route").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        assert (current_labels(workspace)["status"] == "pending").sum() == total


def test_metrics_and_export_show_a_trained_model(sample):
    label_two_clusters_by_their_majority(sample)
    train = run_page("train")
    button(train, "Train on the accepted labels").click().run()
    metrics = run_page("metrics")
    assert_clean(metrics)
    assert metric(metrics, "Top-1 accuracy")
    assert len(metrics.get("download_button")) >= 3
    export = run_page("export")
    export.radio[0].set_value("imagefolder").run()
    assert_clean(export)
    assert export.get("download_button")[0].proto.label.startswith("Download labels.zip")


def test_access_needs_the_password_when_one_is_set(sample, monkeypatch):
    monkeypatch.setenv("LABELER_PASSWORD", "s3cret")
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not app.metric, "nothing of the workspace before the password"
    app.text_input[0].set_value("Ada")
    app.text_input[1].set_value("wrong")
    app.button[0].click().run()
    assert "Wrong password" in app.error[0].value and not app.metric
    app.text_input[1].set_value("s3cret")
    app.button[0].click().run()
    assert_clean(app)
    assert [m.value for m in app.metric][:2] == ["80", "4"]


def number_input(app: AppTest, label: str):
    return next(n for n in app.number_input if n.label == label)


@pytest.mark.slow
def test_train_page_trains_an_overcluster_model_and_offers_its_overclusters(sample):
    from serieslabeler.models import list_models

    label_two_clusters_by_their_majority(sample)
    app = run_page("train")
    next(s for s in app.selectbox if s.label == "Mode").set_value("overcluster").run()
    number_input(app, "Epochs").set_value(2).run()
    number_input(app, "Overclusters per class").set_value(3).run()
    button(app, "Train on the accepted labels").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        model = list_models(workspace)[0]
        assert model["mode"] == "overcluster" and model["params"]["epochs"] == 2 and model["params"]["overcluster_factor"] == 3
        assert list_clusterings(workspace)[0]["id"] == model["metrics"]["clustering_id"]
    assert "overclusters are clustering" in app.info[0].value


@pytest.mark.slow
def test_vae_centres_page_names_splits_and_trains(sample):
    from serieslabeler.models import list_models

    add_vocabulary(sample, "U", "R", "V", "O")
    app = run_page("centres")
    assert_clean(app)
    number_input(app, "Centres (0: from the elbow)").set_value(3).run()
    number_input(app, "Epochs without labels").set_value(2).run()
    button(app, "Train the VAE and cluster its latents").click().run()
    assert_clean(app)
    first = int(param(app, "clustering"))
    assert len([b for b in app.button if b.label == "Name"]) == 3
    assert len(app.get("image")) == 3, "a picture per centre"
    for cluster, label in ((0, "O"), (1, "R")):
        app.selectbox(key=f"centre_label_{first}_{cluster}").set_value(label).run()  # the Name button waits for a label
        app.slider(key=f"centre_confidence_{first}_{cluster}").set_value(0.8)
        app.button(key=f"name_{first}_{cluster}").click().run()
        assert_clean(app)
    with Workspace.open(sample) as workspace:
        labels = current_labels(workspace)
        assert set(labels["label"]) == {"O", "R"} and labels["confidence"].max() <= 0.8
        assert interaction_count(workspace) == 2
    app.selectbox(key=f"centre_label_{first}_2").set_value("V").run()
    with Workspace.open(sample) as workspace:
        label_cluster(workspace, first, 2, "U", author="Bob")
    app.button(key=f"name_{first}_2").click().run()
    assert "Bob did label cluster as 'U'" in app.error[0].value, "a centre card someone changed since is refused"
    with Workspace.open(sample) as workspace:
        assert set(current_labels(workspace)["label"]) == {"O", "R", "U"}, "Bob's label is kept"
        undo(workspace, author="Bob")
    app.run()
    app.button(key=f"split_{first}_2").click().run()
    assert_clean(app)
    child = int(param(app, "clustering"))
    assert child != first and len([b for b in app.button if b.label == "Name"]) == 4
    number_input(app, "Epochs with labels").set_value(2).run()
    button(app, "Train on the named centres").click().run()
    assert_clean(app)
    with Workspace.open(sample) as workspace:
        model = list_models(workspace)[0]
        assert model["mode"] == "vae" and model["classes"] == ["O", "R"] and model["params"]["epochs"] == 2


@pytest.mark.slow
def test_vae_centres_page_shows_an_image_vae_its_decoded_centres(sample):
    app = run_page("centres")
    number_input(app, "Centres (0: from the elbow)").set_value(2).run()
    number_input(app, "Epochs without labels").set_value(1).run()
    next(s for s in app.selectbox if s.label == "The VAE reads").set_value("images").run()
    number_input(app, "Image size (px)").set_value(32).run()
    button(app, "Train the VAE and cluster its latents").click().run()
    assert_clean(app)
    pictures = app.get("image")
    assert len(pictures) == 2 and all(p.proto.imgs[0].caption == "decoded centre" for p in pictures)


def test_the_apps_modules_are_frozen_out_of_the_garbage_collectors_full_collections():
    """A full collection in a million-image session scanned Streamlit's, pandas' and the
    library's objects on every few label clicks (0.1 s each); they are frozen once loaded."""
    import gc

    import serieslabeler_app.common  # noqa: F401  (loaded, as every page loads it)

    assert gc.get_freeze_count() > 10_000


def test_a_vae_only_pretrained_is_not_offered_to_score_or_predict_with(sample):
    """A VAE only pretrained (centres not named yet) has no head: the Metrics page scores the
    classifiers only and its learning curve, labeling speed and report stay on the page."""
    from conftest import cli

    label_two_clusters_by_their_majority(sample)
    assert cli("train", "--workspace", sample)[0] == 0
    code, data = cli("vae-centres", "--workspace", sample, "--features", "efficientnet_lite0", "--k", "3",
                     "--option", "pretrain_epochs=2", "--option", "latent_dim=4")
    assert code == 0, data
    app = run_page("metrics")
    assert_clean(app)
    options = app.selectbox[0].options
    assert options and not [o for o in options if o.startswith(f"model {data['model_id']}:")], options
    headers = [h.value for h in app.subheader]
    assert {"Learning curves", "Labeling speed", "Report for stakeholders"} <= set(headers), headers
    train = run_page("train")
    assert_clean(train)
    button(train, "Predict the unlabeled images").click().run()
    assert_clean(train)


def test_home_counts_accepted_labels_and_names_the_pending_ones(sample):
    from conftest import cli

    from serieslabeler.labels import current_labels, pending_labels

    label_two_clusters_by_their_majority(sample)
    assert cli("train", "--workspace", sample)[0] == 0 and cli("predict", "--workspace", sample)[0] == 0
    code, routed = cli("route", "--workspace", sample, "--threshold", "0", "--no-support")
    assert code == 0 and routed["pseudo_labeled"] > 0, routed
    with Workspace.open(sample) as workspace:
        accepted, pending = len(current_labels(workspace, include_pending=False)), len(pending_labels(workspace))
    app = run_page("home")
    assert_clean(app)
    labeled = next(m for m in app.metric if m.label == "Labeled")
    assert labeled.value == str(accepted) and f"{pending} pending review" in str(labeled.proto.delta)
