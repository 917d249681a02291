"""models.features"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from serieslabeler.embed.backbones import BACKBONES, backbone_spec, finetune_preprocess
from serieslabeler.embed.distributed import embed_ids_with_ray, embed_with_ray
from serieslabeler.embed.local import (
    ShardWriter,
    embed_images,
    embed_workspace,
    resolve_device,
)
from serieslabeler.errors import PipelineError
from serieslabeler.models.configs import VAEConfig
from serieslabeler.models.files import (
    load_classifier,
    load_model_record,
    network_loader,
    network_path,
)
from serieslabeler.models.torch_loop import load_image_array
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace


def image_backbone(workspace, feature_set: str, options) -> tuple[str, str]:
    """The ImageNet CNN (and weights) an image-input mode trains: the options', else the feature set's.

    ``options``: a mode config with ``backbone`` and ``weights`` (:mod:`serieslabeler.models.configs`).
    """

    if options.backbone:
        return options.backbone, options.weights or "random"
    info = FeatureStore(workspace).info(feature_set)
    if info.backbone in BACKBONES:
        return info.backbone, options.weights or info.weights
    return "resnet18", options.weights or "random"


def image_preprocess(backbone: str, image_size: int):
    """The resize and centre crop :func:`serieslabeler.models.predictions.load_network` uses for a network at ``image_size``."""

    return finetune_preprocess(backbone_spec(backbone), image_size, square=False)


def ensure_features(
    workspace: Workspace,
    feature_set: str,
    image_ids,
    device: str = "cpu",
    progress: Progress | None = None,
    engine: str = "local",
    address: str | None = None,
) -> None:
    """Compute the vectors of ``feature_set`` that ``image_ids`` still lack (never recomputes).

    ``model-<id>``: a trained network's features, or a phase-1 VAE's latent means (it has no network file).
    ``engine="ray"`` runs the network on Ray Data (a local Ray, or the cluster at ``address``).
    """
    store = FeatureStore(workspace)
    missing = store.missing(feature_set, image_ids)
    if len(missing) == 0:
        return
    if feature_set.startswith("model-"):
        model_id = int(feature_set.split("-", 1)[1])
        if not network_path(workspace, model_id).is_file() and load_model_record(workspace, model_id).mode == "vae":

            store_latents(workspace, model_id, missing, device, progress)  # a phase-1 VAE's latents, not a network's
        else:
            embed_with_model(workspace, model_id, missing, device, progress, engine, address)
        return

    info = store.info(feature_set)
    try:
        if engine == "ray":

            embed_with_ray(workspace, info.backbone, info.weights, device=device, image_ids=missing, address=address, progress=progress)
        else:
            embed_workspace(workspace, info.backbone, info.weights, device=device, image_ids=missing, progress=progress)
    except PipelineError as error:
        raise PipelineError(
            f"feature set '{feature_set}' lacks vectors for {len(missing)} image(s) and they cannot be computed "
            f"here ({error}); run 'serieslabeler embed' for them first"
        ) from None


def embed_with_model(
    workspace: Workspace,
    model_id: int,
    image_ids,
    device: str = "cpu",
    progress: Progress | None = None,
    engine: str = "local",
    address: str | None = None,
) -> int:
    """Store a fine-tuned model's penultimate features (feature set ``model-<id>``) for ``image_ids``."""

    loader = network_loader(workspace, model_id)
    network = loader()
    name = f"model-{model_id}"
    store = FeatureStore(workspace)
    store.register(name, network.name, name, network.spec.dim, params={"model_id": model_id, "preprocess": asdict(network.spec.preprocess)})
    todo = store.missing(name, image_ids)
    if engine == "ray":

        return embed_ids_with_ray(workspace, name, loader, network.spec.preprocess, todo, device, address=address, progress=progress)[0]
    done = 0
    with ShardWriter(store, name, network.spec.dim, "float32") as writer:
        for ids, vectors in embed_images(network, todo, workspace.image_paths(todo), resolve_device(device), num_workers=0):
            writer.add(ids, vectors)
            done += len(ids)
            if progress:
                progress(done, len(todo))
    return done


def latent_set_name(model_id: int) -> str:
    return f"model-{model_id}"


def _input_backbone(workspace, feature_set: str, options) -> tuple[str, str | None]:

    if options.input == "images":
        return image_backbone(workspace, feature_set, options)
    return options.backbone or "mlp", None


def _all_inputs(workspace, feature_set: str, image_ids, options, backbone: str, progress: Progress | None) -> np.ndarray:

    if options.input == "features":
        return FeatureStore(workspace).load(feature_set, image_ids)[1]
    return load_image_array(workspace, image_ids, image_preprocess(backbone, options.image_size), progress)


def vae_model_of(workspace, feature_set: str):
    """The ``vae`` model whose latents are ``feature_set`` (``model-<id>``), and that model."""

    record = None
    if feature_set.startswith("model-") and feature_set[len("model-"):].isdigit():
        record = load_model_record(workspace, int(feature_set[len("model-"):]))
    if record is None or record.mode != "vae":
        raise PipelineError(
            f"feature set '{feature_set}' is not the latent space of a VAE; cluster the latents of a "
            "'vae' model (made by 'serieslabeler vae-centres')"
        )
    return record, load_classifier(workspace, record)


def store_latents(workspace, model_id: int, image_ids, device: str = "cpu", progress: Progress | None = None) -> int:
    """Add the latents of a phase-1 VAE for images its feature set ``model-<id>`` lacks (e.g. new ones).

    Their input features are computed first when missing. Returns the number of images added.
    """

    latents = latent_set_name(model_id)
    record, model = vae_model_of(workspace, latents)
    todo = FeatureStore(workspace).missing(latents, image_ids)
    if len(todo) == 0:
        return 0
    if model.input == "features":
        ensure_features(workspace, record.feature_set, todo, device, progress)
    X = _all_inputs(workspace, record.feature_set, todo, VAEConfig.from_record(record.params), model.backbone_, progress)
    return FeatureStore(workspace).append(latents, todo, model.transform(X))
