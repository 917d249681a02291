"""Fuzzy overclustering: the IIC and inverse cross-entropy losses, batches, training on digits."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from serieslabeler.errors import PipelineError
from serieslabeler.models import (
    FuzzyOvercluster,
    ImageAugment,
    consistency,
    encode_labels,
    inverse_cross_entropy,
    mutual_information,
    semi_supervised_batches,
)


@pytest.fixture(scope="module")
def digits():
    """300 real 8x8 digits, 80 of them labeled (8 per class), the rest unlabeled (-1)."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:300].astype(np.float32), y[:300]
    partial = np.full(len(y), -1)
    rng = np.random.default_rng(0)
    for digit in range(10):
        chosen = rng.choice(np.flatnonzero(y == digit), 8, replace=False)
        partial[chosen] = digit
    return X, y, partial


def one_hot(assignments, k):
    return torch.nn.functional.one_hot(torch.as_tensor(assignments), k).float()


def test_mutual_information_is_log_k_for_a_one_to_one_joint_and_less_otherwise():
    k = 5
    perfect = one_hot(np.arange(200) % k, k)
    assert float(mutual_information(perfect, perfect)) == pytest.approx(math.log(k), abs=1e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        p1 = torch.softmax(3 * torch.randn(200, k, generator=generator), dim=1)
        p2 = torch.softmax(p1.log() + torch.randn(200, k, generator=generator), dim=1)
        assert float(mutual_information(p1, p2)) < math.log(k) - 0.05
    unbalanced = one_hot(np.r_[np.zeros(120, int), np.arange(80) % k], k)
    assert float(mutual_information(unbalanced, unbalanced)) < math.log(k) - 0.1


def test_mutual_information_is_zero_for_independent_outputs():
    same_everywhere = torch.tensor([[0.1, 0.2, 0.3, 0.4]]).repeat(50, 1)
    assert float(mutual_information(same_everywhere, same_everywhere)) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    a, b = one_hot(rng.integers(0, 4, 20000), 4), one_hot(rng.integers(0, 4, 20000), 4)
    assert 0 <= float(mutual_information(a, b)) < 2e-3


def test_inverse_cross_entropy_is_zero_for_disjoint_support_and_grows_with_overlap():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0])
    disjoint = torch.tensor([0.0, 0.0, 0.3, 0.7])
    assert float(inverse_cross_entropy(p, disjoint)) == pytest.approx(0.0, abs=1e-7)
    assert float(inverse_cross_entropy(torch.tensor([0.0, 0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0, 0.0]))) == 0.0
    overlap = torch.tensor([0.4, 0.0, 0.3, 0.3])
    expected = -(0.5 * math.log(0.6) + 0.5 * math.log(1.0))
    assert float(inverse_cross_entropy(p, overlap)) == pytest.approx(expected, rel=1e-6)
    assert float(inverse_cross_entropy(p, torch.tensor([0.9, 0.1, 0.0, 0.0]))) > expected
    pairs = inverse_cross_entropy(torch.stack([p, overlap])[:, None], torch.stack([disjoint, p, overlap])[None])
    assert pairs.shape == (2, 3)


def test_consistency_is_the_share_of_labeled_images_agreeing_with_their_cluster_majority():
    clusters = [0, 0, 0, 1, 1, 2, 2]
    labels = ["a", "a", "b", "c", "c", None, ""]
    assert consistency(clusters, labels) == pytest.approx(4 / 5)
    assert math.isnan(consistency([0, 1], [None, None]))


def test_encode_labels_marks_none_empty_and_minus_one_as_unlabeled():
    classes, codes = encode_labels(["b", None, "a", "", "b"], 5)
    assert list(classes) == ["a", "b"] and list(codes) == [1, -1, 0, -1, 1]
    classes, codes = encode_labels(np.array([3, -1, 7]), 3)
    assert list(classes) == [3, 7] and list(codes) == [0, -1, 1]
    with pytest.raises(PipelineError, match="2 labels for 3 images"):
        encode_labels(["a", "b"], 3)


def test_batches_hold_the_unlabeled_share_and_cover_both_sets():
    codes = np.r_[np.zeros(10, int), np.full(200, -1)]
    batches = list(semi_supervised_batches(codes, 16, 0.25, np.random.default_rng(0)))
    assert len(batches) == 50  # 200 unlabeled images, 4 per batch; the 10 labeled ones cycled
    for batch in batches:
        assert len(batch) == 16 and (codes[batch] < 0).sum() == 4
    seen = np.concatenate(batches)
    assert set(seen) == set(range(210))
    assert np.bincount(seen[codes[seen] < 0]).max() == 1
    many_labels = np.r_[np.zeros(100, int), np.full(5, -1)]
    batches = list(semi_supervised_batches(many_labels, 10, 0.5, np.random.default_rng(0)))
    assert len(batches) == 20 and set(np.concatenate(batches)) == set(range(105))
    only_unlabeled = list(semi_supervised_batches(np.full(30, -1), 16, 0.5, np.random.default_rng(0)))
    assert sorted(np.concatenate(only_unlabeled)) == list(range(30))
    with pytest.raises(PipelineError, match="unlabeled ratio"):
        next(semi_supervised_batches(codes, 16, 1.0, np.random.default_rng(0)))


@pytest.mark.slow
def test_training_on_digits_features_lowers_the_loss_and_gives_overclusters(digits):
    X, y, partial = digits
    model = FuzzyOvercluster(epochs=8, batch_size=64, random_state=0, device="cpu").fit(X, partial)
    history = model.history_
    assert len(history) == 8
    assert history[-1].total < history[0].total
    assert history[-1].cross_entropy < history[0].cross_entropy
    assert history[-1].mutual_information > history[0].mutual_information
    assert model.n_overclusters_ == 50
    clusters, confidence = model.predict_clusters(X)
    assert clusters.shape == (300,) and clusters.max() < 50 and np.all((confidence > 0) & (confidence <= 1))
    assert consistency(clusters, y) > 0.5
    assert (model.predict(X) == y).mean() > 0.6
    assert model.transform(X[:5]).shape == (5, model.hidden)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(X[:20]), model.predict_proba(X[:20]), atol=1e-5)


@pytest.mark.slow
def test_training_on_small_images_with_the_conv_backbone_lowers_the_loss(digits):
    X, _, partial = digits
    images = (X / 16.0).reshape(-1, 1, 8, 8)
    model = FuzzyOvercluster(input="images", epochs=4, n_overclusters=20, random_state=0, device="cpu", flip=False)
    model.fit(images, partial)
    assert model.backbone_ == "conv"
    assert model.history_[-1].total < model.history_[0].total
    assert model.overcluster_proba(images[:3]).shape == (3, 20)


def test_overcluster_needs_two_labeled_classes_and_the_right_input_shape(digits):
    X, _, _ = digits
    with pytest.raises(PipelineError, match="at least 2 classes"):
        FuzzyOvercluster(epochs=1).fit(X, np.r_[np.zeros(10, int), np.full(len(X) - 10, -1)])
    with pytest.raises(PipelineError, match=r"shape \(n, channels, height, width\)"):
        FuzzyOvercluster(input="images", epochs=1).fit(X, np.zeros(len(X)))


def test_image_augment_without_crop_or_jitter_is_the_identity_or_its_mirror():
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    still = ImageAugment(scale=(1, 1), ratio=(1, 1), flip=False, jitter=0)
    torch.testing.assert_close(still(x), x, atol=1e-5, rtol=0)
    flipped = ImageAugment(scale=(1, 1), ratio=(1, 1), flip=True, jitter=0)(x)
    for view, image in zip(flipped, x):
        assert torch.allclose(view, image, atol=1e-5) or torch.allclose(view, image.flip(-1), atol=1e-5)
    assert ImageAugment()(x).shape == x.shape


# --- in a workspace --------------------------------------------------------------------------
def label_with_ground_truth(root, every: int = 3) -> dict[int, str]:
    """Label every ``every``-th image of the workspace with its ground truth (manual labels)."""
    from serieslabeler.labels import label_images
    from serieslabeler.store import Workspace

    with Workspace.open(root) as workspace:
        truth = dict(workspace.db.execute("SELECT image_id, label FROM ground_truth ORDER BY image_id").fetchall())
        chosen = list(truth)[::every]
        for label in sorted({truth[i] for i in chosen}):
            label_images(workspace, [i for i in chosen if truth[i] == label], label)
    return truth


@pytest.mark.slow
def test_train_mode_overcluster_saves_a_model_and_its_overclusters(sample_workspace):
    from serieslabeler.clustering import load_clustering
    from serieslabeler.models import (
        clustering_consistency,
        load_classifier,
        load_model_record,
        predict,
    )
    from serieslabeler.store import Workspace
    from tests.conftest import cli

    truth = label_with_ground_truth(sample_workspace)
    code, data = cli("train", "--workspace", sample_workspace, "--mode", "overcluster", "--epochs", "4",
                     "--option", "overcluster_factor=3", "--option", "unlabeled_ratio=0.5")
    assert code == 0, data
    model = data["model"]
    assert model["mode"] == "overcluster" and model["feature_set"] == "efficientnet_lite0@imagenet"
    assert model["metrics"]["overclusters"] == 3 * len(model["classes"])
    assert model["metrics"]["validation"]["top1"] > 0.45  # measured 0.67 on held-out subjects (4 stages)
    with Workspace.open(sample_workspace) as workspace:
        clustering = load_clustering(workspace, model["metrics"]["clustering_id"])
        assert clustering.algorithm == "overcluster" and clustering.feature_set == "efficientnet_lite0@imagenet"
        assert sorted(clustering.image_ids) == sorted(truth) and np.all(clustering.distances >= 0)
        assert clustering.k == model["metrics"]["overclusters_used"] == len(np.unique(clustering.clusters))
        assert clustering_consistency(workspace, clustering.id, "ground_truth") > 0.65  # measured 0.825
        assert clustering_consistency(workspace, clustering.id) == pytest.approx(model["metrics"]["consistency_training"])
        assert isinstance(load_classifier(workspace, load_model_record(workspace, model["id"])), FuzzyOvercluster)
        predictions = predict(workspace, model["id"])
        assert len(predictions) == len(truth) - model["metrics"]["train_size"]
        assert set(predictions.labels) <= set(model["classes"])
    code, data = cli("train", "--workspace", sample_workspace, "--mode", "overcluster", "--option", "ratio=2")
    assert code == 2 and "does not take option(s) ratio" in data["error"]


@pytest.mark.slow
def test_train_mode_overcluster_on_pixels_saves_a_network_whose_features_predict(sample_workspace):
    from serieslabeler.models import predict
    from serieslabeler.store import FeatureStore, Workspace
    from tests.conftest import cli

    label_with_ground_truth(sample_workspace, every=4)
    code, data = cli("train", "--workspace", sample_workspace, "--mode", "overcluster", "--epochs", "1",
                     "--backbone", "resnet18", "--weights", "random", "--image-size", "32",
                     "--option", "input=images", "--option", "validate=false")
    assert code == 0, data
    model = data["model"]
    assert model["feature_set"] == f"model-{model['id']}"
    with Workspace.open(sample_workspace) as workspace:
        assert FeatureStore(workspace).info(model["feature_set"]).count == workspace.image_count()
        predictions = predict(workspace, model["id"])
        assert len(predictions) > 0 and np.allclose(predictions.proba.sum(axis=1), 1)
