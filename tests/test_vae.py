"""The latent VAE: training, latent clusters, top-down splits, decoded centres, member weights."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits

from serieslabeler.errors import PipelineError
from serieslabeler.models import (
    CentreDecision,
    LatentClusters,
    LatentVAE,
    centre_pictures,
    centre_training_labels,
    cluster_latents,
    split_latent_cluster,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300].astype(np.float32), y[:300]


@pytest.fixture(scope="module")
def image_vae(digits):
    """A VAE trained briefly on the 8x8 digit images (values in [0, 1])."""
    X, _ = digits
    images = (X / 16.0).reshape(-1, 1, 8, 8)
    return LatentVAE(input="images", latent_dim=8, pretrain_epochs=4, device="cpu").fit_unsupervised(images), images


def test_centre_labels_weigh_members_by_their_distance_relative_to_the_cluster_median():
    clusters = LatentClusters(
        centres=np.zeros((3, 2)),
        assignments=np.array([0, 0, 0, 1, 1, 2]),
        distances=np.array([1.0, 2.0, 4.0, 3.0, 3.0, 5.0]),
    )
    rows, labels, weights = centre_training_labels(
        clusters, {0: CentreDecision("Arm", 0.9), 2: CentreDecision("Leg", 0.5)}, a=2.0
    )
    assert list(rows) == [0, 1, 2, 5] and list(labels) == ["Arm", "Arm", "Arm", "Leg"]
    np.testing.assert_allclose(weights, [0.9 * np.exp(-1.0), 0.9 * np.exp(-2.0), 0.9 * np.exp(-4.0), 0.5 * np.exp(-2.0)])
    with pytest.raises(PipelineError, match="no cluster 7"):
        centre_training_labels(clusters, {7: CentreDecision("Arm")})
    with pytest.raises(PipelineError, match="between 0 and 1"):
        centre_training_labels(clusters, {0: CentreDecision("Arm", 1.5)})


@pytest.mark.slow
def test_unsupervised_then_labeled_training_lowers_the_losses(digits):
    X, y = digits
    model = LatentVAE(pretrain_epochs=6, epochs=6, device="cpu").fit_unsupervised(X)
    pretrain = model.history_
    assert [h.phase for h in pretrain] == ["unsupervised"] * 6
    assert pretrain[-1].total < pretrain[0].total
    partial = np.where(np.arange(len(y)) % 3 == 0, y, -1)
    model.fit_labeled(X, partial)
    labeled = model.history_[6:]
    assert [h.phase for h in labeled] == ["labeled"] * 6
    assert labeled[-1].classification < labeled[0].classification
    assert labeled[-1].total < labeled[0].total
    assert list(model.classes_) == list(range(10))
    assert (model.predict(X) == y).mean() > 0.5
    assert model.transform(X).shape == (300, 16)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(X[:10]), model.predict_proba(X[:10]), atol=1e-5)


@pytest.mark.slow
def test_decoded_centres_have_the_image_shape_and_nearest_members_belong_to_them(image_vae):
    model, images = image_vae
    assert model.history_[-1].total < model.history_[0].total
    Z = model.transform(images)
    clusters = cluster_latents(Z, random_state=0)
    assert 2 <= clusters.k <= 12
    pictures = centre_pictures(model, Z, clusters.assignments)
    assert pictures.decoded.shape == (clusters.k, 1, 8, 8)
    assert pictures.decoded.min() >= 0 and pictures.decoded.max() <= 1
    assert list(pictures.clusters) == list(range(clusters.k))
    assert all(clusters.assignments[row] == c for c, row in zip(pictures.clusters, pictures.nearest))


@pytest.mark.slow
def test_a_top_down_split_divides_one_cluster_and_keeps_the_others(image_vae):
    model, images = image_vae
    Z = model.transform(images)
    clusters = cluster_latents(Z, k=4, random_state=0)
    split = split_latent_cluster(clusters, Z, 1, random_state=0)
    assert split.k == 5
    unchanged = clusters.assignments != 1
    np.testing.assert_array_equal(split.assignments[unchanged], clusters.assignments[unchanged])
    halves = split.assignments[~unchanged]
    assert set(halves) == {1, 4} and (halves == 1).sum() >= (halves == 4).sum()
    assert centre_pictures(model, Z, split.assignments).decoded.shape == (5, 1, 8, 8)


def test_labels_of_a_single_class_or_before_pretraining_are_refused(digits):
    X, _ = digits
    with pytest.raises(PipelineError, match="call fit_unsupervised"):
        LatentVAE().fit_labeled(X, np.zeros(len(X)))
    model = LatentVAE(pretrain_epochs=1, device="cpu").fit_unsupervised(X)
    with pytest.raises(PipelineError, match="at least 2 classes"):
        model.fit_labeled(X, np.zeros(len(X)))
    with pytest.raises(PipelineError, match="no classification head"):
        model.predict(X)


# --- in a workspace: centres to name, then the vae training mode ----------------------------
@pytest.mark.slow
def test_vae_centres_are_named_split_and_continued_by_train_mode_vae(sample_workspace, tmp_path):
    from serieslabeler.clustering import split_cluster
    from serieslabeler.labels import label_cluster
    from serieslabeler.models import decoded_centres, load_model_record, predict
    from serieslabeler.store import FeatureStore, Workspace
    from tests.conftest import cli

    code, data = cli("vae-centres", "--workspace", sample_workspace, "--features", "efficientnet_lite0", "--k", "3",
                     "--option", "pretrain_epochs=3", "--option", "latent_dim=8")
    assert code == 0, data
    assert data["k"] == 3 and data["latents"] == f"model-{data['model_id']}" and len(data["centres"]) == 3
    with Workspace.open(sample_workspace) as workspace:
        assert FeatureStore(workspace).info(data["latents"]).dim == 8
        split = split_cluster(workspace, data["clustering_id"], 0)
        pictures = decoded_centres(workspace, split.id)
        assert [p.cluster for p in pictures] == [0, 1, 2, 3] and sum(p.size for p in pictures) == 80
        for picture in pictures:
            assert picture.decoded.shape == (1280,) and not picture.is_image
            assert split.clusters[split.image_ids == picture.nearest_image_id][0] == picture.cluster
        for picture, (label, confidence) in zip(pictures, [("O", 0.9), ("R", 0.8), ("V", 0.7), ("O", 0.6)]):
            label_cluster(workspace, split.id, picture.cluster, label, cluster_confidence=confidence)
    code, data_model = cli("train", "--workspace", sample_workspace, "--mode", "vae", "--epochs", "3")
    assert code == 0, data_model
    model = data_model["model"]
    assert model["classes"] == ["O", "R", "V"] and model["metrics"]["init_model"] == data["model_id"]
    assert [h["phase"] for h in model["metrics"]["history"]] == ["labeled"] * 3
    with Workspace.open(sample_workspace) as workspace:
        assert load_model_record(workspace, data["model_id"]).classes == []
        code, shown = cli("vae-centres", "--workspace", sample_workspace, "--clustering", split.id)
        assert code == 0 and len(shown["centres"]) == 4
        code, refused = cli("vae-centres", "--workspace", sample_workspace, "--clustering", 1)
        assert code == 2 and "not the latent space of a VAE" in refused["error"]
        with pytest.raises(PipelineError, match="no classification head"):
            predict(workspace, data["model_id"], image_ids=[1])
        assert len(predict(workspace, model["id"], image_ids=[1, 2, 3])) == 3


@pytest.mark.slow
def test_an_image_vae_decodes_its_centres_to_pictures_of_the_input_size(sample_workspace, tmp_path):
    from tests.conftest import cli

    code, data = cli("vae-centres", "--workspace", sample_workspace, "--k", "2", "--option", "input=images",
                     "--option", "backbone=resnet18", "--option", "image_size=16", "--option", "pretrain_epochs=1",
                     "--pictures", tmp_path / "centres")
    assert code == 0, data
    from PIL import Image

    for centre in data["centres"]:
        with Image.open(centre["picture"]) as picture:
            assert picture.size == (128, 128) and picture.mode == "RGB"


@pytest.mark.slow
def test_latents_of_images_added_after_phase_one_are_computed_on_request(sample_workspace):
    from serieslabeler.models import store_latents, vae_centres
    from serieslabeler.store import FeatureStore, Workspace

    with Workspace.open(sample_workspace) as workspace:
        store = FeatureStore(workspace)
        ids, X = store.load("efficientnet_lite0@imagenet")
        store.register("half@test", "efficientnet_lite0", "test", X.shape[1])
        store.append("half@test", ids[:40], X[:40])
        round_ = vae_centres(workspace, "half@test", k=2, pretrain_epochs=2, device="cpu")
        assert store.ids(round_.latents).tolist() == ids[:40].tolist()
        store.append("half@test", ids[40:], X[40:])
        assert store_latents(workspace, round_.model_id, ids) == 40
        assert store_latents(workspace, round_.model_id, ids) == 0
        assert store.ids(round_.latents).tolist() == ids.tolist()
