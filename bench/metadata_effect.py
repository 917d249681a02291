"""Does appending metadata help clustering? Bananas, EfficientNet-Lite0 features, ripeness as truth.

Prints two tables:

1. k-means and agglomerative (ward), k = 4 (the four ripeness stages U/R/V/O), on the image
   features alone and with ``day`` (days since the first photo), ``group`` (fridge or
   basement) or both appended at a few weights (a weight is the field's share of the total
   variance): purity, Hungarian-matched accuracy, adjusted Rand index, NMI;
2. samples of equal size drawn by the ``subjects`` strategy (3 fruits, all 20 days: 60 images)
   and by ``random`` (60 images), each over several seeds, clustered the same way: mean and
   standard deviation of the same scores.

Usage::

    .venv/bin/python bench/metadata_effect.py [--workspace DIR] [--seeds 10]

Without ``--workspace`` a temporary workspace is made (ingest + embedding: about a minute on
two CPU cores); with it, an existing bananas workspace is reused (and embedded if needed).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from serieslabeler.clustering import (
    evaluate_clustering,
    run_clustering,
)
from serieslabeler.demo import SAMPLE_MAPPING
from serieslabeler.embed import embed_workspace
from serieslabeler.ingest import ingest
from serieslabeler.sampling import draw_sample
from serieslabeler.store import Workspace

ROOT = Path(__file__).resolve().parent.parent

BANANAS = ROOT / "tests" / "data" / "bananas"
MAPPING = SAMPLE_MAPPING  # the bundled sample's columns: the full collection has the same
FEATURES = "efficientnet_lite0@imagenet"
K = 4
ALGORITHMS = {"kmeans": {}, "agglomerative": {"linkage": "ward"}}
METADATA = [
    {},
    {"day": 0.1},
    {"day": 0.3},
    {"day": 0.5},
    {"day": 0.7},
    {"day": 0.9},
    {"group": 0.1},
    {"group": 0.3},
    {"day": 0.3, "group": 0.1},
    {"day": 0.5, "group": 0.2},
]
SCORES = ("purity", "hungarian_accuracy", "adjusted_rand", "nmi")


def prepare(folder: Path) -> Workspace:
    workspace = Workspace.create(folder)
    if workspace.image_count() == 0:
        ingest(workspace, BANANAS / "images", BANANAS / "metadata.csv", MAPPING)
    report = embed_workspace(workspace, "efficientnet_lite0")
    print(f"# {workspace.image_count()} images; {report.feature_set}: {report.computed} embedded, {report.cached} cached")
    return workspace


def scores(workspace: Workspace, algorithm: str, metadata: dict, image_ids=None, seed: int = 0) -> dict:
    clustering = run_clustering(
        workspace, FEATURES, algorithm, K, metadata=metadata, image_ids=image_ids, seed=seed, **ALGORITHMS[algorithm]
    )
    evaluation = evaluate_clustering(workspace, clustering.id, with_silhouette=False)
    return {name: getattr(evaluation, name) for name in SCORES}


def describe(metadata: dict) -> str:
    return ", ".join(f"{name}={weight}" for name, weight in metadata.items()) or "none"


def metadata_table(workspace: Workspace) -> None:
    print(f"\n## All 220 images, k={K}")
    print("| algorithm     | metadata appended  | purity | Hungarian acc. | ARI   | NMI   |")
    print("|---------------|--------------------|--------|----------------|-------|-------|")
    for algorithm in ALGORITHMS:
        for metadata in METADATA:
            row = scores(workspace, algorithm, metadata)
            print(
                f"| {algorithm:13s} | {describe(metadata):18s} | {row['purity']:.3f}  | {row['hungarian_accuracy']:.3f}"
                f"          | {row['adjusted_rand']:.3f} | {row['nmi']:.3f} |"
            )


def sampling_table(workspace: Workspace, seeds: int) -> None:
    size = draw_sample(workspace, "subjects", subjects=3, seed=0).size
    print(f"\n## Samples of {size} images (subjects: 3 fruits x 20 days; random: {size} images), k={K}, {seeds} seeds")
    print("| strategy | algorithm     | metadata | purity        | Hungarian acc. | ARI           |")
    print("|----------|---------------|----------|---------------|----------------|---------------|")
    for metadata in ({}, {"day": 0.3}):
        for algorithm in ALGORITHMS:
            for strategy, amount in (("subjects", {"subjects": 3}), ("random", {"size": size})):
                rows = [
                    scores(workspace, algorithm, metadata, draw_sample(workspace, strategy, seed=seed, **amount).image_ids, seed)
                    for seed in range(seeds)
                ]
                cells = [
                    f"{np.mean([r[name] for r in rows]):.3f} ± {np.std([r[name] for r in rows]):.3f}"
                    for name in ("purity", "hungarian_accuracy", "adjusted_rand")
                ]
                print(f"| {strategy:8s} | {algorithm:13s} | {describe(metadata):8s} | {cells[0]} | {cells[1]}  | {cells[2]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="a bananas workspace to reuse (made if missing)")
    parser.add_argument("--seeds", type=int, default=10, help="samples per strategy")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        workspace = prepare(Path(args.workspace or Path(scratch) / "ws"))
        metadata_table(workspace)
        sampling_table(workspace, args.seeds)
        workspace.close()
    print(f"\n# {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
