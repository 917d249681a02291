"""models.vae"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.base import ClassifierMixin, TransformerMixin

from serieslabeler.clustering.algorithms import (
    centre_distances,
    fit_clusters,
    within_cluster_sum_of_squares,
)
from serieslabeler.clustering.suggest import elbow
from serieslabeler.embed.backbones import seeded_init
from serieslabeler.embed.local import resolve_device
from serieslabeler.errors import PipelineError
from serieslabeler.labels.clusters import cluster_confidences
from serieslabeler.models.torch_loop import (
    Standardizer,
    TorchEstimator,
    build_backbone,
    check_input,
    encode_labels,
    run_batches,
    semi_supervised_batches,
    softmax,
    torch_generator,
)
from serieslabeler.progress import Progress


def _vae_net(input: str, input_shape: tuple[int, ...], hidden: int, latent_dim: int, n_classes: int, backbone: str, weights: str | None):
    import torch
    from torch import nn

    trunk, width = build_backbone(backbone, input_shape, hidden, weights)
    if input == "features":
        decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, input_shape[0]),
        )
    else:
        channels, height, width_px = input_shape
        base = (-(-height // 4), -(-width_px // 4))
        # upsampling then convolving (not transposed convolutions) avoids checkerboard artifacts
        decoder = nn.Sequential(
            nn.Linear(latent_dim, 64 * base[0] * base[1]), nn.ReLU(),
            nn.Unflatten(1, (64, *base)),
            nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, channels, 3, padding=1),
        )

    class VAENet(nn.Module):
        """Encoder -> (mu, logvar); decoder -> logits (images) or values (features); head on mu."""

        def __init__(self):
            super().__init__()
            self.encoder = trunk
            self.mu = nn.Linear(width, latent_dim)
            self.logvar = nn.Linear(width, latent_dim)
            self.decoder = decoder
            self.classifier = nn.Linear(latent_dim, max(n_classes, 1))

        def encode(self, x):
            h = self.encoder(x)
            return self.mu(h), self.logvar(h)

        def decode(self, z):
            out = self.decoder(z)
            return out[..., : input_shape[-2], : input_shape[-1]] if out.ndim == 4 else out

        def forward(self, x, generator=None):
            mu, logvar = self.encode(x)
            if self.training:
                noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                z = mu + noise * (0.5 * logvar).exp()
            else:
                z = mu
            return self.decode(z), mu, logvar, self.classifier(mu)

    return VAENet()


@dataclass(frozen=True)
class VAEEpochLoss:
    """Mean losses of one epoch; ``phase`` is ``unsupervised`` or ``labeled``."""

    epoch: int
    phase: str
    total: float
    reconstruction: float
    kl: float
    classification: float


class LatentVAE(ClassifierMixin, TransformerMixin, TorchEstimator):
    """A VAE with a classification head on its latent mean.

    ``input="features"``: vectors ``(n, d)``, standardized, Gaussian reconstruction loss.
    ``input="images"``: ``(n, C, H, W)`` in [0, 1], Bernoulli (binary cross-entropy) loss.
    The encoder is ``backbone`` (default ``mlp`` for features, ``conv`` for images; an
    ImageNet CNN name for larger images, see :func:`serieslabeler.models.foc.build_backbone`).
    ``L_VAE`` is the negative ELBO per input value (divided by the input size), so ``gamma``
    weighs the classification term the same way for 64 pixels and 1280 features.
    """

    def __init__(
        self,
        input: str = "features",
        backbone: str | None = None,
        backbone_weights: str | None = None,
        latent_dim: int = 16,
        hidden: int = 256,
        beta: float = 1.0,
        gamma: float = 1.0,
        pretrain_epochs: int = 30,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        unlabeled_ratio: float = 0.5,
        device: str = "auto",
        random_state: int | None = 0,
    ):
        self.input = input
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.beta = beta
        self.gamma = gamma
        self.pretrain_epochs = pretrain_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.unlabeled_ratio = unlabeled_ratio
        self.device = device
        self.random_state = random_state

    # --- training ------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None, progress: Progress | None = None) -> "LatentVAE":
        """The unsupervised epochs, then (when ``y`` labels anything) the labeled ones."""
        self.fit_unsupervised(X, progress=progress)
        if y is not None and (encode_labels(y, len(X))[1] >= 0).any():
            self.fit_labeled(X, y, sample_weight, progress=progress)
        return self

    def fit_unsupervised(self, X, epochs: int | None = None, progress: Progress | None = None) -> "LatentVAE":
        """Build a fresh network and train the VAE term alone."""
        X = check_input(X, self.input, minimum=2)
        self.device_ = resolve_device(self.device)
        self.input_shape_ = tuple(X.shape[1:])
        if self.input == "features":
            self.n_features_in_ = X.shape[1]
        self.backbone_ = self.backbone or ("mlp" if self.input == "features" else "conv")
        self.classes_ = np.array([], dtype=object)
        self.scaler_ = Standardizer(self.input).fit(X)
        self.history_: list[VAEEpochLoss] = []
        codes = np.full(len(X), -1, dtype=np.int64)
        with seeded_init(self.random_state, self.device_):
            self.net_ = self._build_net().to(self.device_)
            self._train(X, codes, np.ones(len(X), np.float32), self.pretrain_epochs if epochs is None else epochs, progress)
        return self

    def fit_labeled(self, X, y, sample_weight=None, epochs: int | None = None, progress: Progress | None = None) -> "LatentVAE":
        """Continue training with the classification term on the labeled images.

        ``y`` has one entry per image (None / "" / -1 where unlabeled; unlabeled images keep
        feeding the VAE term, up to ``unlabeled_ratio`` of each batch); ``sample_weight`` is
        each image's weight ``w_n``. A new head is made for the classes of ``y``.
        """
        from torch import nn

        if not hasattr(self, "net_"):
            raise PipelineError("fit_labeled continues a trained VAE; call fit_unsupervised (or fit) first")
        X = check_input(X, self.input, minimum=2)
        if tuple(X.shape[1:]) != self.input_shape_:
            raise PipelineError(f"inputs of shape {X.shape[1:]} do not match the VAE's {self.input_shape_}")
        self.classes_, codes = encode_labels(y, len(X))
        if len(self.classes_) < 2:
            raise PipelineError(f"the classification term needs labels of at least 2 classes, got {len(self.classes_)}")
        weights = np.ones(len(X), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        with seeded_init(self.random_state, self.device_):
            self.net_.classifier = nn.Linear(self.latent_dim, len(self.classes_)).to(self.device_)
            self._train(X, codes, weights, self.epochs if epochs is None else epochs, progress)
        return self

    def _build_net(self, pretrained: bool = True):
        weights = self.backbone_weights if pretrained else None
        return _vae_net(self.input, self.input_shape_, self.hidden, self.latent_dim, len(self.classes_), self.backbone_, weights)

    def _train(self, X: np.ndarray, codes: np.ndarray, weights: np.ndarray, epochs: int, progress: Progress | None) -> None:
        """``epochs`` of one phase; batches and the latent noise come from generators seeded by ``random_state``."""
        import torch

        rng = np.random.default_rng(self.random_state)
        generator = torch_generator(rng, self.device_)
        phase = "labeled" if (codes >= 0).any() else "unsupervised"
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        data = torch.from_numpy(self.scaler_.transform(X)).to(self.device_)
        targets = torch.from_numpy(codes).to(self.device_)
        weight_tensor = torch.from_numpy(weights).to(self.device_)
        start = len(self.history_)
        for epoch in range(epochs):
            self.net_.train()
            sums, batches = np.zeros(4), 0
            for index in semi_supervised_batches(codes, self.batch_size, self.unlabeled_ratio, rng):
                if len(index) < 2:
                    continue
                index = torch.from_numpy(index).to(self.device_)
                parts = self._batch_loss(data[index], targets[index], weight_tensor[index], generator)
                optimizer.zero_grad()
                parts[0].backward()
                optimizer.step()
                sums += [float(p.detach()) for p in parts]
                batches += 1
            mean = sums / max(batches, 1)
            self.history_.append(VAEEpochLoss(start + epoch, phase, *(float(v) for v in mean)))
            if progress:
                progress(epoch + 1, epochs)
        self.net_.eval()

    def _batch_loss(self, x, codes, weights, generator):
        import torch
        import torch.nn.functional as F

        decoded, mu, logvar, logits = self.net_(x, generator)
        size = x[0].numel()
        if self.input == "images":
            reconstruction = F.binary_cross_entropy_with_logits(decoded, x, reduction="sum") / len(x)
        else:
            reconstruction = 0.5 * ((decoded - x) ** 2).sum() / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp()) / len(x)
        vae = (reconstruction + self.beta * kl) / size
        labeled = codes >= 0
        classification = torch.zeros((), device=x.device)
        if labeled.any():
            log_probs = logits[labeled].log_softmax(dim=1).gather(1, codes[labeled][:, None])[:, 0]
            classification = -(weights[labeled] * log_probs).sum() / len(x)
        return vae + self.gamma * classification, reconstruction / size, kl / size, classification

    # --- inference -------------------------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """The latent means ``(n, latent_dim)``."""
        X = self.scaler_.transform(check_input(X, self.input))
        self.net_.eval()
        return np.concatenate(run_batches(lambda x: self.net_.encode(x)[0], X, 256, self.device_))

    def decode(self, Z) -> np.ndarray:
        """Latent vectors back to the input space: feature vectors, or images in [0, 1]."""
        Z = np.asarray(Z, dtype=np.float32).reshape(-1, self.latent_dim)
        self.net_.eval()
        out = np.concatenate(run_batches(self.net_.decode, Z, 256, self.device_))
        if self.input == "images":
            return 1 / (1 + np.exp(-out))
        return self.scaler_.inverse_transform(out)

    def predict_proba(self, X) -> np.ndarray:
        if len(self.classes_) < 2:
            raise PipelineError("this VAE has no classification head yet; train it with labels (fit_labeled)")
        X = self.scaler_.transform(check_input(X, self.input))
        self.net_.eval()
        return softmax(np.concatenate(run_batches(lambda x: self.net_.classifier(self.net_.encode(x)[0]), X, 256, self.device_)))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


# --- clusters of the latent space ---------------------------------------------------------
@dataclass(frozen=True)
class LatentClusters:
    """k-means clusters of latent vectors: centres, each member's cluster and distance."""

    centres: np.ndarray
    assignments: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centres)


def elbow_k(Z, k_min: int = 2, k_max: int = 12, random_state: int = 0) -> int:
    """``k`` at the elbow of the k-means inertia curve over ``k_min..k_max``."""

    Z = np.asarray(Z, dtype=np.float32)
    ks = list(range(k_min, min(k_max, len(Z) - 1) + 1))
    if not ks:
        return 1
    inertia = [within_cluster_sum_of_squares(Z, fit_clusters(Z, "kmeans", k, random_state)[0]) for k in ks]
    return elbow(ks, inertia)


def cluster_latents(Z, k: int | None = None, k_max: int = 12, random_state: int = 0) -> LatentClusters:
    """k-means on latent vectors (clusters numbered by size); ``k`` from :func:`elbow_k` when not given."""

    Z = np.asarray(Z, dtype=np.float32)
    k = elbow_k(Z, k_max=k_max, random_state=random_state) if k is None else k
    return _clusters(Z, fit_clusters(Z, "kmeans", k, random_state)[0])


def _clusters(Z: np.ndarray, assignments: np.ndarray) -> LatentClusters:
    """Centres as member means (what k-means converges to) and each member's distance to its own."""

    assignments = np.asarray(assignments, dtype=np.int64)
    centres = np.stack([Z[assignments == c].mean(axis=0) for c in range(assignments.max() + 1)])
    return LatentClusters(centres, assignments, centre_distances(Z, assignments))


def split_latent_cluster(clusters: LatentClusters, Z, cluster: int, random_state: int = 0) -> LatentClusters:
    """Top-down split: cluster ``cluster`` re-clustered with k=2 on its own members.

    The larger half keeps the number ``cluster``, the other becomes cluster ``k`` (the new
    last); every other cluster is unchanged.
    """

    Z = np.asarray(Z, dtype=np.float32)
    members = np.flatnonzero(clusters.assignments == cluster)
    if len(members) < 2:
        raise PipelineError(f"cluster {cluster} has {len(members)} member(s); a split needs at least 2")
    halves, _ = fit_clusters(Z[members], "kmeans", 2, random_state)
    assignments = clusters.assignments.copy()
    assignments[members[halves == 1]] = clusters.k
    return _clusters(Z, assignments)


@dataclass(frozen=True)
class CentrePictures:
    """What the expert sees per cluster: its decoded centre and its member nearest the centre.

    ``clusters[i]`` is a cluster number, ``decoded[i]`` its centre (the mean of its members'
    latent vectors) decoded to the input space, ``nearest[i]`` the row of that member.
    """

    clusters: np.ndarray
    decoded: np.ndarray
    nearest: np.ndarray


def centre_pictures(model: LatentVAE, Z, assignments) -> CentrePictures:
    """Decode the centre of every cluster in ``assignments`` and find its most typical member."""
    Z = np.asarray(Z, dtype=np.float32)
    assignments = np.asarray(assignments)
    clusters = np.unique(assignments)
    centres = np.stack([Z[assignments == c].mean(axis=0) for c in clusters])
    nearest = np.array([
        np.flatnonzero(assignments == c)[np.argmin(np.linalg.norm(Z[assignments == c] - centre, axis=1))]
        for c, centre in zip(clusters, centres)
    ])
    return CentrePictures(clusters, model.decode(centres), nearest)


@dataclass(frozen=True)
class CentreDecision:
    """The expert's answer for one centre: its label and how sure he is (p_c)."""

    label: str
    confidence: float = 1.0


def centre_training_labels(
    clusters: LatentClusters, decisions: Mapping[int, CentreDecision], a: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, labels, weights)`` for the members of every named centre.

    Each weight is ``p_c exp(-a d_n)`` with ``d_n`` the member's distance over its cluster's
    median distance (:func:`serieslabeler.labels.log.cluster_confidences`, as for a labeled cluster).
    Centres without a decision (skipped, or fuzzy) leave their members unlabeled.
    """

    unknown = sorted(set(decisions) - set(range(clusters.k)))
    if unknown:
        raise PipelineError(f"no cluster {unknown[0]} among the {clusters.k} centres")
    rows, labels, weights = [], [], []
    for cluster, decision in sorted(decisions.items()):
        if not 0 <= decision.confidence <= 1:
            raise PipelineError(f"the confidence of centre {cluster} must be between 0 and 1, got {decision.confidence}")
        members = np.flatnonzero(clusters.assignments == cluster)
        rows.append(members)
        labels += [decision.label] * len(members)
        weights.append(cluster_confidences(clusters.distances[members], decision.confidence, a))
    if not rows:
        return np.empty(0, np.int64), np.empty(0, object), np.empty(0)
    return np.concatenate(rows), np.array(labels, dtype=object), np.concatenate(weights)
