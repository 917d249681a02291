"""The many-machine path: embedding on Ray Data (``serieslabeler embed --engine ray``).

No worker needs the workspace: only the driver (this process) reads and writes it. A run goes
like this:

1. The driver reads from the catalog which images the feature set is still missing, with their
   stored-file paths: the same plan as the default path
   (:func:`serieslabeler.embed.local.plan_embedding`), so nothing is ever embedded twice.
2. The images reach the workers in one of two ways. By default the driver reads the files'
   bytes, a block of ``batch_size * BLOCK_BATCHES`` images at a time, and puts them in Ray's
   object store as Arrow tables (``image_id``, ``source`` = the bytes); it hands them to Ray
   Data a window at a time (about a quarter of the smallest node's object store,
   :func:`default_window_bytes`), so the store never holds the whole collection; each window
   starts its actor pool afresh. With ``images_uri`` (``--images-uri``: a pyarrow filesystem
   URI, a local path, ``s3://`` or ``gs://``, holding a copy of the workspace's ``images``
   folder), the dataset carries only each file's name under that folder and the workers read
   the bytes from there: one dataset, one actor pool, for the largest collections.
3. CPU tasks decode, resize and crop every image from its bytes with the default path's own
   loader (:class:`serieslabeler.embed.local.ImageDataset`, which calls
   :func:`serieslabeler.embed.local.decode_image` with the backbone's
   :class:`~serieslabeler.embed.backbones.Preprocess`) into ``uint8`` arrays.
4. An actor pool runs the network: each actor (:class:`EmbedActor`) loads the backbone once and
   turns batches into vectors with the default path's forward pass
   (:class:`serieslabeler.embed.local.BatchEmbedder`). When the cluster has GPUs, every actor holds one
   (``num_gpus=1``) and there is one actor per GPU; without GPUs, half of the CPUs run actors
   of up to two threads each and the other half decode (:func:`actor_layout`).
5. The actors' output (Arrow tables: ``image_id`` int64, ``vector`` a fixed-size list of
   float32, ``error`` the text of a decoding error or empty) streams back to the driver
   (``iter_batches``), which appends the vectors to the feature store under the same
   feature-set name as the default path, in store shards of the usual size, keeping what is
   finished if the run stops. Images that could not be read are reported after the others are
   stored, so a rerun embeds only what is still missing.

With no ``address`` a local Ray is started (``num_cpus`` CPUs, its object store capped at
``object_store_memory`` bytes) and stopped at the end. With an address (``host:6379``,
``ray://host:10001`` or ``auto``) the run joins an existing cluster: pointing it at many GPU
machines is only a different address. The workers need this project's requirements installed
(and, with ``images_uri``, access to that URI); the ``serieslabeler`` package itself is
shipped to them (``runtime_env`` ``py_modules``, :func:`worker_runtime_env`).

Ray is an optional extra (``pip install -r requirements-scale.txt``); it is imported only here.
"""
from __future__ import annotations

import contextlib
import logging
import time
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
    error_text,
    plan_embedding,
    read_file,
    register_feature_set,
)
from serieslabeler.errors import PipelineError
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace

LOCAL_CPUS = 2


OBJECT_STORE_BYTES = 1 << 30


BLOCK_BATCHES = 8


WINDOW_SHARE = 4  # the image bytes sent at a time fill at most this fraction of a node's object store


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
    images_uri: str | None = None,
    window_bytes: int | None = None,
) -> EmbedReport:
    """Embed the images (all, or ``image_ids``) that the feature set lacks, on Ray Data.

    Same feature-set name, vectors and cache as :func:`serieslabeler.embed.local.embed_workspace`;
    ``num_cpus`` and ``object_store_memory`` size the local Ray started when ``address`` is None.
    ``images_uri`` and ``window_bytes``: see :func:`embed_ids_with_ray`.
    """
    start = time.perf_counter()
    if images_uri:
        check_images_uri(images_uri)
    plan = plan_embedding(workspace, backbone, weights, image_ids, batch_size)
    store = FeatureStore(workspace)
    if len(plan.todo) or plan.choice.feature_set not in store.names():
        register_feature_set(store, plan.choice, dtype)
    if len(plan.todo) == 0:
        return EmbedReport(plan.choice.feature_set, 0, plan.cached, time.perf_counter() - start, 0.0, device, batch_size, 0)
    loader = WorkerBackbone(backbone, weights_argument(plan.choice), plan.choice.identity)
    imported, layout = embed_ids_with_ray(
        workspace, plan.choice.feature_set, loader, backbone_spec(backbone).preprocess, plan.todo, device, batch_size,
        address, actors, num_cpus, object_store_memory, progress, images_uri, window_bytes,
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
    images_uri: str | None = None,
    window_bytes: int | None = None,
) -> tuple[int, ActorLayout]:
    """Embed ``image_ids`` on Ray with the model that ``loader`` builds on each actor and append
    the vectors to ``feature_set`` (already registered); returns how many were stored and the
    actor layout used. Works for any model: pass a picklable loader of a fine-tuned network to
    embed with it (``predict --engine ray``).

    The workers never touch the workspace: this process sends them the image files' bytes in
    windows of about ``window_bytes`` (default: a quarter of the smallest node's object store),
    or, with ``images_uri`` (a pyarrow filesystem URI: a local path, ``s3://``, ``gs://``, holding
    a copy of the workspace's ``images`` folder), they read the files from there. This process
    alone writes the vectors that come back.
    """
    ray = import_ray()
    image_ids = np.asarray(image_ids, np.int64)
    paths = workspace.image_paths(image_ids)
    remote = RemoteImages(check_images_uri(images_uri)) if images_uri else None
    store = FeatureStore(workspace)
    info = store.info(feature_set)
    received = Received(len(image_ids), progress)
    with ray_session(ray, address, num_cpus, object_store_memory):
        resources = ray.cluster_resources()
        layout = actor_layout(resources.get("CPU", 1), resources.get("GPU", 0), device, actors)
        stages = EmbedStages(loader, preprocess, layout, batch_size)
        block_rows = batch_size * BLOCK_BATCHES
        if remote:
            sources = [(file_names_dataset(ray, workspace, image_ids, paths, block_rows), remote)]
        else:
            sources = byte_windows(ray, image_ids, paths, block_rows, window_bytes or default_window_bytes(ray), received)
        with ShardWriter(store, feature_set, info.dim, info.dtype) as writer:
            try:
                for dataset, read_bytes in sources:
                    for table in stages.results(ray, dataset, read_bytes):
                        writer.add(*received.vectors(table, info.dim))
            except ray.exceptions.RayError as error:
                raise PipelineError(f"the Ray run failed: {str(error).strip().splitlines()[-1]}") from None
    if received.failures:
        image_id, error = received.failures[0]
        path = workspace.image_path(image_id)
        where = remote.location(relative_name(workspace, path)) if remote else path
        raise PipelineError(
            f"{len(received.failures)} image(s) could not be read, e.g. image {image_id} ({where}): "
            f"{error}; the {received.stored} other vectors are kept"
        )
    return received.stored, layout


class Received:
    """What came back so far: vectors stored, images that could not be read; reports progress."""

    def __init__(self, total: int, progress: Progress | None = None):
        self.total, self.progress = total, progress
        self.stored = 0
        self.failures: list[tuple[int, str]] = []

    def vectors(self, table, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """The readable images' ``(ids, vectors)`` of one result table; records the others."""
        ids, vectors, errors = read_vector_table(table, dim)
        good = errors == ""
        self.stored += int(good.sum())
        self.unreadable([(int(i), str(e)) for i, e in zip(ids[~good], errors[~good])])
        return ids[good], vectors[good]

    def unreadable(self, failures: list[tuple[int, str]]) -> None:
        self.failures += failures
        if self.progress:
            self.progress(self.stored + len(self.failures), self.total)


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError:
        raise PipelineError(f"--engine ray needs Ray Data, an optional extra: {INSTALL_HINT}") from None
    return ray


def worker_runtime_env() -> dict:
    """What the workers get: the ``serieslabeler`` package itself, shipped (``py_modules``)."""
    package = str(Path(__file__).resolve().parents[1])
    return {"py_modules": [package], "excludes": ["__pycache__"]}


@contextlib.contextmanager
def ray_session(ray, address: str | None, num_cpus: int, object_store_memory: int) -> Iterator[None]:
    """Connect to ``address``, or start a local Ray; shut it down after, unless it was already up."""
    if ray.is_initialized():
        yield
        return
    options = dict(runtime_env=worker_runtime_env(), log_to_driver=False, logging_level=logging.WARNING)
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


@dataclass(frozen=True)
class EmbedStages:
    """Decode (CPU tasks) -> embed (actor pool), for any source dataset of ``image_id`` and ``source``.

    ``loader`` is a picklable callable that each actor calls once to get its model (any
    :class:`~serieslabeler.embed.backbones.Backbone`: an ImageNet network, or a fine-tuned classifier cut
    at its penultimate layer), and ``preprocess`` how that model's images are prepared.
    """

    loader: Callable[[], Backbone]
    preprocess: Preprocess
    layout: ActorLayout
    batch_size: int

    def results(self, ray, dataset, read_bytes: Callable) -> Iterator["pyarrow.Table"]:  # noqa: F821
        """The vector tables (:func:`vector_table`) of ``dataset``, streamed back to this process;
        ``read_bytes`` turns a ``source`` value into the file's bytes on the worker."""
        # The memory request also keeps Ray Data from fusing decoding into the model actors, so
        # decoding runs in parallel CPU tasks while the actors run the network.
        dataset = dataset.map_batches(
            decode_batch, fn_kwargs={"preprocess": self.preprocess, "read_bytes": read_bytes}, batch_size=self.batch_size,
            batch_format="pyarrow", num_cpus=1, memory=DECODE_MEMORY,
        )
        dataset = dataset.map_batches(
            EmbedActor,
            fn_constructor_kwargs={"loader": self.loader, "device": self.layout.device, "threads": self.layout.cpus_per_actor},
            batch_size=self.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=self.layout.actors),
            num_cpus=self.layout.cpus_per_actor, num_gpus=self.layout.gpus_per_actor,
        )
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")


def byte_windows(
    ray, image_ids: np.ndarray, paths: list[Path], block_rows: int, window_bytes: int, received: Received,
) -> Iterator[tuple[object, Callable]]:
    """Datasets of the images' file bytes (``source`` column), read here, put in the object
    store and handed out a window of about ``window_bytes`` at a time, so the object store never
    holds the whole collection. Files this process cannot read go to ``received``."""
    blocks, size = [], 0
    for start in range(0, len(image_ids), block_rows):
        block = read_block(image_ids[start : start + block_rows], paths[start : start + block_rows], received)
        if block.num_rows:
            blocks.append(ray.put(block))
            size += block.nbytes
        if blocks and (size >= window_bytes or start + block_rows >= len(image_ids)):
            yield ray.data.from_arrow_refs(blocks), bytes
            blocks, size = [], 0


def default_window_bytes(ray) -> int:
    """A ``1 / WINDOW_SHARE`` of the smallest live node's object store."""
    stores = [node["Resources"].get("object_store_memory", 0) for node in ray.nodes() if node["Alive"]]
    return int(min([size for size in stores if size] or [OBJECT_STORE_BYTES])) // WINDOW_SHARE


def read_block(image_ids: np.ndarray, paths: list[Path], received: Received) -> "pyarrow.Table":  # noqa: F821
    """``image_id`` and ``source`` (the file's bytes) of the images whose files can be read."""
    import pyarrow as pa

    ids, blobs, failures = [], [], []
    for image_id, path in zip(image_ids.tolist(), paths):
        try:
            blobs.append(read_file(path))
            ids.append(image_id)
        except OSError as error:
            failures.append((image_id, error_text(error)))
    if failures:
        received.unreadable(failures)
    return pa.table({"image_id": pa.array(ids, pa.int64()), "source": pa.array(blobs, pa.large_binary())})


def file_names_dataset(ray, workspace: Workspace, image_ids: np.ndarray, paths: list[Path], block_rows: int):
    """A dataset of ``image_id`` and ``source``: each stored file's name relative to the images folder."""
    import pyarrow as pa

    names = [relative_name(workspace, path) for path in paths]
    table = pa.table({"image_id": pa.array(image_ids, pa.int64()), "source": pa.array(names, pa.string())})
    return ray.data.from_arrow(table, override_num_blocks=max(1, -(-len(image_ids) // block_rows)))


def relative_name(workspace: Workspace, path: Path) -> str:
    return path.relative_to(workspace.images_dir).as_posix()


def check_images_uri(uri: str) -> str:
    """``uri`` if pyarrow can open a filesystem for it, else a PipelineError naming ``--images-uri``."""
    from pyarrow import fs

    try:
        fs.FileSystem.from_uri(uri)
    except Exception as error:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ValueError...
        raise PipelineError(f"--images-uri '{uri}': {error}") from None
    return uri


class RemoteImages:
    """Reads a stored image's bytes from ``uri`` (a copy of the workspace's ``images`` folder) on
    a Ray worker; picklable, and opens the pyarrow filesystem once per process."""

    def __init__(self, uri: str):
        self.uri = uri
        self._filesystem = None

    def __getstate__(self):
        return {"uri": self.uri}

    def __setstate__(self, state):
        self.__init__(state["uri"])

    def location(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}"

    def __call__(self, name: str) -> bytes:
        from pyarrow import fs

        if self._filesystem is None:
            self._filesystem = fs.FileSystem.from_uri(self.uri)
        filesystem, root = self._filesystem
        with filesystem.open_input_stream(f"{root.rstrip('/')}/{name}") as stream:
            return stream.read()


def weights_argument(choice) -> str:
    """What a worker passes to :func:`resolve_weights` to get the same weights on its machine."""
    return str(choice.path) if choice.identity.startswith("file-") else choice.identity


def decode_batch(batch, preprocess: Preprocess, read_bytes: Callable = bytes) -> dict[str, np.ndarray]:
    """Decode, resize and crop a batch (an Arrow table of ``image_id`` and ``source``) with the
    default path's loader (a CPU task); ``read_bytes`` turns a source into the file's bytes."""
    dataset = ImageDataset(batch.column("image_id").to_numpy(), batch.column("source").to_pylist(), preprocess, read_bytes)
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
