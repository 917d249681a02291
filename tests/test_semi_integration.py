"""The semi-supervised modes (overcluster, vae) wired into the rest: features of new images in a
VAE's latent space, the loop's --mode, and the menu."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cli

from serieslabeler.cli.commands.train import MODE_OPTIONS
from serieslabeler.loop import ground_truth
from serieslabeler.models import MODES, network_path, predict, train_model
from serieslabeler.store import FeatureStore, Workspace


@pytest.mark.slow
def test_a_head_on_vae_latents_predicts_images_added_after_the_vae(sample_workspace):
    from serieslabeler.labels import label_images
    from serieslabeler.models import vae_centres

    with Workspace.open(sample_workspace) as workspace:
        truth_ids, truth, _ = ground_truth(workspace)
        known = dict(zip(truth_ids.tolist(), truth.tolist()))
        store = FeatureStore(workspace)
        ids, X = store.load("efficientnet_lite0@imagenet")
        for label in ("O", "R"):
            label_images(workspace, [i for i in ids[:40].tolist() if known.get(i) == label][:5], label)
        store.register("early@test", "efficientnet_lite0", "test", X.shape[1])
        store.append("early@test", ids[:40], X[:40])  # the VAE sees the first 40 images only
        round_ = vae_centres(workspace, "early@test", k=2, pretrain_epochs=2, latent_dim=4, device="cpu")
        assert not network_path(workspace, round_.model_id).is_file(), "a phase-1 VAE has latents, no network"
        model = train_model(workspace, "head", feature_set=round_.latents)
        assert model.feature_set == round_.latents
        store.append("early@test", ids[40:], X[40:])  # new images: their latents do not exist yet
        predictions = predict(workspace, model.id, ids[40:])
        assert len(predictions) == 40 and set(predictions.labels) <= {"O", "R"}
        assert store.ids(round_.latents).tolist() == ids.tolist()
        assert store.info(round_.latents).dim == 4


@pytest.mark.slow
def test_iterate_takes_every_training_mode_and_its_options(sample_workspace):
    assert set(MODE_OPTIONS) == set(MODES)
    code, data = cli("iterate", "--workspace", sample_workspace, "--mode", "overcluster", "--option", "epochs=2",
                     "--option", "overcluster_factor=2", "--oracle", "--k", "12", "--purity", "0.5", "--threshold", "0.99")
    assert code == 0, data
    record = data["iteration"]["record"]
    assert record["model"]["mode"] == "overcluster" and record["status"] == "done"
    assert "report" in record["evaluation"]
    with Workspace.open(sample_workspace) as workspace:
        params = workspace.db.execute("SELECT params FROM models WHERE id=?", (record["model"]["id"],)).fetchone()[0]
        assert '"epochs": 2' in params and '"overcluster_factor": 2' in params
    code, data = cli("iterate", "--workspace", sample_workspace, "--mode", "head", "--option", "epochs=2")
    assert code == 2 and "--option applies to --mode overcluster and vae" in data["error"]


def test_the_vae_centres_page_is_in_the_menu():
    from dashboard.common import PAGES, PAGES_DIR

    spec = next(p for p in PAGES if p.file == "centres.py")
    assert (PAGES_DIR / spec.file).is_file() and spec.section == "Iteration"
    assert [p.file for p in PAGES].index("centres.py") == [p.file for p in PAGES].index("label.py") + 1
    assert np.unique([p.url for p in PAGES]).size == len(PAGES)
