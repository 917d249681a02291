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
CPU) or images (a small CNN for tiny ones, or an ImageNet CNN of :mod:`pipeline.backbones`
such as ResNet-18 at low resolution). The torch building blocks here (backbones,
augmentations, label encoding, batch iteration, image loading, pickling) are shared with
:mod:`pipeline.vae`.

In a workspace, :func:`train_overcluster` is the training mode ``overcluster`` of
:data:`pipeline.train.MODES` (``python -m pipeline train --mode overcluster``).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .embed import resolve_device
from .errors import PipelineError
from .progress import Progress

INPUTS = ("features", "images")


# --- the two losses ----------------------------------------------------------------------
def mutual_information(p1, p2, eps: float = 1e-12):
    """IIC mutual information between two batches of class distributions (torch tensors).

    ``p1[n]`` and ``p2[n]`` are the softmax outputs for two views of image ``n``. The joint
    distribution is the batch mean of their outer products, symmetrized; the result is
    ``I = sum P log(P / (P_c P_c'))``: ``log k`` for a balanced one-to-one joint, 0 when
    the two outputs are independent.
    """
    import torch

    joint = p1.transpose(0, 1) @ p2 / p1.shape[0]
    joint = (joint + joint.transpose(0, 1)) / 2
    joint = joint.clamp_min(eps)
    rows = joint.sum(dim=1, keepdim=True)
    cols = joint.sum(dim=0, keepdim=True)
    return torch.sum(joint * (joint.log() - rows.log() - cols.log()))


def inverse_cross_entropy(p, q, eps: float = 1e-7):
    """``CE^-1(p, q) = -sum_c p(c) ln(1 - q(c))`` over the last axis (torch tensors).

    Zero when ``p`` and ``q`` have disjoint support; large when both put their mass on the
    same cluster. Broadcasts, so ``p[:, None]`` against ``q[None]`` gives every pair.
    """
    return -(p * (1 - q).clamp_min(eps).log()).sum(dim=-1)


# --- shared torch building blocks --------------------------------------------------------
def seed_everything(random_state: int | None) -> np.random.Generator:
    import torch

    if random_state is not None:
        torch.manual_seed(random_state)
    return np.random.default_rng(random_state)


def encode_labels(y, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, codes)``: sorted class names and one code per image, -1 where unlabeled.

    ``y`` is None (nothing labeled) or one entry per image; None, NaN, "" and -1 mean
    unlabeled (scikit-learn's semi-supervised convention is -1).
    """
    if y is None:
        return np.array([], dtype=object), np.full(n, -1, dtype=np.int64)
    y = np.asarray(y, dtype=object)
    if len(y) != n:
        raise PipelineError(f"got {len(y)} labels for {n} images; give one per image (None where unlabeled)")
    labeled = np.array([not _is_unlabeled(v) for v in y], dtype=bool)
    classes = np.array(sorted({v for v in y[labeled]}, key=str), dtype=object)
    codes = np.full(n, -1, dtype=np.int64)
    if labeled.any():
        index = {c: i for i, c in enumerate(classes)}
        codes[labeled] = [index[v] for v in y[labeled]]
    return classes, codes


def _is_unlabeled(value) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return True
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) == -1
    return isinstance(value, (float, np.floating)) and (math.isnan(value) or value == -1)


def check_input(X, input: str, minimum: int = 1) -> np.ndarray:
    """``X`` as float32: ``(n, d)`` features, or ``(n, C, H, W)`` images with values in [0, 1]."""
    if input not in INPUTS:
        raise PipelineError(f"input must be one of {INPUTS}, not '{input}'")
    X = np.asarray(X, dtype=np.float32)
    want = 2 if input == "features" else 4
    if X.ndim != want:
        shape = "(n, d)" if input == "features" else "(n, channels, height, width)"
        raise PipelineError(f"{input} input must have shape {shape}, got {X.shape}")
    if len(X) < minimum:
        raise PipelineError(f"need at least {minimum} images, got {len(X)}")
    return X


class Standardizer:
    """Feature-wise z-scores (features input) or the identity (images input)."""

    def __init__(self, input: str):
        self.input = input
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> "Standardizer":
        if self.input == "features":
            self.mean_ = X.mean(axis=0)
            self.scale_ = np.where(X.std(axis=0) > 1e-6, X.std(axis=0), 1.0).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return X if self.mean_ is None else ((X - self.mean_) / self.scale_).astype(np.float32)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        return X if self.mean_ is None else (X * self.scale_ + self.mean_).astype(np.float32)


def backbone_kinds() -> tuple[str, ...]:
    """``mlp`` (feature vectors), ``conv`` (tiny images) and the ImageNet CNNs of :mod:`pipeline.backbones`."""
    from .backbones import BACKBONES

    return ("mlp", "conv", *BACKBONES)


def build_backbone(kind: str, input_shape: tuple[int, ...], hidden: int = 256, weights: str | None = None):
    """``(module, out_dim)``: the shared trunk that maps one input to a vector.

    ``mlp`` reads feature vectors; ``conv`` is a small CNN for tiny images (8x8 to 64x64);
    an ImageNet CNN name (``resnet18``, ``efficientnet_lite0``, ...) reads RGB images in
    [0, 1], normalizes them as that network expects, and loads ``weights`` as
    :func:`pipeline.backbones.resolve_weights` takes them (``random`` when None). Such a
    trunk is kept as ``module.trunk``, whose state dict is the fine-tune format of
    :mod:`pipeline.train`, so the model's own features can be computed like a fine-tuned one's.
    """
    from torch import nn

    if kind not in backbone_kinds():
        raise PipelineError(f"unknown backbone '{kind}'; choose one of {', '.join(backbone_kinds())}")
    if kind == "mlp":
        if len(input_shape) != 1:
            raise PipelineError("the mlp backbone reads feature vectors; use 'conv' or an ImageNet CNN for images")
        module = nn.Sequential(
            nn.Linear(input_shape[0], hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        )
        return module, hidden
    if len(input_shape) != 3:
        raise PipelineError(f"the {kind} backbone reads images (channels, height, width), got shape {input_shape}")
    if kind == "conv":
        module = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        return module, 128
    if input_shape[0] != 3:
        raise PipelineError(f"the {kind} backbone reads RGB images (3 channels), got {input_shape[0]}")
    return _imagenet_trunk(kind, weights)


def _imagenet_trunk(kind: str, weights: str | None):
    import torch
    from torch import nn

    from .backbones import load_backbone

    backbone = load_backbone(kind, weights or "random")
    preprocess = backbone.spec.preprocess

    class NormalizedTrunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = backbone.module.train()
            self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(preprocess.std).view(1, 3, 1, 1))

        def forward(self, x):
            return self.trunk((x - self.mean) / self.std)

    return NormalizedTrunk(), backbone.spec.dim


class FeatureAugment:
    """Two views of a feature vector: dropout of random dimensions plus Gaussian noise."""

    def __init__(self, noise: float = 0.1, dropout: float = 0.2):
        self.noise = noise
        self.dropout = dropout

    def __call__(self, x):
        import torch

        keep = (torch.rand_like(x) >= self.dropout).to(x.dtype) / (1 - self.dropout)
        return x * keep + self.noise * torch.randn_like(x)


class ImageAugment:
    """Two views of an image batch: random resized crop, horizontal flip, colour jitter.

    Done on whole batches with one affine sampling grid (no per-image Python loop), so it
    costs next to nothing on a GPU. Crops keep ``scale`` of the area with an aspect ratio
    in ``ratio``; jitter scales brightness, contrast (and saturation for RGB) by
    factors in ``[1 - jitter, 1 + jitter]``.
    """

    def __init__(self, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True, jitter: float = 0.3):
        self.scale = scale
        self.ratio = ratio
        self.flip = flip
        self.jitter = jitter

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        n = len(x)

        def uniform(low, high):
            return torch.empty(n, device=x.device).uniform_(low, high)

        area, ratio = uniform(*self.scale), uniform(*np.log(self.ratio)).exp()
        sx, sy = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
        tx, ty = (1 - sx) * uniform(-1, 1), (1 - sy) * uniform(-1, 1)
        if self.flip:
            sx = torch.where(torch.rand(n, device=x.device) < 0.5, -sx, sx)
        zero = torch.zeros(n, device=x.device)
        theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.jitter:
            def factor():
                return uniform(1 - self.jitter, 1 + self.jitter).view(n, 1, 1, 1)

            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = ((out - mean) * factor() + mean) * factor()
            if x.shape[1] == 3:
                gray = out.mean(dim=1, keepdim=True)
                out = gray + (out - gray) * factor()
        return out.clamp(0, 1)


def make_augment(input: str, noise: float, dropout: float, flip: bool):
    return FeatureAugment(noise, dropout) if input == "features" else ImageAugment(flip=flip)


def semi_supervised_batches(
    codes: np.ndarray, batch_size: int, unlabeled_ratio: float, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """One epoch of index batches, each a share ``unlabeled_ratio`` of unlabeled images.

    Each batch holds ``round(batch_size * (1 - r))`` labeled images and the rest unlabeled
    ones; the epoch ends when the larger of the two sets has been seen once, the smaller one
    being cycled (reshuffled at each pass). A few labels are thus repeated against a larger
    pool, and the unlabeled share of every step, hence its cost, is bounded by ``r``. Without
    labels (or without unlabeled images) an epoch is one pass over everything.
    """
    if not 0 <= unlabeled_ratio < 1:
        raise PipelineError(f"unlabeled ratio must be in [0, 1), got {unlabeled_ratio}")
    labeled = np.flatnonzero(codes >= 0)
    unlabeled = np.flatnonzero(codes < 0)
    per_labeled = max(1, round(batch_size * (1 - unlabeled_ratio)))
    per_unlabeled = batch_size - per_labeled
    if len(labeled) == 0 or len(unlabeled) == 0 or per_unlabeled == 0:
        order = rng.permutation(labeled if len(labeled) and per_unlabeled == 0 else len(codes))
        yield from (order[s : s + batch_size] for s in range(0, len(order), batch_size))
        return
    steps = max(-(-len(labeled) // per_labeled), -(-len(unlabeled) // per_unlabeled))
    labeled_stream = _cycled(labeled, steps * per_labeled, rng)
    unlabeled_stream = _cycled(unlabeled, steps * per_unlabeled, rng)
    for step in range(steps):
        yield np.concatenate([
            labeled_stream[step * per_labeled : (step + 1) * per_labeled],
            unlabeled_stream[step * per_unlabeled : (step + 1) * per_unlabeled],
        ])


def _cycled(indices: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` entries of ``indices``: whole shuffled passes, one after another."""
    passes = -(-length // len(indices))
    return np.concatenate([rng.permutation(indices) for _ in range(passes)])[:length]


def run_batches(forward, X, batch_size: int, device) -> list:
    """Apply ``forward`` to ``X`` (numpy) in eval-mode batches; a list of numpy outputs per batch."""
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            result = forward(torch.from_numpy(X[start : start + batch_size]).to(device))
            outputs.append(tuple(r.cpu().numpy() for r in result) if isinstance(result, tuple) else result.cpu().numpy())
    return outputs


def load_image_array(workspace, image_ids, preprocess, progress: Progress | None = None) -> np.ndarray:
    """Images of a workspace as ``(n, 3, crop, crop)`` float32 in [0, 1].

    Decoded from the stored originals with ``preprocess`` (shorter side resized, centre crop),
    the same pixels :mod:`pipeline.embed` feeds a network, so a model trained on them
    computes its features later exactly as it saw them in training.
    """
    from .embed import load_image

    paths = workspace.image_paths(image_ids)
    out = np.empty((len(paths), 3, preprocess.crop, preprocess.crop), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = load_image(path, preprocess) / 255.0
        if progress:
            progress(i + 1, len(paths))
    return out


class TorchEstimator:
    """Pickling for estimators holding a fitted torch network in ``net_``.

    The network is stored as its state dict and rebuilt by ``_build_net(pretrained=False)``
    on load, so a saved model needs no class defined at module level and loads on the GPU
    when one is there (on the CPU otherwise, or when ``device="cpu"`` was asked for).
    """

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("device_", None)
        net = state.pop("net_", None)
        if net is not None:
            state["net_state_"] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        net_state = state.pop("net_state_", None)
        self.__dict__.update(state)
        if net_state is not None:
            self.device_ = resolve_device("cpu" if self.device == "cpu" else "auto")
            self.net_ = self._build_net(pretrained=False)
            try:
                self.net_.load_state_dict(net_state)
            except RuntimeError:
                raise PipelineError(
                    f"a saved {type(self).__name__} does not fit this version's network; train the model again"
                ) from None
            self.net_.to(self.device_).eval()

    def _build_net(self, pretrained: bool = True):
        raise NotImplementedError

    def set_params(self, **params) -> "TorchEstimator":
        """Change configuration (scikit-learn style), e.g. before continuing training."""
        import inspect

        known = set(inspect.signature(type(self).__init__).parameters) - {"self"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise PipelineError(f"{type(self).__name__} has no parameter(s) {', '.join(unknown)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def to_device(self, device: str) -> "TorchEstimator":
        """Move the fitted network to ``device`` (``cpu``, ``cuda`` or ``auto``)."""
        self.device = device
        self.device_ = resolve_device(device)
        self.net_.to(self.device_)
        return self


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


class FuzzyOvercluster(TorchEstimator):
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
        import torch

        X = check_input(X, self.input, minimum=2)
        self.classes_, codes = encode_labels(y, len(X))
        if len(self.classes_) < 2:
            raise PipelineError(
                f"overcluster training needs labeled images of at least 2 classes, got {len(self.classes_)}; "
                "label some clusters first"
            )
        weights = np.ones(len(X), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        rng = seed_everything(self.random_state)
        self.device_ = resolve_device(self.device)
        self.input_shape_ = tuple(X.shape[1:])
        self.n_overclusters_ = self.n_overclusters or self.overcluster_factor * len(self.classes_)
        self.backbone_ = self.backbone or ("mlp" if self.input == "features" else "conv")
        self.scaler_ = Standardizer(self.input).fit(X)
        self.net_ = self._build_net().to(self.device_)
        augment = make_augment(self.input, self.noise, self.dropout, self.flip)
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
        self.net_.eval()
        return self

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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of numpy logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


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
OVERCLUSTER_DEFAULTS = {
    "input": "features", "backbone": None, "weights": None, "image_size": 64,
    "n_overclusters": None, "overcluster_factor": 5, "unlabeled_ratio": 0.5, "max_unlabeled": 5000,
    "epochs": 40, "batch_size": 64, "lr": 1e-3, "hidden": 256, "mi_weight": 1.0, "inverse_weight": 1.0,
    "validate": True,
}


def check_options(mode: str, defaults: dict, params: dict) -> dict:
    """``params`` over ``defaults``, each value converted to its default's type.

    Values may come from the command line as strings or floats (``epochs=10.0``); options
    without a typed default (None) become whole numbers, numbers or stay strings.
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise PipelineError(f"mode '{mode}' does not take option(s) {', '.join(unknown)}; it takes {', '.join(defaults)}")
    options = {}
    for name, default in defaults.items():
        value = params.get(name, default)
        try:
            options[name] = _coerce(default, value)
        except ValueError:
            raise PipelineError(f"mode '{mode}': option {name}={value!r} is not a {type(default).__name__}") from None
    return options


def _coerce(default, value):
    if value is None or isinstance(default, str):
        return value if value is None else str(value)
    if isinstance(default, bool):
        return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
    if isinstance(default, int):
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if isinstance(default, float):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number


@dataclass(frozen=True)
class ModeInputs:
    """What a training mode feeds its network: the labeled images first, then an unlabeled pool."""

    image_ids: np.ndarray
    X: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    subjects: np.ndarray
    n_labeled: int


def image_backbone(workspace, feature_set: str, options: dict) -> tuple[str, str]:
    """The ImageNet CNN (and weights) an image-input mode trains: the options', else the feature set's."""
    from .backbones import BACKBONES
    from .store import FeatureStore

    if options["backbone"]:
        return options["backbone"], options["weights"] or "random"
    info = FeatureStore(workspace).info(feature_set)
    if info.backbone in BACKBONES:
        return info.backbone, options["weights"] or info.weights
    return "resnet18", options["weights"] or "random"


def image_preprocess(backbone: str, image_size: int):
    """The resize and centre crop :func:`pipeline.train.load_network` uses for a network at ``image_size``."""
    from .backbones import backbone_spec
    from .train import finetune_preprocess

    return finetune_preprocess(backbone_spec(backbone), image_size, square=False)


def mode_inputs(workspace, data, feature_set: str, options: dict, seed: int, device: str, progress: Progress | None) -> ModeInputs:
    """The labeled images plus up to ``max_unlabeled`` random unlabeled ones of ``feature_set``.

    ``input="features"``: their vectors; ``input="images"``: their pixels in [0, 1] at
    ``image_size``. Pool images are those the feature set covers, so the model's clusters
    can be saved in that set's space.
    """
    from .store import FeatureStore
    from .train import ensure_features, image_subjects

    ensure_features(workspace, feature_set, data.image_ids, device, progress)
    store = FeatureStore(workspace)
    pool = np.setdiff1d(store.ids(feature_set), data.image_ids)
    if len(pool) > options["max_unlabeled"]:
        pool = np.sort(np.random.default_rng(seed).choice(pool, options["max_unlabeled"], replace=False))
    ids = np.concatenate([np.asarray(data.image_ids, dtype=np.int64), pool])
    if options["input"] == "features":
        X = store.load(feature_set, ids)[1]
    elif options["input"] == "images":
        backbone, _ = image_backbone(workspace, feature_set, options)
        X = load_image_array(workspace, ids, image_preprocess(backbone, options["image_size"]), progress)
    else:
        raise PipelineError(f"option input must be one of {', '.join(INPUTS)}, not '{options['input']}'")
    labels = np.concatenate([np.asarray(data.labels, dtype=object), np.full(len(pool), None, dtype=object)])
    weights = np.concatenate([np.asarray(data.weights, dtype=np.float32), np.zeros(len(pool), np.float32)])
    subjects = np.concatenate([np.asarray(data.subjects), image_subjects(workspace, pool)]) if len(pool) else np.asarray(data.subjects)
    return ModeInputs(ids, X, labels, weights, subjects, len(data.image_ids))


def grouped_holdout(inputs: ModeInputs, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(train_rows, test_rows)``: a quarter of the labeled subjects held out, none of their images trained on.

    None when the labels cover fewer than 2 subjects or 2 classes.
    """
    from .splits import grouped_split

    labeled = np.arange(inputs.n_labeled)
    if len(np.unique(inputs.subjects[labeled])) < 2 or len(set(inputs.labels[labeled])) < 2:
        return None
    split = grouped_split(inputs.subjects[labeled], 0.25, seed)
    held_out = np.isin(inputs.subjects, inputs.subjects[split.test])
    train = np.flatnonzero(~held_out)
    if len(set(inputs.labels[train[train < inputs.n_labeled]])) < 2:
        return None
    return train, split.test


def holdout_metrics(classifier, inputs: ModeInputs, test: np.ndarray, held_out_subjects: int) -> dict:
    """Scores of a classifier trained without the held-out subjects, on their labeled images."""
    from .metrics.classification import classification_report

    classes = np.asarray(classifier.classes_)
    proba = classifier.predict_proba(inputs.X[test])
    truth = inputs.labels[test].astype(str)
    report = classification_report(truth, classes[proba.argmax(axis=1)].astype(str), None, proba, classes.astype(str))
    return {
        "validation": report.to_dict(),
        "validation_split": (
            f"GroupShuffleSplit by subject: {len(test)} labeled images of {held_out_subjects} held-out subjects, "
            "none of their images (labeled or not) used in training"
        ),
    }


def train_overcluster(workspace, data, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None):
    """Training mode ``overcluster`` (:data:`pipeline.train.MODES`): FOC on the accepted labels.

    Its overclusters over the labeled images and the unlabeled pool are saved as a
    clustering (algorithm ``overcluster``) in ``feature_set``'s space, so the labeling page
    offers them, split and merge them like any other; the id is in the model's metrics.
    """
    from .train import LinearSoftmax, Trained

    options = check_options("overcluster", OVERCLUSTER_DEFAULTS, params)
    inputs = mode_inputs(workspace, data, feature_set, options, seed, device, progress)
    backbone, weights = (options["backbone"] or "mlp", None)
    if options["input"] == "images":
        backbone, weights = image_backbone(workspace, feature_set, options)

    def make() -> FuzzyOvercluster:
        return FuzzyOvercluster(
            n_overclusters=options["n_overclusters"], overcluster_factor=options["overcluster_factor"],
            unlabeled_ratio=options["unlabeled_ratio"], input=options["input"], backbone=backbone,
            backbone_weights=weights, hidden=options["hidden"], epochs=options["epochs"],
            batch_size=options["batch_size"], lr=options["lr"], mi_weight=options["mi_weight"],
            inverse_weight=options["inverse_weight"], device=device, random_state=seed,
        )

    metrics: dict = {"validation": None, "validation_note": "needs labels of at least 2 subjects and 2 classes"}
    holdout = grouped_holdout(inputs, seed) if options["validate"] else None
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
    options.update(backbone=backbone, weights=weights)
    if options["input"] == "features":
        return Trained(model, feature_set, options, metrics)
    head = model.net_.classes
    classifier = LinearSoftmax(head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy(), model.classes_)
    return Trained(classifier, None, options, metrics, trunk_network(model.net_.backbone, backbone, weights, options["image_size"]))


def trunk_network(module, backbone: str, weights: str, image_size: int) -> dict:
    """An ImageNet trunk in the fine-tune format of :func:`pipeline.train.save_model`."""
    from .backbones import resolve_weights

    return {
        "backbone": backbone,
        "weights": resolve_weights(backbone, weights).identity,
        "image_size": image_size,
        "state_dict": {k: v.detach().cpu() for k, v in module.trunk.state_dict().items()},
    }


def save_overclustering(workspace, feature_set: str, image_ids, clusters, confidence, seed: int = 0):
    """Save overclusters as a clustering (``cluster_members.distance`` as for any clustering).

    The distance is each image's distance to its overcluster's mean in the feature set's
    space, so ordering by atypicality, confidence weights ``p_c exp(-a d)``, splits and
    merges work as for k-means clusters. Clusters are numbered by size;
    ``params["head_outputs"][c]`` is the head output that cluster ``c`` came from.
    """
    from .cluster import Clustering, build_space, centre_distances, number_by_size, save_clustering, space_options

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
    from .cluster import load_clustering

    clustering = load_clustering(workspace, clustering_id)
    if truth == "labels":
        sql = "SELECT image_id, label FROM current_labels WHERE status='accepted' AND image_id IN ({})"
    elif truth == "ground_truth":
        sql = "SELECT image_id, label FROM ground_truth WHERE image_id IN ({})"
    else:
        raise PipelineError(f"truth must be 'labels' or 'ground_truth', not '{truth}'")
    known = {r[0]: r[1] for r in workspace.query_in(sql, clustering.image_ids)}
    return consistency(clustering.clusters, [known.get(int(i)) for i in clustering.image_ids])
