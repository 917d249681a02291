"""Batched inference: every image of a workspace becomes a feature vector once, and never again.

Images are decoded, resized and center-cropped to ``uint8`` tensors in DataLoader worker
processes while the main process runs the network, so decoding overlaps the forward pass.
Normalization happens on the device, on whole batches (a ``uint8`` batch is a quarter of the
bytes of a float one to move). On CUDA the forward runs under bf16 autocast, channels-last,
from pinned memory. Vectors are streamed to the feature store in shards of ``shard_size``
rows, so memory stays bounded however many images there are, and an interrupted run keeps
every finished shard: the next run embeds only what is still missing.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from serieslabeler.embed.backbones import (
    Backbone,
    Preprocess,
    WeightsChoice,
    backbone_spec,
    load_backbone,
    resolve_weights,
)
from serieslabeler.errors import PipelineError
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace

SHARD_SIZE = 4096


DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class EmbedReport:
    """What one ``embed`` run did."""

    feature_set: str
    computed: int
    cached: int
    seconds: float
    images_per_second: float
    device: str = "cpu"
    batch_size: int = 0
    num_workers: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def embed_workspace(
    workspace: Workspace,
    backbone: str,
    weights: str = "default",
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int | None = None,
    image_ids=None,
    dtype: str = "float32",
    progress: Progress | None = None,
    shard_size: int = SHARD_SIZE,
) -> EmbedReport:
    """Embed the images (all, or ``image_ids``) that the feature set does not hold yet."""
    start = time.perf_counter()
    plan = plan_embedding(workspace, backbone, weights, image_ids, batch_size)
    device = resolve_device(device)
    store = FeatureStore(workspace)
    choice, todo = plan.choice, plan.todo
    workers = default_workers(device) if num_workers is None else num_workers
    if len(todo) == 0 and choice.feature_set in store.names():
        return EmbedReport(choice.feature_set, 0, plan.cached, time.perf_counter() - start, 0.0, device, batch_size, workers)
    model = load_backbone(backbone, choice)
    register_feature_set(store, choice, dtype)
    paths = workspace.image_paths(todo)
    computed = 0
    with ShardWriter(store, choice.feature_set, model.spec.dim, dtype, shard_size) as writer:
        for ids, vectors in embed_images(model, todo, paths, device, batch_size, workers):
            writer.add(ids, vectors)
            computed += len(ids)
            if progress:
                progress(computed, len(todo))
    seconds = time.perf_counter() - start
    return EmbedReport(choice.feature_set, computed, plan.cached, seconds, computed / seconds, device, batch_size, workers)


@dataclass(frozen=True)
class EmbedPlan:
    """Which weights a run uses, and which of the wanted images still need a vector."""

    choice: WeightsChoice
    todo: np.ndarray
    cached: int


def plan_embedding(workspace: Workspace, backbone: str, weights: str = "default", image_ids=None, batch_size: int = 32) -> EmbedPlan:
    """Resolve the weights (cheaply) and find the images the feature set lacks: the part of a
    run shared by the default path and the Ray path (:mod:`serieslabeler.embed.distributed`)."""
    if batch_size < 1:
        raise PipelineError(f"--batch-size must be at least 1, not {batch_size}")
    store = FeatureStore(workspace)
    choice = resolve_weights(backbone, _recorded_weights_file(store, backbone, weights))
    wanted = _workspace_ids(workspace, image_ids)
    todo = store.missing(choice.feature_set, wanted)
    return EmbedPlan(choice, todo, len(wanted) - len(todo))


def register_feature_set(store: FeatureStore, choice: WeightsChoice, dtype: str = "float32") -> None:
    """Register ``choice``'s feature set (width, preprocessing and weights file recorded)."""
    spec = backbone_spec(choice.backbone)
    store.register(
        choice.feature_set, choice.backbone, choice.identity, spec.dim, dtype,
        params={"preprocess": asdict(spec.preprocess), "weights_file": str(choice.path or "")},
    )


def embed_images(
    backbone: Backbone,
    image_ids: Sequence[int],
    paths: Sequence[Path],
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(ids, vectors)`` per batch (float32 numpy), for any loaded backbone or model."""
    device = resolve_device(device)
    embedder = BatchEmbedder(backbone, device)
    dataset = ImageDataset(image_ids, paths, backbone.spec.preprocess)
    workers = default_workers(device) if num_workers is None else num_workers
    # a worker pays off only by decoding a next batch while one runs (starting one costs ~1 s)
    workers = max(0, min(workers, -(-len(dataset) // batch_size) - 1))
    for ids, images, errors in _batches(dataset, batch_size, workers, pin_memory=device == "cuda"):
        _raise_unreadable(ids, errors, dataset)
        yield ids.numpy(), embedder(images)


class BatchEmbedder:
    """A loaded backbone on a device: ``uint8 (N, 3, H, W)`` tensors in, float32 vectors out.

    Normalization happens on the device; on CUDA the network runs channels-last under bf16
    autocast. Both the default path and the Ray actors (:mod:`serieslabeler.embed.distributed`) embed
    through this, so their vectors are the same.
    """

    def __init__(self, backbone: Backbone, device: str = "cpu"):
        import torch

        self.device = resolve_device(device)
        self.cuda = self.device == "cuda"
        self.module = backbone.module.to(self.device)
        if self.cuda:
            self.module = self.module.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
        self.normalize = BatchNormalizer(backbone.spec.preprocess, self.device)

    def __call__(self, images) -> np.ndarray:
        import torch

        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            x = self.normalize(images.to(self.device, non_blocking=True))
            if self.cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.module(x).float().cpu().numpy()


def resolve_device(device: str) -> str:
    """``cpu``, ``cuda`` (must be available) or ``auto`` (CUDA when there is one)."""
    import torch

    if device not in DEVICES:
        raise PipelineError(f"--device must be one of {', '.join(DEVICES)}, not '{device}'")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise PipelineError("--device cuda: no CUDA GPU is available to PyTorch here; use --device cpu")
    return device


def default_workers(device: str = "cpu") -> int:
    """Decoding processes: on a CPU they share the cores with the network, so at most 2; a GPU
    consumes thousands of images a second, so every core but one decodes."""
    cores = os.cpu_count() or 1
    return max(1, min(cores - 1, 16)) if device == "cuda" else min(2, cores)


def load_image(path: Path, preprocess: Preprocess) -> np.ndarray:
    """Read and decode one stored image file (see :func:`decode_image`)."""
    return decode_image(Path(path).read_bytes(), preprocess)


def decode_image(data: bytes, preprocess: Preprocess) -> np.ndarray:
    """Decode one image's file bytes as a ``(3, crop, crop)`` uint8 array: shorter side resized,
    center-cropped (or the whole image resized, ``preprocess.whole``). Bytes, not a path, so a
    Ray worker that cannot see the file decodes the same."""
    with Image.open(io.BytesIO(data)) as image:
        # JPEG can decode at 1/2, 1/4, 1/8 scale directly: far less work for big photos
        image.draft("RGB", (preprocess.resize, preprocess.resize))
        image = ImageOps.exif_transpose(image).convert("RGB")
    if preprocess.whole:
        return np.asarray(image.resize((preprocess.crop, preprocess.crop), Image.BILINEAR)).transpose(2, 0, 1).copy()
    width, height = image.size
    scale = preprocess.resize / min(width, height)
    size = (max(preprocess.crop, round(width * scale)), max(preprocess.crop, round(height * scale)))
    image = image.resize(size, Image.BILINEAR)
    left, top = (size[0] - preprocess.crop) // 2, (size[1] - preprocess.crop) // 2
    image = image.crop((left, top, left + preprocess.crop, top + preprocess.crop))
    return np.asarray(image).transpose(2, 0, 1).copy()


def read_file(path) -> bytes:
    return Path(path).read_bytes()


def error_text(error: BaseException) -> str:
    """How an unreadable image's error is reported: ``Type: message``."""
    return f"{type(error).__name__}: {error}"


class ImageDataset:
    """``(image id, uint8 image, error text)`` per index; unreadable files give an error text
    instead of raising, so the main process can name the image without a worker traceback.

    ``sources`` are what ``read_bytes`` turns into file bytes: local paths by default; the Ray
    engine passes the bytes themselves (``read_bytes=bytes``) or names under a URI.
    """

    def __init__(
        self, image_ids: Sequence[int], sources: Sequence, preprocess: Preprocess,
        read_bytes: Callable[[Any], bytes] = read_file,
    ):
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        self.sources = list(sources)
        self.preprocess = preprocess
        self.read_bytes = read_bytes

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int):
        import torch

        pixels, error = self.read(index)
        return int(self.image_ids[index]), torch.from_numpy(pixels), error

    def read(self, index: int) -> tuple[np.ndarray, str]:
        """Image ``index`` as uint8 pixels and an empty error text, or zeros and the error (no torch)."""
        try:
            return decode_image(self.read_bytes(self.sources[index]), self.preprocess), ""
        except Exception as exc:  # noqa: BLE001 - reported per image by the main process
            crop = self.preprocess.crop
            return np.zeros((3, crop, crop), np.uint8), error_text(exc)

    def source_of(self, image_id: int):
        return self.sources[int(np.flatnonzero(self.image_ids == image_id)[0])]


class BatchNormalizer:
    """uint8 ``(N, 3, H, W)`` -> float32, normalized with the backbone's mean and std."""

    def __init__(self, preprocess: Preprocess, device: str):
        import torch

        self.mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1) * 255

    def __call__(self, images):
        return (images.float() - self.mean) / self.std


class ShardWriter:
    """Collect vectors in a fixed buffer and append one store shard per ``shard_size`` rows.

    On leaving the block (also on an error or Ctrl-C) the finished rows are written, so
    completed work is kept and a rerun continues where this one stopped.
    """

    def __init__(self, store: FeatureStore, name: str, dim: int, dtype: str, shard_size: int = SHARD_SIZE):
        self.store, self.name = store, name
        self.ids = np.empty(shard_size, np.int64)
        self.vectors = np.empty((shard_size, dim), dtype)
        self.filled = 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        start = 0
        while start < len(ids):
            take = min(len(ids) - start, len(self.ids) - self.filled)
            self.ids[self.filled : self.filled + take] = ids[start : start + take]
            self.vectors[self.filled : self.filled + take] = vectors[start : start + take]
            self.filled += take
            start += take
            if self.filled == len(self.ids):
                self.flush()

    def flush(self) -> None:
        if self.filled:
            self.store.append(self.name, self.ids[: self.filled], self.vectors[: self.filled])
            self.filled = 0

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def _batches(dataset: ImageDataset, batch_size: int, workers: int, pin_memory: bool):
    """Batches from a DataLoader with ``workers`` decoding processes, or in-process when
    worker processes cannot be started here (a sandbox without fork or shared memory)."""
    from torch.utils.data import DataLoader

    def loader(n: int) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=n, pin_memory=pin_memory,
            persistent_workers=n > 0, prefetch_factor=4 if n > 0 else None,
        )

    try:
        iterator = iter(loader(workers))
    except (OSError, RuntimeError):
        iterator = iter(loader(0))
    yield from iterator


def _raise_unreadable(ids, errors: Sequence[str], dataset: ImageDataset) -> None:
    for image_id, error in zip(ids.tolist(), errors):
        if error:
            raise PipelineError(
                f"image {image_id} ({dataset.source_of(image_id)}) cannot be read: {error}; "
                f"the vectors computed before it are kept"
            )


def _recorded_weights_file(store: FeatureStore, backbone: str, weights: str) -> str:
    """The weights file recorded for an existing ``<backbone>@file-<sha>`` set, so its identity
    can be passed instead of the path; anything else unchanged."""
    name = f"{backbone}@{weights}"
    if weights.startswith("file-") and name in store.names():
        return store.info(name).params.get("weights_file") or weights
    return weights


def _workspace_ids(workspace: Workspace, image_ids) -> np.ndarray:
    """All image ids of the workspace (sorted), or the given ones after checking they exist."""
    if image_ids is None:
        return np.array([r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id")], np.int64)
    wanted = np.unique(np.asarray(list(image_ids), dtype=np.int64))
    known = {r[0] for r in workspace.query_in("SELECT id FROM images WHERE id IN ({})", wanted)}
    unknown = [int(i) for i in wanted if int(i) not in known]
    if unknown:
        raise PipelineError(f"no image with id {unknown[0]} in {workspace.root} ({len(unknown)} unknown ids)")
    return wanted
