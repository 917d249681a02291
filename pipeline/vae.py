"""A VAE whose latent cluster centres the expert names (top-down hierarchical labeling).

On a collection with almost no labels, an expert names a dozen cluster centres faster than
he reviews clusters. The steps, on arrays:

1. :meth:`LatentVAE.fit_unsupervised`: a few epochs of the VAE alone, on backbone features
   (default, fast) or on small images;
2. :func:`cluster_latents`: k-means on the latent vectors, ``k`` from the elbow of the
   inertia curve (:func:`elbow_k`);
3. :func:`centre_pictures`: each centre decoded back to the input space (an image of the
   input shape in image mode) plus the member nearest to the centre, a real picture to
   show when the input is a feature vector;
4. the expert gives each centre a label and a confidence (:class:`CentreDecision`), or asks
   for a split: :func:`split_latent_cluster` re-clusters that cluster with k=2 (top-down);
5. :func:`centre_training_labels`: every member gets its centre's label with weight
   ``w_n = p_c exp(-a d_n)``, ``d_n`` its latent distance to the centre divided by the
   cluster's median distance, so ``a`` means the same for tight and loose clusters;
6. :meth:`LatentVAE.fit_labeled`: training continues with the classification term,
   ``L = L_VAE - gamma * sum_n w_n y_n ln yhat_n``, through a head on the latent mean.

In a workspace the same steps reuse the catalog's own machinery: :func:`vae_centres`
(``python -m pipeline vae-centres``) does 1-2 and stores the latents as the feature set
``model-<id>`` with a k-means clustering of them; :func:`decoded_centres` does 3 for any
clustering of those latents; naming is ``label_cluster`` with a confidence (its weights are
exactly step 5), a split is ``split_cluster`` on that clustering (k=2 in latent space); and
:func:`train_vae`, the training mode ``vae``, does 6 on the accepted labels.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .embed import resolve_device
from .errors import PipelineError
from .overcluster import (
    Standardizer,
    TorchEstimator,
    build_backbone,
    check_input,
    encode_labels,
    run_batches,
    seed_everything,
    semi_supervised_batches,
    softmax,
)
from .progress import Progress


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

        def forward(self, x):
            mu, logvar = self.encode(x)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
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


class LatentVAE(TorchEstimator):
    """A VAE with a classification head on its latent mean.

    ``input="features"``: vectors ``(n, d)``, standardized, Gaussian reconstruction loss.
    ``input="images"``: ``(n, C, H, W)`` in [0, 1], Bernoulli (binary cross-entropy) loss.
    The encoder is ``backbone`` (default ``mlp`` for features, ``conv`` for images; an
    ImageNet CNN name for larger images, see :func:`pipeline.overcluster.build_backbone`).
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
        self._rng = seed_everything(self.random_state)
        self.device_ = resolve_device(self.device)
        self.input_shape_ = tuple(X.shape[1:])
        self.backbone_ = self.backbone or ("mlp" if self.input == "features" else "conv")
        self.classes_ = np.array([], dtype=object)
        self.scaler_ = Standardizer(self.input).fit(X)
        self.net_ = self._build_net().to(self.device_)
        self.history_: list[VAEEpochLoss] = []
        codes = np.full(len(X), -1, dtype=np.int64)
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
        self.net_.classifier = nn.Linear(self.latent_dim, len(self.classes_)).to(self.device_)
        weights = np.ones(len(X), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        self._train(X, codes, weights, self.epochs if epochs is None else epochs, progress)
        return self

    def _build_net(self, pretrained: bool = True):
        weights = self.backbone_weights if pretrained else None
        return _vae_net(self.input, self.input_shape_, self.hidden, self.latent_dim, len(self.classes_), self.backbone_, weights)

    def _train(self, X: np.ndarray, codes: np.ndarray, weights: np.ndarray, epochs: int, progress: Progress | None) -> None:
        import torch

        phase = "labeled" if (codes >= 0).any() else "unsupervised"
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        data = torch.from_numpy(self.scaler_.transform(X)).to(self.device_)
        targets = torch.from_numpy(codes).to(self.device_)
        weight_tensor = torch.from_numpy(weights).to(self.device_)
        start = len(self.history_)
        for epoch in range(epochs):
            self.net_.train()
            sums, batches = np.zeros(4), 0
            for index in semi_supervised_batches(codes, self.batch_size, self.unlabeled_ratio, self._rng):
                if len(index) < 2:
                    continue
                index = torch.from_numpy(index).to(self.device_)
                parts = self._batch_loss(data[index], targets[index], weight_tensor[index])
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

    def _batch_loss(self, x, codes, weights):
        import torch
        import torch.nn.functional as F

        decoded, mu, logvar, logits = self.net_(x)
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
    from .cluster import elbow, fit_clusters, within_cluster_sum_of_squares

    Z = np.asarray(Z, dtype=np.float32)
    ks = list(range(k_min, min(k_max, len(Z) - 1) + 1))
    if not ks:
        return 1
    inertia = [within_cluster_sum_of_squares(Z, fit_clusters(Z, "kmeans", k, random_state)[0]) for k in ks]
    return elbow(ks, inertia)


def cluster_latents(Z, k: int | None = None, k_max: int = 12, random_state: int = 0) -> LatentClusters:
    """k-means on latent vectors (clusters numbered by size); ``k`` from :func:`elbow_k` when not given."""
    from .cluster import fit_clusters

    Z = np.asarray(Z, dtype=np.float32)
    k = elbow_k(Z, k_max=k_max, random_state=random_state) if k is None else k
    return _clusters(Z, fit_clusters(Z, "kmeans", k, random_state)[0])


def _clusters(Z: np.ndarray, assignments: np.ndarray) -> LatentClusters:
    """Centres as member means (what k-means converges to) and each member's distance to its own."""
    from .cluster import centre_distances

    assignments = np.asarray(assignments, dtype=np.int64)
    centres = np.stack([Z[assignments == c].mean(axis=0) for c in range(assignments.max() + 1)])
    return LatentClusters(centres, assignments, centre_distances(Z, assignments))


def split_latent_cluster(clusters: LatentClusters, Z, cluster: int, random_state: int = 0) -> LatentClusters:
    """Top-down split: cluster ``cluster`` re-clustered with k=2 on its own members.

    The larger half keeps the number ``cluster``, the other becomes cluster ``k`` (the new
    last); every other cluster is unchanged.
    """
    from .cluster import fit_clusters

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
    median distance (:func:`pipeline.labels.cluster_confidences`, as for a labeled cluster).
    Centres without a decision (skipped, or fuzzy) leave their members unlabeled.
    """
    from .labels import cluster_confidences

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


# --- in a workspace: centres to name (phase 1) and the ``vae`` training mode (phase 2) -----
VAE_DEFAULTS = {
    "input": "features", "backbone": None, "weights": None, "image_size": 64,
    "latent_dim": 16, "hidden": 256, "beta": 1.0, "gamma": 1.0, "pretrain_epochs": 30, "epochs": 30,
    "batch_size": 64, "lr": 1e-3, "unlabeled_ratio": 0.5, "max_unlabeled": 5000, "validate": True,
    "init_model": None,
}
CENTRE_OPTIONS = ("input", "backbone", "weights", "image_size", "latent_dim", "hidden", "beta", "pretrain_epochs", "batch_size", "lr")


@dataclass(frozen=True)
class CentreRound:
    """Phase 1 in a workspace: the unsupervised VAE (a model), its latents, their clustering."""

    model_id: int
    feature_set: str
    latents: str
    clustering_id: int
    k: int
    images: int

    def to_dict(self) -> dict:
        return dict(vars(self))


def latent_set_name(model_id: int) -> str:
    return f"model-{model_id}"


def _vae_for(options: dict, backbone: str, weights: str | None, seed: int, device: str) -> LatentVAE:
    return LatentVAE(
        input=options["input"], backbone=backbone, backbone_weights=weights, latent_dim=options["latent_dim"],
        hidden=options["hidden"], beta=options["beta"], gamma=options["gamma"], pretrain_epochs=options["pretrain_epochs"],
        epochs=options["epochs"], batch_size=options["batch_size"], lr=options["lr"],
        unlabeled_ratio=options["unlabeled_ratio"], device=device, random_state=seed,
    )


def _input_backbone(workspace, feature_set: str, options: dict) -> tuple[str, str | None]:
    from .overcluster import image_backbone

    if options["input"] == "images":
        return image_backbone(workspace, feature_set, options)
    return options["backbone"] or "mlp", None


def _all_inputs(workspace, feature_set: str, image_ids, options: dict, backbone: str, progress: Progress | None) -> np.ndarray:
    from .overcluster import image_preprocess, load_image_array
    from .store import FeatureStore

    if options["input"] == "features":
        return FeatureStore(workspace).load(feature_set, image_ids)[1]
    return load_image_array(workspace, image_ids, image_preprocess(backbone, options["image_size"]), progress)


def vae_centres(
    workspace,
    feature_set: str | None = None,
    k: int | None = None,
    k_max: int = 12,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
    **params,
) -> CentreRound:
    """Phase 1: train the VAE without labels, store its latents, cluster them for the expert.

    The VAE is trained on every image ``feature_set`` covers (its vectors, or with
    ``input="images"`` their pixels) and saved as a model of mode ``vae`` without classes.
    Its latent means become the feature set ``model-<id>``, clustered by k-means with ``k``
    from the elbow (or ``k``). The expert names the clusters with ``label_cluster`` (a label
    and a confidence ``p_c``: members get ``p_c exp(-a d)``) or splits one in two
    (:func:`pipeline.cluster.split_cluster` on that clustering is the top-down split in
    latent space); :func:`decoded_centres` gives the pictures to show. Then
    ``train --mode vae`` continues this VAE with the classification term.
    """
    from .cluster import run_clustering, suggest_k
    from .overcluster import check_options
    from .store import FeatureStore
    from .train import Trained, TrainingData, default_feature_set, save_model

    options = check_options("vae", {name: VAE_DEFAULTS[name] for name in CENTRE_OPTIONS}, params)
    options = {**VAE_DEFAULTS, **options}
    store = FeatureStore(workspace)
    feature_set = store.resolve(feature_set) if feature_set else default_feature_set(workspace)
    image_ids = store.ids(feature_set)
    if len(image_ids) < 3:
        raise PipelineError(f"feature set '{feature_set}' covers {len(image_ids)} image(s); the VAE needs at least 3")
    backbone, weights = _input_backbone(workspace, feature_set, options)
    X = _all_inputs(workspace, feature_set, image_ids, options, backbone, progress)
    model = _vae_for(options, backbone, weights, seed, device).fit_unsupervised(X, progress=progress)
    metrics = {"history": [vars(h) for h in model.history_], "phase": "unsupervised", "images": len(image_ids)}
    options.update(backbone=backbone, weights=weights)
    empty = np.empty(0)
    record = save_model(
        workspace, "vae", Trained(model, feature_set, options, metrics), TrainingData(empty.astype(np.int64), empty, empty, empty),
        {**options, "seed": seed}, device, progress,
    )
    latents = latent_set_name(record.id)
    store.register(latents, "vae", latents, model.latent_dim, params={"model_id": record.id, "latent_of": feature_set})
    store.append(latents, image_ids, model.transform(X))
    if k is None:
        k = suggest_k(workspace, latents, ks=range(2, max(2, min(k_max, len(image_ids) - 1)) + 1), seed=seed).elbow_k
    clustering = run_clustering(workspace, latents, "kmeans", int(k), seed=seed)
    return CentreRound(record.id, feature_set, latents, clustering.id, clustering.k, len(image_ids))


@dataclass(frozen=True)
class CentrePicture:
    """One cluster of a VAE's latent clustering as the expert sees it.

    ``decoded``: the centre decoded, ``(3, H, W)`` in [0, 1] for an image VAE (show it),
    a feature vector for a feature VAE (show ``nearest_image_id`` instead).
    """

    cluster: int
    size: int
    nearest_image_id: int
    decoded: np.ndarray
    is_image: bool


def vae_model_of(workspace, feature_set: str):
    """The ``vae`` model whose latents are ``feature_set`` (``model-<id>``), and that model."""
    from .train import load_classifier, load_model_record

    record = None
    if feature_set.startswith("model-") and feature_set[len("model-"):].isdigit():
        record = load_model_record(workspace, int(feature_set[len("model-"):]))
    if record is None or record.mode != "vae":
        raise PipelineError(
            f"feature set '{feature_set}' is not the latent space of a VAE; cluster the latents of a "
            "'vae' model (made by 'python -m pipeline vae-centres')"
        )
    return record, load_classifier(workspace, record)


def decoded_centres(workspace, clustering_id: int) -> list[CentrePicture]:
    """The centres of a clustering made on a VAE's latents (also after splits and merges), decoded."""
    from .cluster import load_clustering
    from .store import FeatureStore

    clustering = load_clustering(workspace, clustering_id)
    _, model = vae_model_of(workspace, clustering.feature_set)
    _, Z = FeatureStore(workspace).load(clustering.feature_set, clustering.image_ids)
    pictures = centre_pictures(model, Z, clustering.clusters)
    return [
        CentrePicture(int(c), int((clustering.clusters == c).sum()), int(clustering.image_ids[row]), decoded, model.input == "images")
        for c, row, decoded in zip(pictures.clusters, pictures.nearest, pictures.decoded)
    ]


def store_latents(workspace, model_id: int, image_ids, device: str = "cpu", progress: Progress | None = None) -> int:
    """Add the latents of a phase-1 VAE for images its feature set ``model-<id>`` lacks (e.g. new ones).

    Their input features are computed first when missing. Returns the number of images added.
    """
    from .store import FeatureStore
    from .train import ensure_features

    latents = latent_set_name(model_id)
    record, model = vae_model_of(workspace, latents)
    todo = FeatureStore(workspace).missing(latents, image_ids)
    if len(todo) == 0:
        return 0
    if model.input == "features":
        ensure_features(workspace, record.feature_set, todo, device, progress)
    X = _all_inputs(workspace, record.feature_set, todo, record.params, model.backbone_, progress)
    return FeatureStore(workspace).append(latents, todo, model.transform(X))


def latent_clusterings(workspace) -> list[dict]:
    """The clusterings made on a phase-1 VAE's latents (also splits and merges of them), newest first."""
    from .cluster import list_clusterings

    rows = workspace.db.execute("SELECT id FROM models WHERE mode='vae' AND json_extract(metrics, '$.phase') = 'unsupervised'")
    latents = {latent_set_name(r[0]) for r in rows}
    return [c for c in list_clusterings(workspace) if c["feature_set"] in latents]


def latest_vae_model(workspace) -> int | None:
    """The newest phase-1 VAE (the one whose latent clusters the expert has been naming)."""
    row = workspace.db.execute(
        "SELECT MAX(id) FROM models WHERE mode='vae' AND json_extract(metrics, '$.phase') = 'unsupervised'"
    ).fetchone()
    return row[0]


def train_vae(workspace, data, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None):
    """Training mode ``vae`` (:data:`pipeline.train.MODES`): the classification term on the accepted labels.

    Continues the VAE of ``init_model`` (default: the newest ``vae`` model, whose latent
    clusters the expert named), on that model's input; without one, pretrains a new VAE on
    ``feature_set`` first. Validation: a quarter of the labeled subjects held out.
    """
    import copy

    from .overcluster import check_options, grouped_holdout, holdout_metrics, mode_inputs
    from .train import Trained, load_classifier, load_model_record

    options = check_options("vae", VAE_DEFAULTS, params)
    init_model = options["init_model"] if options["init_model"] is not None else latest_vae_model(workspace)
    model = None
    if init_model is not None:
        record = load_model_record(workspace, init_model)
        model = load_classifier(workspace, record)
        if record.mode != "vae" or not isinstance(model, LatentVAE):
            raise PipelineError(f"init_model {init_model} is not a VAE to continue; name a model made by 'vae-centres'")
        feature_set = record.feature_set
        options.update({name: record.params[name] for name in CENTRE_OPTIONS if name in record.params})
        model.set_params(gamma=options["gamma"], epochs=options["epochs"], unlabeled_ratio=options["unlabeled_ratio"])
        model.to_device(device)
    inputs = mode_inputs(workspace, data, feature_set, options, seed, device, progress)
    if model is None:
        backbone, weights = _input_backbone(workspace, feature_set, options)
        options.update(backbone=backbone, weights=weights)
        model = _vae_for(options, backbone, weights, seed, device).fit_unsupervised(inputs.X, progress=progress)
    metrics: dict = {"validation": None, "validation_note": "needs labels of at least 2 subjects and 2 classes"}
    holdout = grouped_holdout(inputs, seed) if options["validate"] else None
    if holdout is not None:
        train, test = holdout
        probe = copy.deepcopy(model).fit_labeled(inputs.X[train], inputs.labels[train], inputs.weights[train])
        metrics = holdout_metrics(probe, inputs, test, len(np.unique(inputs.subjects[test])))
    pretrained = len(model.history_)
    model.fit_labeled(inputs.X, inputs.labels, inputs.weights, progress=progress)
    metrics.update(
        history=[vars(h) for h in model.history_[pretrained:]], init_model=init_model,
        unlabeled_pool=len(inputs.image_ids) - inputs.n_labeled,
    )
    options["init_model"] = init_model
    if options["input"] == "features":
        return Trained(model, feature_set, options, metrics)
    return Trained(_latent_head(model), None, options, metrics, _encoder_network(model, options))


def _latent_head(model: LatentVAE):
    """The classifier on the latent mean, folded onto the encoder's trunk features (two linear maps)."""
    from .train import LinearSoftmax

    mu, head = model.net_.mu, model.net_.classifier
    weight = head.weight.detach().cpu().numpy() @ mu.weight.detach().cpu().numpy()
    bias = head.weight.detach().cpu().numpy() @ mu.bias.detach().cpu().numpy() + head.bias.detach().cpu().numpy()
    return LinearSoftmax(weight, bias, model.classes_)


def _encoder_network(model: LatentVAE, options: dict) -> dict:
    from .overcluster import trunk_network

    if not hasattr(model.net_.encoder, "trunk"):
        raise PipelineError(f"an image VAE in a workspace needs an ImageNet encoder (backbone=resnet18, ...), not '{model.backbone_}'")
    return trunk_network(model.net_.encoder, model.backbone_, model.backbone_weights or "random", options["image_size"])
