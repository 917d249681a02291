"""The many-machine path: embedding on Ray Data (``serieslabeler embed --engine ray``).

A run goes like this:

1. The driver (this process) reads from the catalog which images the feature set is still
   missing, with their stored-file paths: the same plan as the default path
   (:func:`serieslabeler.embed.local.plan_embedding`), so nothing is ever embedded twice.
2. Ray Data splits that list into blocks. CPU tasks decode, resize and crop every image with
   the default path's own loader (:class:`serieslabeler.embed.local.ImageDataset`, which calls
   :func:`serieslabeler.embed.local.load_image` with the backbone's :class:`~serieslabeler.embed.backbones.Preprocess`)
   into ``uint8`` arrays.
3. An actor pool runs the network: each actor (:class:`EmbedActor`) loads the backbone once and
   turns batches into vectors with the default path's forward pass
   (:class:`serieslabeler.embed.local.BatchEmbedder`). When the cluster has GPUs, every actor holds one
   (``num_gpus=1``) and there is one actor per GPU; without GPUs, half of the CPUs run actors
   of up to two threads each and the other half decode (:func:`actor_layout`).
4. The actors' output is written as Parquet shards (``image_id`` int64, ``vector`` a
   fixed-size list of float32, ``error`` the text of a decoding error or empty) into a staging
   folder inside the workspace (``.staging-ray-*``), then imported into the feature store under
   the same feature-set name as the default path. The staging folder is deleted once its
   vectors are imported. Images that could not be read are reported after the others are
   imported, so a rerun embeds only what is still missing.

With no ``address`` a local Ray is started (``num_cpus`` CPUs, its object store capped at
``object_store_memory`` bytes) and stopped at the end. With an address (``host:6379``,
``ray://host:10001`` or ``auto``) the run joins an existing cluster: pointing it at many GPU
machines is only a different address. The cluster's workers must then see the workspace
folder at the same path (a shared filesystem: they read the stored images and write the
staging shards there) and have this project's requirements installed; the ``serieslabeler``
package itself is shipped to them (``runtime_env`` ``py_modules``).

Ray is an optional extra (``pip install -r requirements-scale.txt``); it is imported only here.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serieslabeler.embed.backbones import (
    Backbone,
    Preprocess,
    backbone_spec,
    load_backbone,
    resolve_weights,
)
from serieslabeler.embed.local import (
    DEVICES,
    BatchEmbedder,
    EmbedReport,
    ImageDataset,
    ShardWriter,
    plan_embedding,
    register_feature_set,
)
from serieslabeler.errors import PipelineError
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace

LOCAL_CPUS = 2


OBJECT_STORE_BYTES = 1 << 30


BLOCK_BATCHES = 8


DECODE_MEMORY = 512 << 20  # a decoding worker: Python, Pillow and one batch of pixels


INSTALL_HINT = "pip install -r requirements-scale.txt"


@dataclass(frozen=True)
class ActorLayout:
    """How the model runs on the cluster: ``actors`` copies, each with these resources."""

    actors: int
    cpus_per_actor: int
    gpus_per_actor: int
    device: str


def actor_layout(cpus: float, gpus: float, device: str = "auto", actors: int | None = None) -> ActorLayout:
    """One actor per GPU when the cluster has GPUs (unless ``device='cpu'``); otherwise half of
    the CPUs run actors of up to two threads and the other half decode images."""
    if device not in DEVICES:
        raise PipelineError(f"--device must be one of {', '.join(DEVICES)}, not '{device}'")
    if actors is not None and actors < 1:
        raise PipelineError(f"--actors must be at least 1, not {actors}")
    if device == "cuda" and gpus < 1:
        raise PipelineError("--device cuda: the Ray cluster has no GPU; use --device cpu or auto")
    if gpus >= 1 and device != "cpu":
        return ActorLayout(actors or int(gpus), 1, 1, "cuda")
    model_cpus = max(1, int(cpus) // 2)
    count = actors or max(1, model_cpus // 2)
    return ActorLayout(count, max(1, model_cpus // count), 0, "cpu")


def embed_with_ray(
    workspace: Workspace,
    backbone: str,
    weights: str = "default",
    device: str = "auto",
    batch_size: int = 32,
    image_ids=None,
    dtype: str = "float32",
    address: str | None = None,
    actors: int | None = None,
    num_cpus: int = LOCAL_CPUS,
    object_store_memory: int = OBJECT_STORE_BYTES,
    progress: Progress | None = None,
) -> EmbedReport:
    """Embed the images (all, or ``image_ids``) that the feature set lacks, on Ray Data.

    Same feature-set name, vectors and cache as :func:`serieslabeler.embed.local.embed_workspace`;
    ``num_cpus`` and ``object_store_memory`` size the local Ray started when ``address`` is None.
    """
    start = time.perf_counter()
    plan = plan_embedding(workspace, backbone, weights, image_ids, batch_size)
    store = FeatureStore(workspace)
    if len(plan.todo) or plan.choice.feature_set not in store.names():
        register_feature_set(store, plan.choice, dtype)
    if len(plan.todo) == 0:
        return EmbedReport(plan.choice.feature_set, 0, plan.cached, time.perf_counter() - start, 0.0, device, batch_size, 0)
    loader = WorkerBackbone(backbone, weights_argument(plan.choice), plan.choice.identity)
    imported, layout = embed_ids_with_ray(
        workspace, plan.choice.feature_set, loader, backbone_spec(backbone).preprocess, plan.todo, device, batch_size,
        address, actors, num_cpus, object_store_memory, progress,
    )
    seconds = time.perf_counter() - start
    return EmbedReport(
        plan.choice.feature_set, imported, plan.cached, seconds, imported / seconds, layout.device, batch_size, layout.actors,
    )


def embed_ids_with_ray(
    workspace: Workspace,
    feature_set: str,
    loader: Callable[[], Backbone],
    preprocess: Preprocess,
    image_ids: np.ndarray,
    device: str = "auto",
    batch_size: int = 32,
    address: str | None = None,
    actors: int | None = None,
    num_cpus: int = LOCAL_CPUS,
    object_store_memory: int = OBJECT_STORE_BYTES,
    progress: Progress | None = None,
) -> tuple[int, ActorLayout]:
    """Embed ``image_ids`` on Ray with the model that ``loader`` builds on each actor and import
    the vectors into ``feature_set`` (already registered); returns how many were imported and the
    actor layout used. Works for any model: pass a picklable loader of a fine-tuned network to
    embed with it (``predict --engine ray``)."""
    ray = import_ray()
    staging = workspace.root / f".staging-ray-{uuid.uuid4().hex[:12]}"
    with ray_session(ray, address, num_cpus, object_store_memory):
        resources = ray.cluster_resources()
        layout = actor_layout(resources.get("CPU", 1), resources.get("GPU", 0), device, actors)
        try:
            run_pipeline(ray, loader, preprocess, image_ids, workspace.image_paths(image_ids), layout, batch_size, staging)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(error, ray.exceptions.RayError):
                raise PipelineError(f"the Ray run failed: {str(error).strip().splitlines()[-1]}") from None
            raise
    imported, failures = import_shards(FeatureStore(workspace), feature_set, staging, progress)
    shutil.rmtree(staging, ignore_errors=True)
    if failures:
        image_id, error = failures[0]
        raise PipelineError(
            f"{len(failures)} image(s) could not be read, e.g. image {image_id} ({workspace.image_path(image_id)}): "
            f"{error}; the {imported} other vectors are kept"
        )
    return imported, layout


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError:
        raise PipelineError(f"--engine ray needs Ray Data, an optional extra: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_session(ray, address: str | None, num_cpus: int, object_store_memory: int) -> Iterator[None]:
    """Connect to ``address``, or start a local Ray; shut it down after, unless it was already up."""
    if ray.is_initialized():
        yield
        return
    package = str(Path(__file__).resolve().parent)
    runtime_env = {"py_modules": [package], "excludes": ["__pycache__"]}
    options = dict(runtime_env=runtime_env, log_to_driver=False, logging_level=logging.WARNING)
    if address is None:
        options.update(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False)
    else:
        options.update(address=address)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray"
        raise PipelineError(f"cannot start or reach {where}: {error}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def run_pipeline(
    ray, loader: Callable[[], Backbone], preprocess: Preprocess, image_ids: np.ndarray, paths: list[Path],
    layout: ActorLayout, batch_size: int, staging: Path,
) -> None:
    """Decode (CPU tasks) -> embed (actor pool) -> Parquet shards in ``staging``.

    ``loader`` is a picklable callable that each actor calls once to get its model (any
    :class:`~serieslabeler.embed.backbones.Backbone`: an ImageNet network, or a fine-tuned classifier cut
    at its penultimate layer), and ``preprocess`` how that model's images are prepared.
    """
    import pyarrow as pa

    table = pa.table({"image_id": np.asarray(image_ids, np.int64), "path": [str(p) for p in paths]})
    blocks = max(1, -(-len(image_ids) // (batch_size * BLOCK_BATCHES)))
    dataset = ray.data.from_arrow(table, override_num_blocks=blocks)
    # The memory request also keeps Ray Data from fusing decoding into the model actors, so
    # decoding runs in parallel CPU tasks while the actors run the network.
    dataset = dataset.map_batches(
        decode_batch, fn_kwargs={"preprocess": preprocess}, batch_size=batch_size, batch_format="numpy",
        num_cpus=1, memory=DECODE_MEMORY,
    )
    dataset = dataset.map_batches(
        EmbedActor,
        fn_constructor_kwargs={"loader": loader, "device": layout.device, "threads": layout.cpus_per_actor},
        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=layout.actors),
        num_cpus=layout.cpus_per_actor, num_gpus=layout.gpus_per_actor,
    )
    dataset.write_parquet(str(staging))


def weights_argument(choice) -> str:
    """What a worker passes to :func:`resolve_weights` to get the same weights on its machine."""
    return str(choice.path) if choice.identity.startswith("file-") else choice.identity


def decode_batch(batch: dict[str, np.ndarray], preprocess: Preprocess) -> dict[str, np.ndarray]:
    """Decode, resize and crop a batch of images with the default path's loader (a CPU task)."""
    dataset = ImageDataset(batch["image_id"], [str(p) for p in batch["path"]], preprocess)
    items = [dataset.read(index) for index in range(len(dataset))]
    return {
        "image_id": dataset.image_ids,
        "pixels": np.stack([pixels for pixels, _ in items]),
        "error": np.array([error for _, error in items], dtype=object),
    }


@dataclass(frozen=True)
class WorkerBackbone:
    """Loads an ImageNet backbone on a Ray worker: the weights are resolved on the worker's own
    machine and must have the identity the driver named the feature set after."""

    backbone: str
    weights: str
    identity: str

    def __call__(self) -> Backbone:
        choice = resolve_weights(self.backbone, self.weights)
        if choice.identity != self.identity:
            raise PipelineError(
                f"{self.backbone} weights on this Ray worker are '{choice.identity}', the driver's are '{self.identity}'"
            )
        return load_backbone(self.backbone, choice)


class EmbedActor:
    """A Ray Data actor: loads its model once (``loader()``), then turns ``uint8`` batches into vectors."""

    def __init__(self, loader: Callable[[], Backbone], device: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.embedder = BatchEmbedder(loader(), device)

    def __call__(self, batch: dict[str, np.ndarray]):
        import torch

        vectors = self.embedder(torch.from_numpy(np.ascontiguousarray(batch["pixels"])))
        return vector_table(batch["image_id"], vectors, batch["error"])


def vector_table(image_ids: np.ndarray, vectors: np.ndarray, errors) -> "pyarrow.Table":  # noqa: F821
    """The Parquet shard layout: plain Arrow types, readable without Ray."""
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.table({
        "image_id": pa.array(np.asarray(image_ids, np.int64)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
        "error": pa.array([str(e) for e in errors], pa.string()),
    })


def read_vector_table(table, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image ids, (n, dim) float32 vectors, error texts)`` of one Parquet shard."""
    column = table.column("vector")
    flat = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    vectors = (np.concatenate(flat) if flat else np.empty(0, np.float32)).astype(np.float32, copy=False).reshape(-1, dim)
    ids = table.column("image_id").to_numpy().astype(np.int64)
    errors = np.array(table.column("error").to_pylist(), dtype=object)
    return ids, vectors, errors


def import_shards(store: FeatureStore, name: str, folder: Path, progress: Progress | None = None) -> tuple[int, list[tuple[int, str]]]:
    """Append the vectors of every Parquet shard in ``folder`` to feature set ``name`` (in store
    shards of the usual size); returns the number imported and the ``(image id, error)`` of the
    images whose decoding failed."""
    import pyarrow.parquet as pq

    info = store.info(name)
    files = sorted(folder.rglob("*.parquet"))
    total = sum(pq.ParquetFile(file).metadata.num_rows for file in files)
    done, failures = 0, []
    with ShardWriter(store, name, info.dim, info.dtype) as writer:
        for file in files:
            ids, vectors, errors = read_vector_table(pq.read_table(file), info.dim)
            good = errors == ""
            writer.add(ids[good], vectors[good])
            failures += [(int(i), str(e)) for i, e in zip(ids[~good], errors[~good])]
            done += len(ids)
            if progress:
                progress(done, total)
    return done - len(failures), failures
