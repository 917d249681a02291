"""How long do labeling actions take on a large cluster? Prints seconds per action.

Makes a temporary workspace whose catalog holds ``--images`` image rows (catalog rows only: no
image files, which labeling never reads) and one clustering of them with ``--clusters`` equal
clusters and random distances, then times, on the largest cluster: labeling it with 100
exclusions, undo, redo, a rename of the label (every image's current label follows), accepting
pending pseudo-labels for all images by class, the CSV export, and replaying the whole log.

Usage::

    .venv/bin/python bench/labeling_scale.py [--images 200000] [--clusters 2]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from serieslabeler import labels
from serieslabeler.export import export_labels
from serieslabeler.store import Workspace

ROOT = Path(__file__).resolve().parent.parent


def synthetic_workspace(root: Path, images: int, clusters: int, seed: int = 0) -> Workspace:
    rng = np.random.default_rng(seed)
    ws = Workspace.create(root)
    with ws.transaction() as db:
        db.execute("INSERT INTO subjects(name) VALUES ('s1')")
        db.executemany(
            "INSERT INTO images(sha256, file_name, ext, width, height, subject_id, taken_at) VALUES (?,?,?,?,?,?,?)",
            ((f"{i:064x}", f"img{i}.jpg", ".jpg", 1, 1, 1, "2020-01-01T00:00:00") for i in range(1, images + 1)),
        )
        sizes = json.dumps({c: int(n) for c, n in enumerate(np.bincount(np.arange(1, images + 1) % clusters, minlength=clusters))})
        db.execute(
            "INSERT INTO clusterings(feature_set, algorithm, k, space, params, images, sizes) VALUES ('synthetic', 'none', ?, 'full', '{}', ?, ?)",
            (clusters, images, sizes),
        )
        db.executemany(
            "INSERT INTO cluster_members(clustering_id, image_id, cluster, distance) VALUES (1, ?, ?, ?)",
            ((i, i % clusters, float(d)) for i, d in zip(range(1, images + 1), rng.gamma(2.0, 1.0, images))),
        )
    return ws


def timed(name: str, action) -> None:
    start = time.perf_counter()
    result = action()
    changed = getattr(result, "changed", None)
    extra = f" ({changed} images)" if changed is not None else ""
    print(f"{name:<40} {time.perf_counter() - start:8.2f} s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--clusters", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = synthetic_workspace(Path(tmp) / "ws", args.images, args.clusters)
        ids = labels.cluster_members(ws, 1, 0)[0]
        print(f"{args.images} images, cluster 0 holds {len(ids)}")
        timed("label_cluster (100 excluded)", lambda: labels.label_cluster(ws, 1, 0, "Arm", excluded=ids[:100]))
        timed("undo", lambda: labels.undo(ws)[0])
        timed("redo", lambda: labels.redo(ws))
        timed("rename_label", lambda: labels.rename_label(ws, "Arm", "Upper limb"))
        others = labels.cluster_members(ws, 1, 1)[0]
        timed("add_pseudo_labels (other cluster)", lambda: labels.add_pseudo_labels(ws, others, ["Head"] * len(others), np.full(len(others), 0.9), model_id=1))
        timed("accept_pseudo (by class)", lambda: labels.accept_pseudo(ws, label="Head"))
        timed("review_order (atypical)", lambda: labels.review_order(ws, 1, 0))
        timed("cluster_status", lambda: labels.cluster_status(ws, 1))
        timed("export csv", lambda: export_labels(ws, "csv", Path(tmp) / "labels.csv"))
        timed("replay_labels (whole log)", lambda: labels.replay_labels(ws))
        timed("current_labels", lambda: labels.current_labels(ws))
        ws.close()


if __name__ == "__main__":
    main()
