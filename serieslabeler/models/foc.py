"""Fuzzy overclustering (FOC): a classifier with a second, overclustering head.

Some classes are fuzzy (experts disagree where "Backside" ends and "Torso" begins), and
forcing such images into one class hides their substructure. FOC trains one network with
two heads on a shared backbone:

- a *normal head* with one output per class, cross-entropy on the labeled images;
- an *overclustering head* with ``k`` outputs (k several times the number of classes).

Both heads get the unsupervised IIC objective: maximize the mutual information between the
outputs for two augmentations of the same image (:func:`mutual_information`). The
overclustering head also gets a supervised term, the inverse cross-entropy
:func:`inverse_cross_entropy` between images of *different* labels, which pushes them into
different overclusters without forcing same-label images into one. The overclusters are the
substructures offered for labeling; :func:`consistency` measures how well they agree with
the labels.

The network reads either cached backbone features (an MLP backbone; fast, the default on a
CPU) or images (a small CNN for tiny ones, or an ImageNet CNN of :mod:`serieslabeler.embed.backbones`
such as ResNet-18 at low resolution). The torch building blocks here (backbones,
augmentations, label encoding, batch iteration, image loading, pickling) are shared with
:mod:`serieslabeler.models.vae_rounds`.

In a workspace, :func:`train_overcluster` is the training mode ``overcluster`` of
:data:`serieslabeler.models.predictions.MODES` (``serieslabeler train --mode overcluster``).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.base import ClassifierMixin

from serieslabeler.clustering.algorithms import centre_distances, number_by_size
from serieslabeler.clustering.runs import Clustering, load_clustering, save_clustering
from serieslabeler.embed.backbones import seeded_init
from serieslabeler.embed.local import resolve_device
from serieslabeler.errors import PipelineError
from serieslabeler.models.base import Trained
from serieslabeler.models.configs import OverclusterConfig
from serieslabeler.models.features import image_backbone
from serieslabeler.models.head import LinearSoftmax
from serieslabeler.models.losses import inverse_cross_entropy, mutual_information
from serieslabeler.models.modes import (
    grouped_holdout,
    holdout_metrics,
    mode_inputs,
    trunk_network,
)
from serieslabeler.models.torch_loop import (
    Standardizer,
    TorchEstimator,
    _is_unlabeled,
    build_backbone,
    check_input,
    encode_labels,
    make_augment,
    run_batches,
    semi_supervised_batches,
    softmax,
    torch_generator,
)
from serieslabeler.progress import Progress
from serieslabeler.space.spaces import build_space, space_options


# --- the FOC model -----------------------------------------------------------------------
def _two_head_net(backbone, width: int, n_classes: int, n_overclusters: int):
    from torch import nn

    class TwoHeadNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.classes = nn.Linear(width, n_classes)
            self.overclusters = nn.Linear(width, n_overclusters)

        def forward(self, x):
            features = self.backbone(x)
            return self.classes(features), self.overclusters(features), features

    return TwoHeadNet()


@dataclass(frozen=True)
class EpochLoss:
    """Mean losses of one epoch: the total and its parts (MI is reported as maximized)."""

    epoch: int
    total: float
    cross_entropy: float
    inverse_cross_entropy: float
    mutual_information: float


class FuzzyOvercluster(ClassifierMixin, TorchEstimator):
    """FOC classifier: a normal head and an overclustering head on one backbone.

    ``fit(X, y)`` with ``y`` one label per image (None / "" / -1 where unlabeled);
    ``predict`` / ``predict_proba`` use the normal head, ``predict_clusters`` the
    overclustering head, ``transform`` the backbone's features.
    """

    def __init__(
        self,
        n_overclusters: int | None = None,
        overcluster_factor: int = 5,
        unlabeled_ratio: float = 0.5,
        input: str = "features",
        backbone: str | None = None,
        backbone_weights: str | None = None,
        hidden: int = 256,
        epochs: int = 40,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        mi_weight: float = 1.0,
        inverse_weight: float = 1.0,
        noise: float = 0.1,
        dropout: float = 0.2,
        flip: bool = True,
        device: str = "auto",
        random_state: int | None = 0,
    ):
        self.n_overclusters = n_overclusters
        self.overcluster_factor = overcluster_factor
        self.unlabeled_ratio = unlabeled_ratio
        self.input = input
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.mi_weight = mi_weight
        self.inverse_weight = inverse_weight
        self.noise = noise
        self.dropout = dropout
        self.flip = flip
        self.device = device
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None, progress: Progress | None = None) -> "FuzzyOvercluster":
        X = check_input(X, self.input, minimum=2)
        self.classes_, codes = encode_labels(y, len(X))
        if len(self.classes_) < 2:
            raise PipelineError(
                f"overcluster training needs labeled images of at least 2 classes, got {len(self.classes_)}; "
                "label some clusters first"
            )
        weights = np.ones(len(X), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        self.device_ = resolve_device(self.device)
        self.input_shape_ = tuple(X.shape[1:])
        self.n_overclusters_ = self.n_overclusters or self.overcluster_factor * len(self.classes_)
        self.backbone_ = self.backbone or ("mlp" if self.input == "features" else "conv")
        self.scaler_ = Standardizer(self.input).fit(X)
        if self.input == "features":
            self.n_features_in_ = X.shape[1]
        # the network's initialisation and any dropout of an ImageNet trunk draw from torch's
        # generator, forked and seeded here; batches and augmentations from local generators
        with seeded_init(self.random_state, self.device_):
            self.net_ = self._build_net().to(self.device_)
            self._train(X, codes, weights, progress)
        self.net_.eval()
        return self

    def _train(self, X: np.ndarray, codes: np.ndarray, weights: np.ndarray, progress: Progress | None) -> None:
        import torch

        rng = np.random.default_rng(self.random_state)
        augment = make_augment(self.input, self.noise, self.dropout, self.flip, torch_generator(rng, self.device_))
        optimizer = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        data = torch.from_numpy(self.scaler_.transform(X)).to(self.device_)
        targets = torch.from_numpy(codes).to(self.device_)
        weight_tensor = torch.from_numpy(weights).to(self.device_)
        self.history_: list[EpochLoss] = []
        for epoch in range(self.epochs):
            self.net_.train()
            sums = np.zeros(4)
            batches = 0
            for index in semi_supervised_batches(codes, self.batch_size, self.unlabeled_ratio, rng):
                if len(index) < 2:
                    continue
                index = torch.from_numpy(index).to(self.device_)
                parts = self._batch_loss(data[index], targets[index], weight_tensor[index], augment)
                optimizer.zero_grad()
                parts[0].backward()
                optimizer.step()
                sums += [float(p.detach()) for p in parts]
                batches += 1
            self.history_.append(EpochLoss(epoch, *(float(v) for v in sums / max(batches, 1))))
            if progress:
                progress(epoch + 1, self.epochs)

    def _build_net(self, pretrained: bool = True):
        weights = self.backbone_weights if pretrained else None
        trunk, width = build_backbone(self.backbone_, self.input_shape_, self.hidden, weights)
        return _two_head_net(trunk, width, len(self.classes_), self.n_overclusters_)

    def _batch_loss(self, x, codes, weights, augment):
        """Total loss and its parts for one batch (labeled rows are those with code >= 0)."""
        import torch
        import torch.nn.functional as F

        views = [self.net_(augment(x)) for _ in range(2)]
        class_probs = [v[0].softmax(dim=1) for v in views]
        over_probs = [v[1].softmax(dim=1) for v in views]
        mi = mutual_information(*class_probs) + mutual_information(*over_probs)
        labeled = codes >= 0
        zero = torch.zeros((), device=x.device)
        ce, inverse = zero, zero
        if labeled.any():
            w = weights[labeled]
            ce = sum(
                (F.cross_entropy(v[0][labeled], codes[labeled], reduction="none") * w).sum() / w.sum() for v in views
            ) / 2
            different = codes[labeled][:, None] != codes[labeled][None, :]
            if different.any():
                pair_weight = (w[:, None] * w[None, :]) * different
                inverse = sum(
                    (inverse_cross_entropy(p[labeled][:, None], p[labeled][None, :]) * pair_weight).sum()
                    / pair_weight.sum()
                    for p in over_probs
                ) / 2
        total = ce + self.inverse_weight * inverse - self.mi_weight * mi
        return total, ce.detach(), inverse.detach(), mi.detach()

    # --- inference ---------------------------------------------------------------------
    def _outputs(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = self.scaler_.transform(check_input(X, self.input))
        self.net_.eval()
        batches = run_batches(self.net_, X, 256, self.device_)
        return tuple(np.concatenate([b[i] for b in batches]) for i in range(3))

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self._outputs(X)[0])

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def overcluster_proba(self, X) -> np.ndarray:
        return softmax(self._outputs(X)[1])

    def predict_clusters(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(cluster, probability)``: each image's overcluster and the head's confidence in it."""
        proba = self.overcluster_proba(X)
        return proba.argmax(axis=1), proba.max(axis=1)

    def transform(self, X) -> np.ndarray:
        """The backbone's feature vectors (the model's own embedding, for clustering)."""
        return self._outputs(X)[2]


def consistency(clusters: Sequence, labels: Sequence) -> float:
    """Share of labeled images whose cluster's majority label is their own label.

    ``labels`` has None (or "") for unlabeled images; they are ignored. NaN when nothing is
    labeled. For fuzzy classes, a high value means the overclusters are substructures of
    the classes rather than mixtures across them.
    """
    by_cluster: dict = {}
    for cluster, label in zip(clusters, labels):
        if not _is_unlabeled(label):
            by_cluster.setdefault(cluster, Counter())[label] += 1
    total = sum(sum(c.values()) for c in by_cluster.values())
    if total == 0:
        return float("nan")
    return sum(c.most_common(1)[0][1] for c in by_cluster.values()) / total


# --- in a workspace: the ``overcluster`` training mode ------------------------------------
def train_overcluster(workspace, data, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None):
    """Training mode ``overcluster`` (:data:`serieslabeler.models.predictions.MODES`): FOC on the accepted labels.

    Its overclusters over the labeled images and the unlabeled pool are saved as a
    clustering (algorithm ``overcluster``) in ``feature_set``'s space, so the labeling page
    offers them, split and merge them like any other; the id is in the model's metrics.
    """

    options = OverclusterConfig.from_params(params)
    inputs = mode_inputs(workspace, data, feature_set, options, seed, device, progress)
    backbone, weights = (options.backbone or "mlp", None)
    if options.input == "images":
        backbone, weights = image_backbone(workspace, feature_set, options)

    def make() -> FuzzyOvercluster:
        return FuzzyOvercluster(
            n_overclusters=options.n_overclusters, overcluster_factor=options.overcluster_factor,
            unlabeled_ratio=options.unlabeled_ratio, input=options.input, backbone=backbone,
            backbone_weights=weights, hidden=options.hidden, epochs=options.epochs,
            batch_size=options.batch_size, lr=options.lr, mi_weight=options.mi_weight,
            inverse_weight=options.inverse_weight, device=device, random_state=seed,
        )

    metrics: dict = {"validation": None, "validation_note": "needs labels of at least 2 subjects and 2 classes"}
    holdout = grouped_holdout(inputs, seed) if options.validate else None
    if holdout is not None:
        train, test = holdout
        probe = make().fit(inputs.X[train], inputs.labels[train], inputs.weights[train])
        metrics = holdout_metrics(probe, inputs, test, len(np.unique(inputs.subjects[test])))
        clusters, _ = probe.predict_clusters(inputs.X[test])
        metrics["validation_consistency"] = consistency(clusters, inputs.labels[test])
    model = make().fit(inputs.X, inputs.labels, inputs.weights, progress=progress)
    clusters, confidence = model.predict_clusters(inputs.X)
    clustering = save_overclustering(workspace, feature_set, inputs.image_ids, clusters, confidence, seed)
    metrics.update(
        history=[vars(h) for h in model.history_],
        clustering_id=clustering.id,
        overclusters=model.n_overclusters_,
        overclusters_used=clustering.k,
        consistency_training=consistency(clusters[: inputs.n_labeled], inputs.labels[: inputs.n_labeled]),
        unlabeled_pool=len(inputs.image_ids) - inputs.n_labeled,
    )
    options = replace(options, backbone=backbone, weights=weights)
    if options.input == "features":
        return Trained(model, feature_set, options.to_dict(), metrics)
    head = model.net_.classes
    classifier = LinearSoftmax(head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy(), model.classes_)
    return Trained(classifier, None, options.to_dict(), metrics, trunk_network(model.net_.backbone, backbone, weights, options.image_size))


def save_overclustering(workspace, feature_set: str, image_ids, clusters, confidence, seed: int = 0):
    """Save overclusters as a clustering (``cluster_members.distance`` as for any clustering).

    The distance is each image's distance to its overcluster's mean in the feature set's
    space, so ordering by atypicality, confidence weights ``p_c exp(-a d)``, splits and
    merges work as for k-means clusters. Clusters are numbered by size;
    ``params["head_outputs"][c]`` is the head output that cluster ``c`` came from.
    """

    order = np.argsort(np.asarray(image_ids, dtype=np.int64), kind="stable")
    ids, X, options = build_space(workspace, feature_set, "full", np.asarray(image_ids)[order], seed, **space_options("full"))
    outputs = np.asarray(clusters)[order]
    numbered = number_by_size(outputs)
    head_outputs = [int(outputs[numbered == c][0]) for c in range(numbered.max() + 1)]
    params = {
        **options, "seed": seed, "source": "overcluster head", "head_outputs": head_outputs,
        "mean_confidence": float(np.mean(confidence)),
    }
    k = len(head_outputs)
    return save_clustering(workspace, Clustering(None, feature_set, "overcluster", k, "full", None, params, ids, numbered, centre_distances(X, numbered)))


def clustering_consistency(workspace, clustering_id: int, truth: str = "labels") -> float:
    """:func:`consistency` of a saved clustering against the accepted labels or the ground truth."""

    clustering = load_clustering(workspace, clustering_id)
    if truth == "labels":
        sql = "SELECT image_id, label FROM current_labels WHERE status='accepted' AND image_id IN ({})"
    elif truth == "ground_truth":
        sql = "SELECT image_id, label FROM ground_truth WHERE image_id IN ({})"
    else:
        raise PipelineError(f"truth must be 'labels' or 'ground_truth', not '{truth}'")
    known = {r[0]: r[1] for r in workspace.query_in(sql, clustering.image_ids)}
    return consistency(clustering.clusters, [known.get(int(i)) for i in clustering.image_ids])
