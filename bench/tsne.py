"""The project's map step versus openTSNE called directly on the same matrix: overhead ratio.

A workspace with ``--points`` images (catalog rows only) and a registered 50-dimensional
feature set (10 Gaussian blobs) is made; then

- *project*: ``serieslabeler.space.reduce.create_map`` (load the features, build the matrix, PCA,
  openTSNE, write the coordinates and the pickled model, record the map);
- *direct*: ``openTSNE.TSNE(...).fit`` on the matrix the project step mapped, with the same
  perplexity, iterations, gradient method, threads and seed;

and the ratio project / direct is printed (target <= 1.1 on 20,000 points).

Usage::

    .venv/bin/python bench/tsne.py [--points 5000] [--jobs -1]   # the issue's figure: --points 20000
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from serieslabeler.space import (
    build_matrix,
    create_map,
)
from serieslabeler.store import (
    FeatureStore,
    Workspace,
)

ROOT = Path(__file__).resolve().parent.parent

DIM = 50


def synthetic_workspace(workspace: Workspace, points: int, seed: int = 0) -> str:
    """``points`` catalog images over 100 subjects with blob features; returns the set name."""
    from sklearn.datasets import make_blobs

    with workspace.transaction() as db:
        db.executemany("INSERT INTO subjects(name) VALUES (?)", [(f"s{i}",) for i in range(100)])
        db.executemany(
            "INSERT INTO images(sha256, file_name, ext, width, height, subject_id, taken_at) VALUES (?,?,?,?,?,?,?)",
            [(f"{n:064x}", f"{n}.jpg", ".jpg", 1, 1, 1 + n % 100, f"2020-01-{1 + n % 28:02d}T12:00:00") for n in range(points)],
        )
    X, _ = make_blobs(points, DIM, centers=10, random_state=seed)
    store = FeatureStore(workspace)
    name = "synthetic@blobs"
    store.register(name, "synthetic", "blobs", DIM)
    store.append(name, np.arange(1, points + 1), X.astype(np.float32))
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=-1)
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, interleaved; the best counts")
    args = parser.parse_args()
    from openTSNE import TSNE

    with tempfile.TemporaryDirectory(prefix="bench-tsne-") as folder, Workspace.create(Path(folder) / "ws") as workspace:
        name = synthetic_workspace(workspace, args.points)

        X = build_matrix(workspace, name).X
        project, direct = [], []
        for _ in range(args.repeats):  # interleaved, best of each: a shared machine's load drifts
            start, cpu = time.perf_counter(), time.process_time()
            saved = create_map(workspace, name, perplexity=args.perplexity, seed=0, n_jobs=args.jobs)
            project.append((time.perf_counter() - start, time.process_time() - cpu))
            method = saved.params["negative_gradient_method"]
            start, cpu = time.perf_counter(), time.process_time()
            TSNE(perplexity=args.perplexity, n_jobs=args.jobs, random_state=0, negative_gradient_method=method).fit(X)
            direct.append((time.perf_counter() - start, time.process_time() - cpu))
        (project_wall, project_cpu), (direct_wall, direct_cpu) = min(project), min(direct)
        print(f"project map step: {project_wall:7.1f} s wall, {project_cpu:7.1f} s CPU for {len(saved.ids)} points "
              f"({method} gradients, n_jobs={args.jobs}, best of {args.repeats})")
        print(f"openTSNE direct:  {direct_wall:7.1f} s wall, {direct_cpu:7.1f} s CPU on the same {X.shape[0]} x {X.shape[1]} matrix")
        print(f"overhead ratio project / direct: {project_wall / direct_wall:.2f} wall, "
              f"{project_cpu / direct_cpu:.2f} CPU (target <= 1.1)")


if __name__ == "__main__":
    main()
