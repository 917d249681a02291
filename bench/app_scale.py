"""How long every app page takes at 100,000 and 1,000,000 images (server time, through AppTest).

Per size N (``--sizes``) a synthetic workspace is built once (cached under ``--cache``, reused on
the next run) with ``bench/scale.py``'s builders: N catalog rows (N / 200 subjects, a ground
truth), N x 512 float32 features, a t-SNE map (fitted on ``--map-fit`` images, the rest placed),
k-means clusterings with k=200 and k=20 (faiss), about half the images labeled (whole clusters
of the k=20 clustering, each with its most common ground truth), a head model trained on those
labels and its predictions for the other half. The build prints how long each step took
(training the head is one of them).

Then, in a fresh process per size (its peak RSS is the app process's peak memory), every page
is run through ``streamlit.testing.v1.AppTest`` on that workspace and timed (seconds of server
time per run):

- ``first``: the first render (cold caches of that process);
- ``rerender``: the same page run again with nothing changed;
- ``action``: the page's main action (see :data:`ACTIONS`; ``-`` for pages without one); the
  Label page's also gives ``action_images``, the images its click labeled;
- ``after_label``: one new label event (an image labeled through ``label_images``), then a rerun.

The Label page is opened on the open cluster (of any clustering) nearest
:data:`LABEL_CLUSTER_SIZE` images, the issue's "Label a ~5,000-image cluster", so its
``action`` compares like with like across sizes; it labels that cluster :data:`LABEL_CLICKS`
times (undoing in between, untimed): ``action_runs`` are the clicks, ``action`` their median. A Label click's time follows the cluster's
size, so the page also labels the first open cluster of the newest clustering (what the page
opens by default, 20,000 to 240,000 images at 1M with k=20): ``action_large`` and
``action_large_images``.

``--head-fit N`` first times one head fit on N synthetic labeled images (``--sizes ''``: only that).

Usage::

    .venv/bin/python bench/app_scale.py --sizes 100000,1000000 --cache /tmp/app-scale [--json]
    .venv/bin/python bench/app_scale.py --sizes '' --head-fit 1000000

``--json`` ends with one line ``{"sizes": {"100000": {"PAGE": {"first": s, "rerender": s,
"action": s, "after_label": s}}, ...}, "peak_mb": {"100000": MB}, "build": {...}}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import BLOBS, DIM, FEATURE_SET, peak_rss_mb, step_features, step_ingest  # noqa: E402

from serieslabeler.clustering import list_clusterings, run_clustering  # noqa: E402
from serieslabeler.labels import cluster_status, label_cluster, label_images, latest_event_id, undo  # noqa: E402
from serieslabeler.loop import prepare_curves  # noqa: E402
from serieslabeler.models import HeadClassifier, predict, train_model  # noqa: E402
from serieslabeler.space import create_map  # noqa: E402
from serieslabeler.store import Workspace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "dashboard" / "app_pages"
PAGES = ("home", "collection", "map", "sample", "cluster", "label", "series", "train", "metrics", "centres", "export")
CLUSTERINGS = (200, 20)
LABELED_SHARE = 0.5
MEASURES = ("first", "rerender", "action", "after_label")
LABEL_CLUSTER_SIZE = 5_000
LABEL_CLICKS = 3
TIMEOUT = 1800
LINKS_PER_FILE = 50_000


# --- building the workspace --------------------------------------------------------------------
def timed(name: str, step, *args, **kwargs):
    start = time.perf_counter()
    result = step(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"  {name}: {seconds:.1f} s", flush=True)
    return result, seconds


def label_half(workspace: Workspace, clustering_id: int) -> int:
    """Label whole clusters (largest first) with their most common ground truth until about half is labeled."""
    n = workspace.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    labeled = 0
    for row in cluster_status(workspace, clustering_id):
        if labeled >= LABELED_SHARE * n:
            break
        truth = workspace.db.execute(
            "SELECT g.label, COUNT(*) AS c FROM cluster_members m JOIN ground_truth g ON g.image_id = m.image_id "
            "WHERE m.clustering_id=? AND m.cluster=? GROUP BY g.label ORDER BY c DESC LIMIT 1",
            (clustering_id, row["cluster"]),
        ).fetchone()
        labeled += label_cluster(workspace, clustering_id, row["cluster"], truth[0], author="bench").changed
    return labeled


def placeholder_thumbnails(workspace: Workspace) -> None:
    """A small grey JPEG as every image's thumbnail (the pages show thumbnails), hard-linked; a
    new original every ``LINKS_PER_FILE`` links keeps below the file system's link limit."""
    from PIL import Image

    for i, (sha256,) in enumerate(workspace.db.execute("SELECT sha256 FROM images")):
        path = workspace.thumbnail_path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        original = workspace.thumbs_dir / f"placeholder-{i // LINKS_PER_FILE}"
        if not original.exists():
            Image.new("RGB", (96, 72), (128, 128, 128)).save(original, format="JPEG", quality=70)
        if not path.exists():
            os.link(original, path)


def build(root: Path, n: int, map_fit: int) -> dict:
    """The synthetic workspace of ``n`` images (see the module docstring); the seconds of each step."""
    seconds = {}
    _, seconds["ingest"] = timed("ingest rows", step_ingest, root, n)
    _, seconds["features"] = timed("features", step_features, root, n)
    with Workspace.open(root) as workspace:
        timed("thumbnails", placeholder_thumbnails, workspace)
        _, seconds["map"] = timed("t-SNE map", create_map, workspace, FEATURE_SET, seed=0, max_fit=map_fit)
        for k in CLUSTERINGS:
            _, seconds[f"kmeans k={k}"] = timed(
                f"kmeans k={k}", run_clustering, workspace, FEATURE_SET, "kmeans", k, seed=0, n_init=1, faiss_threshold=0
            )
        coarse = list_clusterings(workspace)[0]["id"]
        labeled, seconds["label half"] = timed("label half", label_half, workspace, coarse)
        record, seconds["train head"] = timed("train head", train_model, workspace, "head", feature_set=FEATURE_SET)
        _, seconds["predict"] = timed("predict", predict, workspace, record.id)
        _, seconds["prepare curves"] = timed("prepare curves", prepare_curves, workspace, record.id)  # as `predict` and the Train page do
    print(f"  {labeled} images labeled", flush=True)
    return seconds


def workspace_for(cache: Path, n: int, map_fit: int) -> tuple[Path, dict]:
    """The cached workspace of size ``n`` (built when missing; a half-built one is rebuilt)."""
    root, done = cache / f"ws-{n}", cache / f"ws-{n}.built.json"
    if done.is_file():
        return root, json.loads(done.read_text())
    if root.exists():
        import shutil

        shutil.rmtree(root)
    print(f"building the {n:,}-image workspace in {root}", flush=True)
    seconds = build(root, n, map_fit)
    done.write_text(json.dumps(seconds))
    return root, seconds


# --- the pages ---------------------------------------------------------------------------------
def _widget(app, kind: str, label: str):
    return next(w for w in getattr(app, kind) if w.label == label)


def _next_option(app, label: str) -> None:
    widget = _widget(app, "selectbox", label)
    widget.select_index(1 if len(widget.options) > 1 else 0)


def act_map(app) -> None:
    _widget(app, "radio", "Color by").set_value("label")


def act_cluster(app) -> None:
    _next_option(app, "Clustering")


def open_cluster_near(root: Path, size: int) -> tuple[int, int]:
    """(clustering, cluster) of the open cluster whose size is nearest ``size`` images."""
    with Workspace.open(root) as workspace:
        return min(
            ((c["id"], row["cluster"], row["size"]) for c in list_clusterings(workspace)
             for row in cluster_status(workspace, c["id"]) if row["state"] == "open"),
            key=lambda found: abs(found[2] - size),
        )[:2]


def act_label(app) -> int:
    """Pick a label (an untimed run: the button stays disabled until one is chosen), then click
    "Label N images"; returns N (the action's time follows the cluster's size)."""
    _widget(app, "selectbox", "Label").select_index(0)
    app.run()
    button = next(b for b in app.button if b.label.startswith("Label "))
    button.click()
    return int(button.label.split()[1])


def act_series(app) -> None:
    _next_option(app, "Series")


def act_train(app) -> None:
    _widget(app, "slider", "Target precision").set_value(0.9)


ACTIONS = {
    "map": act_map,
    "cluster": act_cluster,
    "label": act_label,
    "series": act_series,
    "train": act_train,
}


def timed_run(app) -> float:
    """Seconds of one run of the page (its server time through AppTest)."""
    start = time.perf_counter()
    app.run()
    return time.perf_counter() - start


def problems_of(app) -> list[str]:
    """The exceptions and error messages the page's last run showed."""
    return [e.message for e in app.exception] + [e.value for e in app.error]


def measure_page(root: Path, page: str, unlabeled: list[int]) -> dict:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(PAGES_DIR / f"{page}.py"), default_timeout=TIMEOUT)
    app.query_params["ws"] = str(root)
    if page == "label":
        before = latest_event(root)
        clustering, cluster = open_cluster_near(root, LABEL_CLUSTER_SIZE)
        app.query_params["clustering"], app.query_params["cluster"] = str(clustering), str(cluster)
    times = {"first": timed_run(app)}
    problems = problems_of(app)
    times["rerender"] = timed_run(app)
    times["action"] = None
    if page in ACTIONS:
        images = ACTIONS[page](app)
        times["action"] = timed_run(app)
        if images is not None:
            times["action_images"] = images
        problems += problems_of(app)
    if page == "label":
        times["action_runs"] = [times["action"], *label_again(app, root, before, clustering, cluster)]
        times["action"] = statistics.median(times["action_runs"])
        problems += problems_of(app)
    with Workspace.open(root) as workspace:
        label_images(workspace, [unlabeled.pop()], "U", author="bench")
    times["after_label"] = timed_run(app)
    problems += problems_of(app)
    if page == "label":
        times.update(label_large_cluster(app))
        problems += problems_of(app)
        undo_cluster_labels(root, before)
    if problems:
        print(f"  {page}: {problems[0][:300]}", file=sys.stderr, flush=True)
    return times


def latest_event(root: Path) -> int:
    with Workspace.open(root) as workspace:
        return latest_event_id(workspace)


def undo_cluster_labels(root: Path, after: int) -> None:
    """Undo the clusters the Label page's clicks labeled (events after ``after``, newest first), so
    every run finds the workspace as it was built and times the same clusters."""
    with Workspace.open(root) as workspace:
        clicks = workspace.db.execute(
            "SELECT author FROM label_events e WHERE id > ? AND action = 'label_cluster' "
            "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.reverses = e.id) ORDER BY id DESC", (after,)
        ).fetchall()
        for (author,) in clicks:
            undo(workspace, author=author)


def label_again(app, root: Path, before: int, clustering: int, cluster: int) -> list[float]:
    """Undo the click, open the cluster again and time labeling it, ``LABEL_CLICKS - 1`` more
    times (one click is one sample of a noisy machine: ``action`` is the median)."""
    runs = []
    for _ in range(LABEL_CLICKS - 1):
        undo_cluster_labels(root, before)
        app.query_params.pop("x", None)
        app.query_params["clustering"], app.query_params["cluster"] = str(clustering), str(cluster)
        app.run()
        act_label(app)
        runs.append(timed_run(app))
    return runs


def label_large_cluster(app) -> dict:
    """Open the newest clustering's first open cluster (an untimed run), then time labeling it."""
    for key in ("clustering", "cluster", "x"):
        app.query_params.pop(key, None)
    app.run()
    images = act_label(app)
    return {"action_large": timed_run(app), "action_large_images": images}


def measure_all(root: Path, pages: list[str]) -> dict:
    """Every page timed in this process (a child of ``main``); the peak RSS is this process's."""
    logging.getLogger("streamlit").setLevel(logging.CRITICAL)
    os.environ["LABELER_ROOT"] = str(root.parent)  # the app serves only workspaces under its root
    with Workspace.open(root) as workspace:
        unlabeled = [r[0] for r in workspace.db.execute(
            "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM current_labels) ORDER BY id DESC LIMIT 100"
        )]
    results = {}
    for page in pages:
        results[page] = measure_page(root, page, unlabeled)
        cells = "  ".join(f"{m} {_cell(results[page][m]).strip()}" for m in MEASURES)
        print(f"  {page}: {cells}", file=sys.stderr, flush=True)
    return {"pages": results, "peak_mb": peak_rss_mb()}


def _cell(value) -> str:
    return f"{'-':>12}" if value is None else f"{value:>12.2f}"


def format_table(sizes: list[int], results: dict, peaks: dict) -> str:
    lines = []
    for n in sizes:
        lines.append(f"N={n:,} (app process peak {peaks[n]:.0f} MB)")
        lines.append(f"{'page':<12}" + "".join(f"{m:>12}" for m in MEASURES))
        for page, times in results[n].items():
            lines.append(f"{page:<12}" + "".join(_cell(times[m]) for m in MEASURES))
        lines += [f"  {page} action: {times['action_images']:,} images" + (
            f" (median of {', '.join(f'{t:.2f}' for t in times['action_runs'])} s)" if "action_runs" in times else ""
        ) for page, times in results[n].items() if "action_images" in times]
        lines += [f"  {page} action on the newest clustering's first open cluster: {times['action_large']:.2f} s, {times['action_large_images']:,} images"
                  for page, times in results[n].items() if "action_large" in times]
    return "\n".join(lines)


def head_fit_seconds(n: int) -> dict:
    """One head fit (default parameters) on ``n`` synthetic 512-d vectors with 4 classes (each
    blob's class: its number mod 4), as the Train page's model and each of its folds is fitted."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(BLOBS, DIM))
    blob = rng.integers(0, BLOBS, n)
    X = (centres[blob] + rng.normal(size=(n, DIM))).astype(np.float32)
    y = np.array(list("URVO"))[blob % 4]
    start = time.perf_counter()
    head = HeadClassifier().fit(X, y)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "train_accuracy": float((head.predict(X[:100_000]) == y[:100_000]).mean()), "peak_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of images")
    parser.add_argument("--cache", type=Path, default=Path("app-scale-cache"), help="folder keeping the built workspaces between runs")
    parser.add_argument("--pages", default=",".join(PAGES), help=f"which pages (of {', '.join(PAGES)})")
    parser.add_argument("--map-fit", type=int, default=10_000, help="images the t-SNE map is fitted on (the rest are placed)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--head-fit", type=int, default=0, help="also time one head fit on this many synthetic labeled images (0: skip)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pages = [p for p in args.pages.split(",") if p.strip()]
    if args.head_fit:
        fit = head_fit_seconds(args.head_fit)
        print(f"head fit on {args.head_fit:,} labeled images x {DIM}: {fit['seconds']:.1f} s "
              f"(training accuracy {fit['train_accuracy']:.3f}, peak {fit['peak_mb']:.0f} MB)", flush=True)
        if not args.sizes:
            return
    if args.measure:
        print(json.dumps(measure_all(args.measure, pages)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.cache.mkdir(parents=True, exist_ok=True)
    results, peaks, builds = {}, {}, {}
    for n in sizes:
        root, builds[n] = workspace_for(args.cache, n, args.map_fit)
        print(f"measuring the pages at N={n:,}", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--measure", str(root), "--cache", str(args.cache), "--pages", ",".join(pages)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"measuring N={n} failed (exit {done.returncode})")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        results[n], peaks[n] = measured["pages"], measured["peak_mb"]
    print()
    print(format_table(sizes, results, peaks))
    if args.json:
        print(json.dumps({
            "sizes": {str(n): results[n] for n in sizes},
            "peak_mb": {str(n): peaks[n] for n in sizes},
            "build": {str(n): builds[n] for n in sizes},
        }))


if __name__ == "__main__":
    main()
