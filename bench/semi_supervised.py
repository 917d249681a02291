"""Semi-supervised modes against the plain head, at the same labeling effort.

    .venv/bin/python bench/semi_supervised.py [--workspace DIR] [--seeds 3] [--device auto] [--data both]

Two collections:

- *bananas* (220 photos, 11 subjects, ripeness U/R/V/O): EfficientNet-Lite0 ImageNet features
  (``serieslabeler.embed.local``); the test set is a quarter of the subjects (GroupShuffleSplit), so no
  banana is on both sides. ``--workspace`` keeps the ingested, embedded workspace between runs.
- *digits* (scikit-learn's 8x8 digits, the 64 pixel values as features; the first
  ``--digits-size`` of the 1797, to keep a CPU run short): it has no subjects, so its split is
  random and its figures are optimistic by that measure.

At a budget of ``n`` expert interactions:

- ``head``: logistic regression (``serieslabeler.models.predictions.HeadClassifier``) on ``n`` labeled images;
- ``overcluster``: FOC on the same ``n`` labeled images plus the unlabeled training images;
  ``consistency`` is that of its overclusters on the *test* images against their true labels,
  next to k-means with the same k on the same features (``kmeans_consistency``);
- ``vae``: the VAE pretrained on the training images, its latents cut into ``n`` k-means
  clusters, each centre named by an oracle (the majority true label of its members, with the
  majority share as confidence p_c): ``n`` interactions label every training image, weighted
  ``p_c exp(-a d)``.

Scores are test macro F1 and top-1 accuracy, mean +- standard deviation over ``--seeds``
splits; seconds are wall time of one training on this machine, and with a GPU the time per
epoch is printed as well.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from serieslabeler.metrics import classification_report
from serieslabeler.models import (
    CentreDecision,
    FuzzyOvercluster,
    HeadClassifier,
    LatentVAE,
    centre_training_labels,
    cluster_latents,
    consistency,
)

ROOT = Path(__file__).resolve().parent.parent

BANANAS = ROOT / "tests" / "data" / "bananas"


def bananas(workspace_dir: Path):
    """``(X, y, subjects)``: EfficientNet-Lite0 features of the bananas, ingested and embedded once."""
    from serieslabeler.demo import SAMPLE_MAPPING
    from serieslabeler.embed import embed_workspace
    from serieslabeler.ingest import ingest
    from serieslabeler.models import image_subjects
    from serieslabeler.store import FeatureStore, Workspace

    workspace = Workspace.create(workspace_dir)
    if workspace.image_count() == 0:
        ingest(workspace, BANANAS / "images", BANANAS / "metadata.csv", SAMPLE_MAPPING)
    report = embed_workspace(workspace, "efficientnet_lite0", device="cpu")
    ids, X = FeatureStore(workspace).load(report.feature_set)
    truth = dict(workspace.db.execute("SELECT image_id, label FROM ground_truth").fetchall())
    return X, np.array([truth[int(i)] for i in ids]), image_subjects(workspace, ids)


def digits(size: int):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:size], y[:size]
    return X.astype(np.float32), y.astype(str), np.arange(len(y))


def split(subjects: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from serieslabeler.models import grouped_split

    parts = grouped_split(subjects, 0.25, seed)
    return parts.train, parts.test


def scores(y_true, classes, proba) -> tuple[float, float]:
    classes = np.asarray(classes).astype(str)
    report = classification_report(y_true, classes[proba.argmax(axis=1)], None, proba, classes)
    return report.macro_f1, report.top1


def pick_labeled(y: np.ndarray, train: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random training images, at least one per class while ``n`` allows (an expert would)."""
    classes = np.unique(y[train])
    first = [rng.choice(train[y[train] == c]) for c in rng.permutation(classes)[: min(n, len(classes))]]
    rest = rng.choice(np.setdiff1d(train, first), n - len(first), replace=False)
    return np.concatenate([first, rest]).astype(np.int64)


def run_head(X, y, train, test, labeled, seed, device):
    model = HeadClassifier(random_state=seed).fit(X[labeled], y[labeled])
    return {"scores": scores(y[test], model.classes_, model.predict_proba(X[test]))}


def run_overcluster(X, y, train, test, labeled, seed, device):
    from serieslabeler.clustering import fit_clusters

    partial = np.full(len(train), None, dtype=object)
    partial[np.isin(train, labeled)] = y[train][np.isin(train, labeled)]
    model = FuzzyOvercluster(random_state=seed, device=device).fit(X[train], partial)
    clusters, _ = model.predict_clusters(X[test])
    kmeans, _ = fit_clusters((X - X[train].mean(0)) / (X[train].std(0) + 1e-6), "kmeans", model.n_overclusters_, seed)
    return {
        "scores": scores(y[test], model.classes_, model.predict_proba(X[test])),
        "consistency": consistency(clusters, y[test]),
        "kmeans_consistency": consistency(kmeans[test], y[test]),
        "epochs": model.epochs,
    }


def run_vae(X, y, train, test, n, seed, device):
    model = LatentVAE(random_state=seed, device=device).fit_unsupervised(X[train])
    clusters = cluster_latents(model.transform(X[train]), k=n, random_state=seed)
    decisions = {}
    for c in range(clusters.k):
        labels, counts = np.unique(y[train][clusters.assignments == c], return_counts=True)
        decisions[c] = CentreDecision(labels[counts.argmax()], counts.max() / counts.sum())
    rows, labels, weights = centre_training_labels(clusters, decisions)
    partial = np.full(len(train), None, dtype=object)
    partial[rows] = labels
    sample_weight = np.zeros(len(train))
    sample_weight[rows] = weights
    if len(np.unique(labels)) < 2:
        return {"scores": (float("nan"), float("nan")), "note": "oracle named every centre alike"}
    model.fit_labeled(X[train], partial, sample_weight)
    return {"scores": scores(y[test], model.classes_, model.predict_proba(X[test])), "epochs": model.pretrain_epochs + model.epochs}


METHODS = {"head": run_head, "overcluster": run_overcluster, "vae": run_vae}


def bench(name: str, X, y, subjects, budgets, seeds: int, device: str) -> list[dict]:
    rows = []
    for n in budgets:
        for method, run in METHODS.items():
            results, seconds = [], []
            for seed in range(seeds):
                train, test = split(subjects, seed)
                labeled = pick_labeled(y, train, n, np.random.default_rng(seed))
                start = time.perf_counter()
                results.append(run(X, y, train, test, n if method == "vae" else labeled, seed, device))
                seconds.append(time.perf_counter() - start)
            rows.append(summarize(name, method, n, results, seconds))
            print(format_row(rows[-1]), flush=True)
    return rows


def summarize(name, method, n, results, seconds) -> dict:
    f1 = np.array([r["scores"][0] for r in results])
    top1 = np.array([r["scores"][1] for r in results])
    row = {"data": name, "method": method, "n": n, "f1": f1, "top1": top1, "seconds": float(np.mean(seconds))}
    for key in ("consistency", "kmeans_consistency"):
        if key in results[0]:
            row[key] = np.array([r[key] for r in results])
    if "epochs" in results[0]:
        row["epoch_seconds"] = row["seconds"] / results[0]["epochs"]
    return row


def mean_std(values) -> str:
    return f"{np.nanmean(values):.3f}+-{np.nanstd(values):.3f}"


HEADER = f"{'data':8} {'method':12} {'n':>4}  {'macro F1':>12}  {'top-1':>12}  {'consistency':>12}  {'k-means cons.':>13}  {'s/run':>6}"


def format_row(row: dict) -> str:
    cons = mean_std(row["consistency"]) if "consistency" in row else ""
    kmeans = mean_std(row["kmeans_consistency"]) if "kmeans_consistency" in row else ""
    return (
        f"{row['data']:8} {row['method']:12} {row['n']:>4}  {mean_std(row['f1']):>12}  {mean_std(row['top1']):>12}  "
        f"{cons:>12}  {kmeans:>13}  {row['seconds']:6.1f}"
    )


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="bananas workspace to create or reuse (default: a temporary folder)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", choices=("bananas", "digits", "both"), default="both")
    parser.add_argument("--digits-size", type=int, default=600)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda: {torch.cuda.is_available()}")
    print(HEADER)
    rows = []
    if args.data in ("bananas", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            X, y, subjects = bananas(Path(args.workspace) if args.workspace else Path(tmp) / "bananas")
        rows += bench("bananas", X, y, subjects, (8, 20, 40), args.seeds, args.device)
    if args.data in ("digits", "both"):
        X, y, subjects = digits(args.digits_size)
        rows += bench("digits", X, y, subjects, (20, 50, 100), args.seeds, args.device)
    if torch.cuda.is_available():
        for row in rows:
            if "epoch_seconds" in row:
                print(f"{row['data']} {row['method']} n={row['n']}: {row['epoch_seconds'] * 1000:.1f} ms per epoch on the GPU")


if __name__ == "__main__":
    main()
