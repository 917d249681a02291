"""models.torch_loop"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from sklearn.base import BaseEstimator

from serieslabeler.embed.backbones import BACKBONES, load_backbone
from serieslabeler.embed.local import load_image, resolve_device
from serieslabeler.errors import PipelineError
from serieslabeler.progress import Progress

INPUTS = ("features", "images")


# --- shared torch building blocks --------------------------------------------------------
def torch_generator(rng: np.random.Generator, device="cpu"):
    """A local ``torch.Generator`` on ``device``, seeded from ``rng``.

    Seeded from the estimator's numpy generator rather than with ``random_state`` itself: the
    network's initialisation starts from ``random_state`` (:func:`serieslabeler.embed.backbones.seeded_init`),
    and the same seed here would give the augmentations the very numbers the weights were drawn from.
    """
    import torch

    return torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))


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
    """``mlp`` (feature vectors), ``conv`` (tiny images) and the ImageNet CNNs of :mod:`serieslabeler.embed.backbones`."""

    return ("mlp", "conv", *BACKBONES)


def build_backbone(kind: str, input_shape: tuple[int, ...], hidden: int = 256, weights: str | None = None):
    """``(module, out_dim)``: the shared trunk that maps one input to a vector.

    ``mlp`` reads feature vectors; ``conv`` is a small CNN for tiny images (8x8 to 64x64);
    an ImageNet CNN name (``resnet18``, ``efficientnet_lite0``, ...) reads RGB images in
    [0, 1], normalizes them as that network expects, and loads ``weights`` as
    :func:`serieslabeler.embed.backbones.resolve_weights` takes them (``random`` when None). Such a
    trunk is kept as ``module.trunk``, whose state dict is the fine-tune format of
    :mod:`serieslabeler.models.predictions`, so the model's own features can be computed like a fine-tuned one's.
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
    """Two views of a feature vector: dropout of random dimensions plus Gaussian noise.

    Draws from ``generator`` (a ``torch.Generator`` on the inputs' device; torch's global one when None).
    """

    def __init__(self, noise: float = 0.1, dropout: float = 0.2, generator=None):
        self.noise = noise
        self.dropout = dropout
        self.generator = generator

    def __call__(self, x):
        import torch

        draw = {"generator": self.generator, "device": x.device, "dtype": x.dtype}
        keep = (torch.rand(x.shape, **draw) >= self.dropout).to(x.dtype) / (1 - self.dropout)
        return x * keep + self.noise * torch.randn(x.shape, **draw)


class ImageAugment:
    """Two views of an image batch: random resized crop, horizontal flip, colour jitter.

    Done on whole batches with one affine sampling grid (no per-image Python loop), so it
    costs next to nothing on a GPU. Crops keep ``scale`` of the area with an aspect ratio
    in ``ratio``; jitter scales brightness, contrast (and saturation for RGB) by
    factors in ``[1 - jitter, 1 + jitter]``.
    """

    def __init__(self, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True, jitter: float = 0.3, generator=None):
        self.scale = scale
        self.ratio = ratio
        self.flip = flip
        self.jitter = jitter
        self.generator = generator

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        n = len(x)

        def uniform(low, high):
            return torch.empty(n, device=x.device).uniform_(low, high, generator=self.generator)

        area, ratio = uniform(*self.scale), uniform(*np.log(self.ratio)).exp()
        sx, sy = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
        tx, ty = (1 - sx) * uniform(-1, 1), (1 - sy) * uniform(-1, 1)
        if self.flip:
            sx = torch.where(torch.rand(n, device=x.device, generator=self.generator) < 0.5, -sx, sx)
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


def make_augment(input: str, noise: float, dropout: float, flip: bool, generator=None):
    return FeatureAugment(noise, dropout, generator) if input == "features" else ImageAugment(flip=flip, generator=generator)


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
    the same pixels :mod:`serieslabeler.embed.local` feeds a network, so a model trained on them
    computes its features later exactly as it saw them in training.
    """

    paths = workspace.image_paths(image_ids)
    out = np.empty((len(paths), 3, preprocess.crop, preprocess.crop), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = load_image(path, preprocess) / 255.0
        if progress:
            progress(i + 1, len(paths))
    return out


class TorchEstimator(BaseEstimator):
    """A scikit-learn estimator holding a fitted torch network in ``net_``.

    Parameters and ``get_params``/``set_params``/``clone`` are scikit-learn's. For pickling, the
    network is stored as its state dict and rebuilt by ``_build_net(pretrained=False)``
    on load, so a saved model needs no class defined at module level and loads on the GPU
    when one is there (on the CPU otherwise, or when ``device="cpu"`` was asked for).
    """

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself, not a copy
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

    def to_device(self, device: str) -> "TorchEstimator":
        """Move the fitted network to ``device`` (``cpu``, ``cuda`` or ``auto``)."""
        self.device = device
        self.device_ = resolve_device(device)
        self.net_.to(self.device_)
        return self


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of numpy logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
