"""How the heavy steps grow from 100,000 to 1,000,000 images, and local Ray versus the default embed.

Part 1, per size N (``--sizes``): a synthetic workspace of N catalog image rows (N / 200
subjects, 200 images each over 20 days; attributes group, day, hour; a ground-truth label) and a
512-dim float32 feature set (50 Gaussian blobs). No image files: these steps never read them.
Every step runs in its own subprocess, so its peak memory is its own (``ru_maxrss``: the
interpreter, imports and the step's data; the time excludes imports):

- ``ingest rows``: ``serieslabeler.ingest.run.write_catalog`` (ingest's own write path) on N checked rows;
- ``append features``: N x 512 float32 vectors through ``FeatureStore.append`` in 4,096-row shards;
- ``kmeans faiss`` / ``kmeans sklearn``: ``run_clustering(..., "kmeans", k=20, n_init=1)`` with
  the faiss backend forced on / off (load the features, cluster, distances, save N members);
- ``agglomerative``: ``run_clustering(..., "agglomerative", k=20)`` with the default limits
  (at these sizes: k-means centroids agglomerated);
- ``t-SNE sampled``: ``create_map(..., max_fit=25,000)``: fitted on 25,000 images, the rest placed;
- ``label_cluster 10k``: labeling a 10,000-image cluster of a saved clustering, 100 excluded;
- ``info``: ``serieslabeler.store.summary.summarize``.

The table shows seconds and peak RSS per size and, with two sizes, the time ratio next to the
n log n ratio (the target: no step grows faster than that; peak memory at 1M under 8 GB).

Part 2 (``--ray-images``, 0 to skip): the 220 bananas photos repeated to that many *distinct*
files (each copy has 4 bytes appended after the JPEG's end marker: the same pixels, a different
SHA-256) are written into a workspace through ``write_catalog``; then efficientnet_lite0 embeds
them with the default path and, in a copy of the workspace, with ``--engine ray`` on a local Ray
(2 CPUs). Prints both images/s (the Ray time includes starting Ray), their ratio, and the
largest absolute difference between the two feature sets.

Usage::

    .venv/bin/python bench/scale.py [--sizes 100000,1000000] [--ray-images 2000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from serieslabeler.ingest import (
    CheckedImage,
    ColumnMapping,
    IngestReport,
    MetadataRow,
    write_catalog,
)
from serieslabeler.store import Workspace, sha256_hex

ROOT = Path(__file__).resolve().parent.parent

BANANAS = ROOT / "tests" / "data" / "bananas" / "images"
FEATURE_SET = "resnet18@random"
DIM = 512
BLOBS = 50
K = 20
PER_SUBJECT = 200
LABEL_CLUSTER = 10_000
MAX_FIT = 25_000
KINDS = {"group": "categorical", "day": "numeric", "hour": "numeric"}
MAPPING = ColumnMapping(subject="subject", date="date", label="label", attributes=tuple(KINDS), kinds=KINDS)
STEPS = {
    "ingest": "ingest rows",
    "features": "append features",
    "kmeans-faiss": "kmeans faiss",
    "kmeans-sklearn": "kmeans sklearn",
    "agglomerative": "agglomerative",
    "tsne": "t-SNE sampled",
    "label": "label_cluster 10k",
    "info": "info",
}


# --- synthetic data ----------------------------------------------------------------------------
def synthetic_rows(n: int, offset: int = 0) -> list[CheckedImage]:
    """``n`` checked catalog rows (no files): subjects of 200 images over 20 days."""
    start = datetime(2020, 5, 1, 8, 0)
    rows = []
    for i in range(offset, offset + n):
        subject, j = divmod(i, PER_SUBJECT)
        taken = start + timedelta(days=j // 10, hours=j % 10)
        row = MetadataRow(
            i + 2, f"img{i:07d}.jpg", f"s{subject:05d}", taken.isoformat(timespec="seconds"), "URVO"[(j // 50) % 4],
            {"group": "FB"[subject % 2], "day": str(j // 10), "hour": str(8 + j % 10)},
        )
        rows.append(CheckedImage(row, f"{i:064x}", ".jpg", 640, 480, None, None))
    return rows


def blob_vectors(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    return (centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, DIM))).astype(np.float32)


# --- the steps (each in its own process) -------------------------------------------------------
def step_ingest(root: Path, n: int) -> dict:
    rows = synthetic_rows(n)
    workspace = Workspace.create(root)
    start = time.perf_counter()
    report = IngestReport()
    write_catalog(workspace, rows, KINDS, MAPPING, report)
    return {"seconds": time.perf_counter() - start, "note": f"{report.added} added"}


def step_features(root: Path, n: int) -> dict:
    from serieslabeler.embed import SHARD_SIZE
    from serieslabeler.store import FeatureStore

    workspace = Workspace.open(root)
    ids = np.array([r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id")], np.int64)
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(BLOBS, DIM))
    start = time.perf_counter()
    store = FeatureStore(workspace)
    store.register(FEATURE_SET, "resnet18", "random", DIM)
    for first in range(0, len(ids), SHARD_SIZE):
        part = ids[first : first + SHARD_SIZE]
        store.append(FEATURE_SET, part, blob_vectors(rng, centres, len(part)))
    return {"seconds": time.perf_counter() - start, "note": f"{len(ids)} x {DIM}"}


def step_kmeans(root: Path, n: int, faiss: bool) -> dict:
    from serieslabeler.clustering import run_clustering

    workspace = Workspace.open(root)
    start = time.perf_counter()
    clustering = run_clustering(workspace, FEATURE_SET, "kmeans", K, seed=0, n_init=1, faiss_threshold=0 if faiss else 10**12)
    return {"seconds": time.perf_counter() - start, "note": clustering.params["backend"]}


def step_agglomerative(root: Path, n: int) -> dict:
    from serieslabeler.clustering import run_clustering

    workspace = Workspace.open(root)
    start = time.perf_counter()
    clustering = run_clustering(workspace, FEATURE_SET, "agglomerative", K, seed=0)
    return {"seconds": time.perf_counter() - start, "note": clustering.params["connectivity"]}


def step_tsne(root: Path, n: int) -> dict:
    from serieslabeler.space import create_map

    workspace = Workspace.open(root)
    start = time.perf_counter()
    saved = create_map(workspace, FEATURE_SET, seed=0, max_fit=MAX_FIT)
    return {"seconds": time.perf_counter() - start, "note": f"fit {saved.params['fitted_on']}, placed {len(saved.ids) - saved.params['fitted_on']}"}


def step_label(root: Path, n: int) -> dict:
    from serieslabeler.clustering import Clustering, centre_distances, save_clustering
    from serieslabeler.labels import label_cluster

    workspace = Workspace.open(root)
    ids = np.array([r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id")], np.int64)
    clusters = np.where(np.arange(len(ids)) < LABEL_CLUSTER, 0, 1 + np.arange(len(ids)) % K)
    distances = centre_distances(np.random.default_rng(0).normal(size=(len(ids), 2)), clusters)
    clustering = save_clustering(
        workspace, Clustering(None, FEATURE_SET, "synthetic", K + 1, "full", None, {}, ids, clusters, distances)
    )
    excluded = ids[:100]
    start = time.perf_counter()
    event = label_cluster(workspace, clustering.id, 0, "Arm", excluded=excluded)
    return {"seconds": time.perf_counter() - start, "note": f"{event.changed} labeled"}


def step_info(root: Path, n: int) -> dict:
    from serieslabeler.store import format_summary, summarize

    workspace = Workspace.open(root)
    start = time.perf_counter()
    info = summarize(workspace)
    format_summary(info)
    return {"seconds": time.perf_counter() - start, "note": f"{info['images']} images, {info['subjects']} subjects"}


RUNNERS = {
    "ingest": step_ingest,
    "features": step_features,
    "kmeans-faiss": lambda root, n: step_kmeans(root, n, faiss=True),
    "kmeans-sklearn": lambda root, n: step_kmeans(root, n, faiss=False),
    "agglomerative": step_agglomerative,
    "tsne": step_tsne,
    "label": step_label,
    "info": step_info,
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(step: str, root: Path, n: int) -> dict:
    """Run one step in a fresh interpreter; its seconds, peak RSS and a note."""
    command = [sys.executable, str(Path(__file__).resolve()), "--step", step, "--workspace", str(root), "--n", str(n)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"seconds": math.nan, "peak_mb": math.nan, "note": "FAILED: " + done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the report --------------------------------------------------------------------------------
def format_table(sizes: list[int], results: dict) -> str:
    header = f"{'step':<19}" + "".join(f"{f'N={n:,}':>24}" for n in sizes)
    sub = f"{'':<19}" + "".join(f"{'seconds':>12}{'peak MB':>12}" for _ in sizes)
    if len(sizes) > 1:
        growth = sizes[-1] * math.log(sizes[-1]) / (sizes[0] * math.log(sizes[0]))
        header += f"{'time ratio':>12}"
        sub += f"{f'(nlogn {growth:.1f})':>14}"
    lines = [header, sub]
    for step, title in STEPS.items():
        cells = [results.get((n, step)) for n in sizes]
        line = f"{title:<19}" + "".join(
            f"{c['seconds']:>12.2f}{c['peak_mb']:>12.0f}" if c else f"{'-':>12}{'-':>12}" for c in cells
        )
        if len(sizes) > 1 and all(cells) and cells[0]["seconds"] > 0:
            line += f"{cells[-1]['seconds'] / cells[0]['seconds']:>12.1f}"
        notes = "; ".join(c["note"] for c in cells if c)
        lines.append(f"{line}   {notes}")
    return "\n".join(lines)


def scale_part(sizes: list[int], steps: list[str], folder: Path) -> None:
    results = {}
    for n in sizes:
        root = folder / f"ws-{n}"
        for step in steps:
            results[(n, step)] = result = run_child(step, root, n)
            print(f"  N={n:,} {STEPS[step]}: {result['seconds']:.2f} s, peak {result['peak_mb']:.0f} MB ({result['note']})", flush=True)
    print()
    print(format_table(sizes, results), flush=True)


# --- Ray versus the default path ---------------------------------------------------------------
def repeated_bananas(root: Path, count: int) -> Workspace:
    """A workspace of ``count`` distinct files: the bananas photos repeated, 4 bytes appended to each."""
    from PIL import Image

    sources = sorted(BANANAS.glob("*.jpg"))
    staging = root.parent / "copies"
    staging.mkdir(parents=True)
    rows = []
    for i in range(count):
        data = sources[i % len(sources)].read_bytes() + i.to_bytes(4, "big")
        with Image.open(sources[i % len(sources)]) as image:
            width, height = image.size
        staged = staging / f"copy{i:05d}.jpg"
        staged.write_bytes(data)
        row = MetadataRow(i + 2, staged.name, f"s{i % 11}", f"2020-05-{1 + i % 28:02d}T12:00:00", None, {})
        rows.append(CheckedImage(row, sha256_hex(data), ".jpg", width, height, staged, None))
    workspace = Workspace.create(root)
    write_catalog(workspace, rows, {}, ColumnMapping("subject", "date"), IngestReport())
    return workspace


def ray_child(root: Path, engine: str) -> dict:
    if engine == "ray":
        from serieslabeler.embed import embed_with_ray

        report = embed_with_ray(Workspace.open(root), "efficientnet_lite0")
    else:
        from serieslabeler.embed import embed_workspace

        report = embed_workspace(Workspace.open(root), "efficientnet_lite0")
    return {"seconds": report.seconds, "images_per_second": report.images_per_second, "computed": report.computed}


def ray_part(count: int, folder: Path) -> None:
    from serieslabeler.store import FeatureStore

    default_root, ray_root = folder / "embed-default" / "ws", folder / "embed-ray" / "ws"
    repeated_bananas(default_root, count).copy_to(ray_root).close()
    runs = {}
    for engine, root in (("default", default_root), ("ray", ray_root)):
        command = [sys.executable, str(Path(__file__).resolve()), "--ray-step", engine, "--workspace", str(root)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"embed ({engine}) FAILED:\n{done.stderr[-3000:]}")
            return
        runs[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    with Workspace.open(default_root) as a, Workspace.open(ray_root) as b:
        ids_a, X_a = FeatureStore(a).load("efficientnet_lite0@imagenet")
        ids_b, X_b = FeatureStore(b).load("efficientnet_lite0@imagenet", ids_a)
    d, r = runs["default"], runs["ray"]
    print(f"\nembed {count} images (efficientnet_lite0, CPU):")
    print(f"  default path : {d['images_per_second']:7.1f} images/s ({d['seconds']:.1f} s, {d['computed']} computed, peak {d['peak_mb']:.0f} MB)")
    print(f"  Ray, local   : {r['images_per_second']:7.1f} images/s ({r['seconds']:.1f} s incl. starting Ray, {r['computed']} computed, driver peak {r['peak_mb']:.0f} MB)")
    print(f"  ratio Ray / default: {r['images_per_second'] / d['images_per_second']:.2f}")
    print(f"  features: {len(ids_a)} vs {len(ids_b)} images, max abs difference {np.abs(X_a - X_b).max():.3g} (vector scale: max |x| {np.abs(X_a).max():.3g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of images")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"which steps (of {', '.join(STEPS)})")
    parser.add_argument("--ray-images", type=int, default=2000, help="images for the Ray comparison (0: skip)")
    parser.add_argument("--keep", type=Path, help="keep the workspaces in this folder")
    parser.add_argument("--step", choices=list(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--ray-step", choices=["default", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step or args.ray_step:
        result = RUNNERS[args.step](args.workspace, args.n) if args.step else ray_child(args.workspace, args.ray_step)
        print(json.dumps({**result, "peak_mb": peak_rss_mb()}))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    steps = [s for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="scale-", dir=args.keep))
    try:
        if sizes and steps:
            scale_part(sizes, steps, folder)
        if args.ray_images:
            ray_part(args.ray_images, folder)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
