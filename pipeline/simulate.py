"""Oracle-driven runs that measure labeling effort honestly.

An :class:`Oracle` plays the expert with the ground truth of the images it may see (never the
held-out test images: asking it about one raises). Shown a cluster, it names the cluster's modal
class if that class holds at least ``purity`` of it and clicks out the other images (1
interaction for the cluster + 1 per image clicked out), or skips the cluster (1 interaction);
shown single images, it labels each (1 interaction each). These are the costs the labeling log
(:mod:`pipeline.labels`) records for the same actions.

Each run splits the collection by subject into a pool and a test set (GroupShuffleSplit), then
spends interactions on the pool according to a *scenario*, and whenever ``chunk`` more
interactions have been spent (checked after each cluster or image) fits the same head
classifier as the real loop on the labels so far and scores it on the test set. The scenarios (after "Weakly supervised active learning with
cluster annotation", plus this project's loop):

- ``random``: single images drawn at random;
- ``uncertain-only``: single images, the most uncertain (entropy) first (a random batch first);
- ``cluster-only``: the unlabeled pool clustered (k = pool / ``cluster_size``), clusters shown
  largest first; when all were shown, what is left is clustered again;
- ``uncertain+cluster``: the ``cluster_batch`` most uncertain images clustered and shown;
- ``cluster+uncertain``: one ``cluster-only`` pass, then ``uncertain-only``;
- ``overcluster``: random batches of ``cluster_batch`` images clustered and shown until two
  classes are labeled; then each pass fits :class:`pipeline.overcluster.FuzzyOvercluster` (the
  training mode ``overcluster``: ``overcluster_factor`` x classes overclusters) on the labels so
  far plus the unlabeled pool and shows the overclusters of the unlabeled images like clusters;
- ``vae``: :class:`pipeline.vae.LatentVAE` pretrained on the pool, its latents clustered
  (k = pool / ``cluster_size``); the oracle names each centre from the centre alone (1
  interaction, nothing clicked out; confidence p_c = the modal share), or, below ``purity``,
  asks for a split (1 interaction; :func:`pipeline.vae.split_latent_cluster`, both halves shown
  next); members get ``p_c exp(-a d)``; the classifier evaluated is the VAE's own head
  (:meth:`~pipeline.vae.LatentVAE.fit_labeled` on those labels), not the head classifier;
- ``full``: structure-aware samples (whole subjects, :func:`pipeline.sampling.pick_subjects`),
  clustered with the ``days`` metadata appended at ``metadata_weight``
  (:class:`pipeline.features.MetadataAppender`); after each pass the model predicts the
  unlabeled pool and :func:`pipeline.loop.route_mask` sends predictions at or above the
  threshold that reaches ``target_precision`` (tuned on the labels so far,
  :mod:`pipeline.threshold`) to pseudo-labels, which the oracle reviews one class at a time like
  a cluster (accept, clicking out the wrong ones; or reject), and the rest to the next
  structure-aware sample to cluster.

Everything runs in memory on arrays (features, subjects, days, truth), with the library's own
clustering (:func:`pipeline.cluster.fit_clusters`), label confidences
(:func:`pipeline.labels.cluster_confidences`), metadata weighting, classifier and routing.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import PipelineError
from .progress import Progress

SCENARIOS = ("random", "uncertain-only", "cluster-only", "uncertain+cluster", "cluster+uncertain", "full", "overcluster", "vae")
# the scenarios that train a network (issue 9): slower, on a CPU seconds per pass
NETWORK_SCENARIOS = ("overcluster", "vae")
REACH = 0.95


# --- the oracle -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterAnswer:
    """The oracle's decision on a cluster: its label (None: skipped), the images clicked out, the cost."""

    label: str | None
    excluded: np.ndarray
    interactions: int


@dataclass(frozen=True)
class CentreAnswer:
    """The oracle's decision on a centre it sees alone: its label and confidence (None: split it)."""

    label: str | None
    confidence: float
    interactions: int = 1


class Oracle:
    """The expert, played by the ground truth of ``image_ids`` (and only those)."""

    def __init__(self, image_ids, labels, purity: float = 0.8):
        if not 0.0 < purity <= 1.0:
            raise PipelineError(f"oracle purity must be in (0, 1], not {purity}")
        self._truth = {int(i): str(v) for i, v in zip(image_ids, labels)}
        self.purity = purity
        self.asked: set[int] = set()

    def _look(self, image_ids) -> list[str]:
        labels = []
        for i in image_ids:
            i = int(i)
            if i not in self._truth:
                raise PipelineError(f"the oracle was asked about image {i}, whose label it may not see (a held-out test image?)")
            self.asked.add(i)
            labels.append(self._truth[i])
        return labels

    def answer_cluster(self, image_ids) -> ClusterAnswer:
        """The modal class if it holds at least ``purity`` of the cluster (misfits clicked out), else skip."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        labels = np.asarray(self._look(image_ids))
        label, share = _modal(labels)
        if share < self.purity:
            return ClusterAnswer(None, np.zeros(0, dtype=np.int64), 1)
        excluded = image_ids[labels != label]
        return ClusterAnswer(label, excluded, 1 + len(excluded))

    def answer_centre(self, image_ids) -> CentreAnswer:
        """A cluster judged from its (decoded) centre alone: the modal class with its share as the
        confidence, or a request to split when that share is under ``purity`` (1 interaction)."""
        label, share = _modal(np.asarray(self._look(image_ids)))
        return CentreAnswer(label if share >= self.purity else None, share)

    def answer_images(self, image_ids) -> np.ndarray:
        """The label of each image (1 interaction each)."""
        return np.asarray(self._look(image_ids))


def _modal(labels: np.ndarray) -> tuple[str, float]:
    """The most frequent label (ties: the first in sort order) and its share."""
    counts = Counter(labels.tolist())
    label, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return label, count / len(labels)


# --- the collection and the settings ----------------------------------------------------------
@dataclass
class Collection:
    """Arrays for one labeled collection: features, ground truth, subjects, days since first image."""

    name: str
    X: np.ndarray
    truth: np.ndarray
    subjects: np.ndarray
    days: np.ndarray | None = None
    note: str = ""

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float32)
        self.truth = np.asarray([str(v) for v in self.truth])
        self.subjects = np.asarray(self.subjects)
        n = len(self.X)
        if not (len(self.truth) == len(self.subjects) == n and (self.days is None or len(self.days) == n)):
            raise PipelineError(f"collection '{self.name}': features, truth, subjects and days must have one row per image")

    @classmethod
    def from_workspace(cls, workspace, feature_set: str) -> "Collection":
        """The ground-truth images of a workspace with their vectors of ``feature_set``."""
        from .features import metadata_frame
        from .loop import ground_truth
        from .store import FeatureStore
        from .train import ensure_features

        name = FeatureStore(workspace).resolve(feature_set)
        ids, truth, subjects = ground_truth(workspace)
        ensure_features(workspace, name, ids)
        _, X = FeatureStore(workspace).load(name, ids)
        days = metadata_frame(workspace, ids, ["days"])["days"].to_numpy(dtype=float)
        return cls(f"{workspace.root.name} ({name})", X, truth, subjects, days)


@dataclass
class SimulationConfig:
    """Settings of a simulation.

    ``purity``: the oracle's least share of the modal class to label a cluster; ``cluster_size``:
    images per cluster (k = images / size); ``cluster_batch``: images per clustered batch
    (uncertain+cluster, and the structure-aware samples of full); ``batch``: images per batch of
    single-image labeling; ``chunk``: interactions between two evaluations; ``budget``: stop
    after this many interactions per pool image; ``test_size``: share of subjects held out;
    ``metadata_weight``: share of variance of ``days`` when the full loop clusters;
    ``target_precision``: the full loop's routing threshold reaches this on its labels;
    ``review_pseudo``: the oracle reviews pseudo-labels (else they stay pending, unused);
    ``C``: the head classifier's regularization; ``a``: distance weight of cluster-label confidence;
    ``network_epochs``: training epochs of the networks of ``overcluster`` and ``vae`` (per fit:
    each ``overcluster`` pass, the ``vae`` pretraining and each of its labeled fits);
    ``overcluster_factor``: overclusters per labeled class.
    """

    purity: float = 0.8
    cluster_size: int = 10
    cluster_batch: int = 60
    batch: int = 20
    chunk: int = 5
    budget: float = 0.5
    test_size: float = 0.25
    algorithm: str = "kmeans"
    metadata_weight: float = 0.5
    target_precision: float = 0.95
    review_pseudo: bool = True
    C: float = 0.1
    a: float = 1.0
    network_epochs: int = 10
    overcluster_factor: int = 5


# --- results ----------------------------------------------------------------------------------
@dataclass
class CurvePoint:
    interactions: int
    labeled: int
    macro_f1: float
    top1: float
    cluster_labeled: int
    cluster_errors: int
    pseudo_accepted: int


@dataclass
class ScenarioRun:
    """One scenario under one seed: the curve, the reference score, and what the oracle saw."""

    scenario: str
    seed: int
    pool_size: int
    test_size: int
    supervised_f1: float
    curve: list[CurvePoint]
    test_ids: np.ndarray = field(repr=False)
    oracle_asked: set[int] = field(repr=False)
    pseudo_routed: int = 0
    pseudo_routed_correct: int = 0

    def interactions_to_reach(self, share: float = REACH) -> int | None:
        """Interactions at the first evaluation reaching ``share`` of the supervised macro F1."""
        for point in self.curve:
            if point.macro_f1 >= share * self.supervised_f1:
                return point.interactions
        return None

    @property
    def cluster_label_error_rate(self) -> float | None:
        last = self.curve[-1] if self.curve else None
        return last.cluster_errors / last.cluster_labeled if last and last.cluster_labeled else None

    def summary(self) -> dict:
        reached = self.interactions_to_reach()
        return {
            "scenario": self.scenario, "seed": self.seed, "pool": self.pool_size, "test": self.test_size,
            "supervised_f1": self.supervised_f1, "interactions_to_95": reached,
            "fraction_to_95": None if reached is None else reached / self.pool_size,
            "final_macro_f1": self.curve[-1].macro_f1 if self.curve else None,
            "final_interactions": self.curve[-1].interactions if self.curve else 0,
            "cluster_label_error_rate": self.cluster_label_error_rate,
            "pseudo_precision_before_review": self.pseudo_routed_correct / self.pseudo_routed if self.pseudo_routed else None,
        }


@dataclass
class SimulationResult:
    collection: str
    config: SimulationConfig
    runs: list[ScenarioRun]

    def rows(self) -> list[dict]:
        """The curves, one row per evaluation (for CSV)."""
        return [{"collection": self.collection, "scenario": r.scenario, "seed": r.seed, "pool": r.pool_size,
                 "supervised_f1": r.supervised_f1, **asdict(p)} for r in self.runs for p in r.curve]

    def table(self) -> list[dict]:
        """Per scenario, over seeds: mean interactions (and share of the pool) to reach 95%."""
        out = []
        for scenario in dict.fromkeys(r.scenario for r in self.runs):
            runs = [r for r in self.runs if r.scenario == scenario]
            reached = [r.interactions_to_reach() for r in runs]
            fractions = [x / r.pool_size for x, r in zip(reached, runs) if x is not None]
            errors = [r.cluster_label_error_rate for r in runs if r.cluster_label_error_rate is not None]
            out.append({
                "scenario": scenario, "seeds": len(runs), "reached": len(fractions),
                "fraction_to_95": float(np.mean(fractions)) if len(fractions) == len(runs) else None,
                "fraction_to_95_reached_runs": float(np.mean(fractions)) if fractions else None,
                "final_macro_f1": float(np.mean([r.curve[-1].macro_f1 for r in runs if r.curve])),
                "supervised_f1": float(np.mean([r.supervised_f1 for r in runs])),
                "cluster_label_error_rate": float(np.mean(errors)) if errors else None,
            })
        return out

    def to_json(self) -> dict:
        return {"collection": self.collection, "config": asdict(self.config), "table": self.table(),
                "runs": [r.summary() for r in self.runs], "curves": self.rows()}

    def to_csv(self) -> str:
        rows = self.rows()
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return buffer.getvalue()

    def format(self) -> str:
        lines = [f"{self.collection}: interactions to reach {REACH:.0%} of the supervised macro F1, as a share of the pool",
                 f"{'scenario':<20} {'share':>8} {'reached':>8} {'final F1':>9} {'supervised':>10} {'cluster err':>11}"]
        for row in self.table():
            share = "-" if row["fraction_to_95"] is None else f"{100 * row['fraction_to_95']:.1f}%"
            error = "-" if row["cluster_label_error_rate"] is None else f"{100 * row['cluster_label_error_rate']:.1f}%"
            lines.append(f"{row['scenario']:<20} {share:>8} {row['reached']:>4}/{row['seeds']:<3} "
                         f"{row['final_macro_f1']:9.3f} {row['supervised_f1']:10.3f} {error:>11}")
        return "\n".join(lines)


# --- one run ----------------------------------------------------------------------------------
class _Run:
    """State of one simulated labeling run: what is labeled, what it cost, the curve so far."""

    def __init__(self, collection: Collection, pool: np.ndarray, test: np.ndarray, config: SimulationConfig, seed: int):
        self.c, self.config, self.seed = collection, config, seed
        self.pool, self.test = pool, test
        self.oracle = Oracle(pool, collection.truth[pool], config.purity)
        self.rng = np.random.default_rng(seed)
        self.classes = np.unique(collection.truth)
        self.labels: dict[int, tuple[str, float, str]] = {}
        self.pending: set[int] = set()
        self.interactions = 0
        self.evaluated_at = -1
        self.curve: list[CurvePoint] = []
        self.budget = config.budget * len(pool)
        self.pseudo_routed = self.pseudo_routed_correct = 0
        # a scenario's own classifier, fitted on the labels so far when they hold 2 classes; None: the head classifier
        self.learner = None

    # state
    def unlabeled(self) -> np.ndarray:
        done = np.fromiter(list(self.labels) + list(self.pending), dtype=np.int64)
        return self.pool[~np.isin(self.pool, done)]

    def exhausted(self) -> bool:
        return self.interactions >= self.budget or len(self.unlabeled()) == 0

    def labeled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, labels, weights)`` of the labels so far."""
        index = np.fromiter(self.labels, dtype=np.int64)
        return index, np.array([self.labels[i][0] for i in index]), np.array([self.labels[i][1] for i in index])

    def pool_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """One label per pool image (None where unlabeled) and its weight (0 where unlabeled),
        the semi-supervised networks' ``y`` and ``sample_weight``."""
        y = np.array([self.labels[i][0] if i in self.labels else None for i in self.pool.tolist()], dtype=object)
        weights = np.array([self.labels[i][1] if i in self.labels else 0.0 for i in self.pool.tolist()], dtype=np.float32)
        return y, weights

    def fit(self):
        from .train import HeadClassifier

        if not self.labels:
            return None
        index, labels, weights = self.labeled()
        if self.learner is not None and len(np.unique(labels)) >= 2:
            return self.learner()
        return HeadClassifier(C=self.config.C, random_state=self.seed).fit(self.c.X[index], labels, sample_weight=weights)

    def predictions(self, model, index: np.ndarray):
        from .train import Predictions

        return Predictions(None, index, model.classes_, model.predict_proba(self.c.X[index]))

    # tasks
    def _maybe_evaluate(self) -> None:
        if self.interactions - max(self.evaluated_at, 0) >= self.config.chunk or self.interactions >= self.budget:
            self.evaluate()

    def evaluate(self) -> None:
        from .metrics.classification import classification_report

        self.evaluated_at = self.interactions
        model = self.fit()
        truth = self.c.truth[self.test]
        predicted = model.predict(self.c.X[self.test]) if model is not None else np.full(len(truth), "")
        report = classification_report(truth, predicted, self.classes)
        cluster_rows = [i for i, (_, _, s) in self.labels.items() if s == "cluster"]
        self.curve.append(CurvePoint(
            self.interactions, len(self.labels), report.macro.F, report.top1, len(cluster_rows),
            sum(self.labels[i][0] != self.c.truth[i] for i in cluster_rows),
            sum(1 for _, _, s in self.labels.values() if s == "pseudo"),
        ))

    def label_images(self, index: np.ndarray) -> None:
        for image in index:
            if self.interactions >= self.budget:
                return
            self.labels[int(image)] = (str(self.oracle.answer_images([image])[0]), 1.0, "manual")
            self.interactions += 1
            self._maybe_evaluate()

    def cluster_and_label(self, index: np.ndarray, space: np.ndarray, cluster_size: int | None = None) -> int:
        """Cluster ``index`` (rows of ``space``) into clusters of about ``cluster_size`` images and
        show them largest first (size 1: label the images one by one); returns the labels added."""
        from .cluster import fit_clusters

        cluster_size = cluster_size or self.config.cluster_size
        if cluster_size <= 1:
            before = len(self.labels)
            self.label_images(index)
            return len(self.labels) - before
        k = max(1, min(len(index), math.ceil(len(index) / cluster_size)))
        return self.show_clusters(index, space, fit_clusters(space, self.config.algorithm, k, self.seed)[0])

    def show_clusters(self, index: np.ndarray, space: np.ndarray, clusters: np.ndarray) -> int:
        """Show the clusters of ``index`` (numbered 0.. by size) largest first, each member weighted
        by its distance to its cluster's centre in ``space``; returns the labels added."""
        from .cluster import centre_distances
        from .labels import cluster_confidences

        distances = centre_distances(space, clusters)
        added = 0
        for cluster in range(int(clusters.max()) + 1):
            if self.interactions >= self.budget:
                break
            inside = clusters == cluster
            added += self.show_group(index[inside], cluster_confidences(distances[inside], 1.0, self.config.a), "cluster")
        return added

    def review_pseudo(self, index: np.ndarray, labels: np.ndarray, confidence: np.ndarray) -> None:
        """The oracle reviews pending pseudo-labels one predicted class at a time, like a cluster."""
        for label in np.unique(labels):
            if self.interactions >= self.budget:
                break
            rows = labels == label
            self.show_group(index[rows], confidence[rows], "pseudo", proposed=label)

    def show_group(self, members: np.ndarray, weights: np.ndarray, source: str, proposed: str | None = None) -> int:
        """Show the oracle a group (a cluster, or one class of pseudo-labels, accepted only if the
        oracle names the ``proposed`` label); the members it keeps get the label. Returns how many."""
        answer = self.oracle.answer_cluster(members)
        self.interactions += answer.interactions
        added = 0
        if answer.label is not None and (proposed is None or answer.label == proposed):
            keep = ~np.isin(members, answer.excluded)
            added = self.add_labels(members[keep], answer.label, weights[keep], source)
        self._maybe_evaluate()
        return added

    def add_labels(self, members: np.ndarray, label: str, weights: np.ndarray, source: str) -> int:
        for image, weight in zip(members, weights):
            self.labels[int(image)] = (label, float(weight), source)
        return len(members)


def _random_unlabeled(run: _Run, size: int) -> np.ndarray:
    unlabeled = run.unlabeled()
    return run.rng.choice(unlabeled, size=min(size, len(unlabeled)), replace=False)


def _most_uncertain(run: _Run, size: int) -> np.ndarray:
    unlabeled = run.unlabeled()
    model = run.fit()
    if model is None or len(model.classes_) < 2:
        return _random_unlabeled(run, size)
    entropy = run.predictions(model, unlabeled).entropy
    order = run.rng.permutation(len(unlabeled))
    return unlabeled[order[np.argsort(-entropy[order], kind="stable")][:size]]


def _scenario_random(run: _Run) -> None:
    while not run.exhausted():
        run.label_images(_random_unlabeled(run, run.config.batch))


def _scenario_uncertain(run: _Run) -> None:
    while not run.exhausted():
        run.label_images(_most_uncertain(run, run.config.batch))


def _cluster_pass(run: _Run) -> int:
    unlabeled = run.unlabeled()
    return run.cluster_and_label(unlabeled, run.c.X[unlabeled])


def _scenario_cluster(run: _Run) -> None:
    while not run.exhausted() and _cluster_pass(run) > 0:
        pass


def _scenario_uncertain_cluster(run: _Run) -> None:
    stalled = 0
    while not run.exhausted() and stalled < 3:
        batch = _most_uncertain(run, run.config.cluster_batch)
        stalled = stalled + 1 if run.cluster_and_label(batch, run.c.X[batch]) == 0 else 0


def _scenario_cluster_uncertain(run: _Run) -> None:
    _cluster_pass(run)
    _scenario_uncertain(run)


def _metadata_space(run: _Run, index: np.ndarray) -> np.ndarray:
    from .features import MetadataAppender

    if run.c.days is None or run.config.metadata_weight <= 0:
        return run.c.X[index]
    appender = MetadataAppender({"days": run.config.metadata_weight}, {"days": "numeric"})
    return appender.fit_transform(run.c.X[index], {"days": run.c.days[index]})


def _subject_sample(run: _Run, candidates: np.ndarray) -> np.ndarray:
    """Whole subjects (their candidate images), about ``cluster_batch`` images in all."""
    from .sampling import Pool, pick_subjects

    subjects = run.c.subjects[candidates]
    per_subject = len(candidates) / len(np.unique(subjects))
    count = int(np.clip(round(run.config.cluster_batch / per_subject), 1, len(np.unique(subjects))))
    days = np.zeros(len(candidates)) if run.c.days is None else run.c.days[candidates]
    codes = np.unique(subjects, return_inverse=True)[1]
    return pick_subjects(None, Pool(candidates, codes, days), run.rng, subjects=count)


def _route(run: _Run) -> np.ndarray:
    """Predict the unlabeled pool; confident predictions go to review, the rest are returned."""
    from .loop import route_mask
    from .threshold import tune_thresholds
    from .train import CV_FOLDS, HeadClassifier, grouped_oof_proba

    unlabeled = run.unlabeled()
    model = run.fit()
    index, labels, weights = run.labeled()
    if model is None or len(np.unique(labels)) < 2 or len(np.unique(run.c.subjects[index])) < 2:
        return unlabeled
    proba, classes = grouped_oof_proba(
        run.c.X[index], labels, run.c.subjects[index], weights,
        lambda: HeadClassifier(C=run.config.C, random_state=run.seed), CV_FOLDS, run.seed,
    )
    tuning = tune_thresholds(labels, classes[np.argmax(proba, axis=1)], proba.max(axis=1), run.config.target_precision)
    predictions = run.predictions(model, unlabeled)
    threshold = tuning.choice.threshold
    confident = np.zeros(len(unlabeled), bool) if threshold is None else route_mask(predictions.labels, predictions.confidence, threshold)
    run.pseudo_routed += int(confident.sum())
    run.pseudo_routed_correct += int((predictions.labels[confident] == run.c.truth[unlabeled[confident]]).sum())
    if confident.any() and run.config.review_pseudo:
        run.review_pseudo(unlabeled[confident], predictions.labels[confident], predictions.confidence[confident])
    elif confident.any():
        run.pending.update(int(i) for i in unlabeled[confident])
    return unlabeled[~confident]


def _scenario_full(run: _Run) -> None:
    """A structure-aware first sample, then each pass clusters what routing sent back; a pass
    that yields under 2 labels per interaction halves the cluster size of the next (finer
    overclustering, down to single images)."""
    batch = _subject_sample(run, run.unlabeled())
    cluster_size = run.config.cluster_size
    while not run.exhausted():
        spent = run.interactions
        added = run.cluster_and_label(batch, _metadata_space(run, batch), cluster_size)
        if added < 2 * (run.interactions - spent):
            cluster_size //= 2
        if run.exhausted():
            break
        batch = _route(run)
        if len(batch) == 0:
            batch = run.unlabeled()


def _scenario_overcluster(run: _Run) -> None:
    """Clustered random batches until two classes are labeled, then passes of FOC overclusters.

    A pass has ``overcluster_factor`` x the labeled classes overclusters, but at least one per
    ``cluster_size`` unlabeled images, so its groups are no larger than the other scenarios' clusters
    (the head uses fewer of its outputs, though). Stops after 3 passes in a row that label nothing.
    """
    from .cluster import number_by_size
    from .overcluster import FuzzyOvercluster

    while not run.exhausted() and len({label for label, _, _ in run.labels.values()}) < 2:
        batch = _random_unlabeled(run, run.config.cluster_batch)
        run.cluster_and_label(batch, run.c.X[batch])
    passes = stalled = 0
    while not run.exhausted() and stalled < 3:
        y, weights = run.pool_targets()
        unlabeled = run.unlabeled()
        overclusters = max(run.config.overcluster_factor * len(set(y[y != None])), math.ceil(len(unlabeled) / run.config.cluster_size))  # noqa: E711
        model = FuzzyOvercluster(
            n_overclusters=overclusters, epochs=run.config.network_epochs, device="cpu", random_state=run.seed + passes,
        ).fit(run.c.X[run.pool], y, weights)
        clusters, _ = model.predict_clusters(run.c.X[unlabeled])
        passes += 1
        stalled = stalled + 1 if run.show_clusters(unlabeled, run.c.X[unlabeled], number_by_size(clusters)) == 0 else 0


def _scenario_vae(run: _Run) -> None:
    """Name the VAE's latent cluster centres top-down; its own head is the classifier evaluated."""
    import copy

    from .vae import CentreDecision, LatentVAE, centre_training_labels, cluster_latents, split_latent_cluster

    X = run.c.X[run.pool]
    epochs = run.config.network_epochs
    vae = LatentVAE(pretrain_epochs=epochs, epochs=epochs, device="cpu", random_state=run.seed).fit_unsupervised(X)

    def learner():
        return copy.deepcopy(vae).fit_labeled(X, *run.pool_targets())

    run.learner = learner
    Z = vae.transform(X)
    clusters = cluster_latents(Z, max(1, min(len(X), math.ceil(len(X) / run.config.cluster_size))), random_state=run.seed)
    to_show = list(range(clusters.k))
    while to_show and not run.exhausted():
        cluster = to_show.pop(0)
        members = np.flatnonzero(clusters.assignments == cluster)
        answer = run.oracle.answer_centre(run.pool[members])
        run.interactions += answer.interactions
        if answer.label is not None:
            rows, _, weights = centre_training_labels(clusters, {cluster: CentreDecision(answer.label, answer.confidence)}, run.config.a)
            run.add_labels(run.pool[rows], answer.label, weights, "cluster")
        else:
            clusters = split_latent_cluster(clusters, Z, cluster, random_state=run.seed)
            to_show[:0] = [cluster, clusters.k - 1]
        run._maybe_evaluate()


SCENARIO_RUNNERS = {
    "random": _scenario_random,
    "uncertain-only": _scenario_uncertain,
    "cluster-only": _scenario_cluster,
    "uncertain+cluster": _scenario_uncertain_cluster,
    "cluster+uncertain": _scenario_cluster_uncertain,
    "full": _scenario_full,
    "overcluster": _scenario_overcluster,
    "vae": _scenario_vae,
}


def supervised_f1(collection: Collection, pool: np.ndarray, test: np.ndarray, config: SimulationConfig, seed: int) -> float:
    """Macro F1 on the test set of the same classifier trained on every pool image's true label."""
    from .metrics.classification import classification_report
    from .train import HeadClassifier

    model = HeadClassifier(C=config.C, random_state=seed).fit(collection.X[pool], collection.truth[pool])
    return classification_report(collection.truth[test], model.predict(collection.X[test]), np.unique(collection.truth)).macro.F


def split_collection(collection: Collection, config: SimulationConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool and test rows: a subject-grouped split, so no test subject is ever in the pool."""
    from .splits import grouped_split

    split = grouped_split(collection.subjects, config.test_size, seed)
    return split.train, split.test


def run_scenario(collection: Collection, scenario: str, seed: int = 0, config: SimulationConfig | None = None) -> ScenarioRun:
    """One scenario under one seed (deterministic given the seed)."""
    if scenario not in SCENARIO_RUNNERS:
        raise PipelineError(f"unknown scenario '{scenario}'; choose from {', '.join(SCENARIOS)}")
    config = config or SimulationConfig()
    pool, test = split_collection(collection, config, seed)
    run = _Run(collection, pool, test, config, seed)
    with _one_thread(torch=scenario in NETWORK_SCENARIOS):
        SCENARIO_RUNNERS[scenario](run)
        if run.evaluated_at != run.interactions:
            run.evaluate()
        reference = supervised_f1(collection, pool, test, config, seed)
    return ScenarioRun(
        scenario, seed, len(pool), len(test), reference, run.curve, test, run.oracle.asked, run.pseudo_routed, run.pseudo_routed_correct,
    )


@contextlib.contextmanager
def _one_thread(torch: bool = False) -> Iterator[None]:
    """Many fits on small arrays (and, with ``torch``, small networks): one BLAS (and torch)
    thread is faster, and immune to a busy machine (2 torch threads made a fit 7x slower)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        if not torch:
            yield
            return
        import torch as _torch

        before = _torch.get_num_threads()
        _torch.set_num_threads(1)
        try:
            yield
        finally:
            _torch.set_num_threads(before)


def simulate(
    collection: Collection, scenarios=SCENARIOS, seeds=(0, 1, 2), config: SimulationConfig | None = None, progress: Progress | None = None
) -> SimulationResult:
    """Every scenario under every seed."""
    config = config or SimulationConfig()
    scenarios, seeds = list(scenarios), list(seeds)
    unknown = [s for s in scenarios if s not in SCENARIO_RUNNERS]
    if unknown:
        raise PipelineError(f"unknown scenario '{unknown[0]}'; choose from {', '.join(SCENARIOS)}")
    runs = []
    for scenario in scenarios:
        for seed in seeds:
            runs.append(run_scenario(collection, scenario, seed, config))
            if progress:
                progress(len(runs), len(scenarios) * len(seeds))
    return SimulationResult(collection.name, config, runs)


# --- random vs structure-aware sampling at equal budget ---------------------------------------
def compare_sampling(collection: Collection, subjects: int, seeds=(0, 1, 2), config: SimulationConfig | None = None) -> dict:
    """Train on every image of ``subjects`` random subjects, or on as many random images
    (equal budget), all with true labels; mean test accuracy and macro F1 of each (Plud's comparison)."""
    from .metrics.classification import classification_report
    from .sampling import Pool, pick_random, pick_subjects
    from .train import HeadClassifier

    config = config or SimulationConfig()
    scores: dict[str, list[tuple[float, float]]] = {"random": [], "subjects": []}
    for seed in seeds:
        pool, test = split_collection(collection, config, seed)
        codes = np.unique(collection.subjects[pool], return_inverse=True)[1]
        days = np.zeros(len(pool)) if collection.days is None else collection.days[pool]
        candidates = Pool(pool, codes, days)
        by_subjects = pick_subjects(None, candidates, np.random.default_rng(seed), subjects=subjects)
        at_random = pick_random(None, candidates, np.random.default_rng(seed), size=len(by_subjects))
        for name, picked in (("subjects", by_subjects), ("random", at_random)):
            model = HeadClassifier(C=config.C, random_state=seed).fit(collection.X[picked], collection.truth[picked])
            report = classification_report(collection.truth[test], model.predict(collection.X[test]), np.unique(collection.truth))
            scores[name].append((report.top1, report.macro.F))
    images = int(round(np.mean([len(split_collection(collection, config, s)[0]) for s in seeds])))
    return {
        "collection": collection.name, "n_subjects": subjects, "pool_images": images,
        **{name: {"accuracy": float(np.mean([a for a, _ in v])), "macro_f1": float(np.mean([f for _, f in v]))}
           for name, v in scores.items()},
    }


def write_result(result: SimulationResult, path) -> None:
    """Save the curves: ``.csv`` (one row per evaluation) or ``.json`` (table, runs and curves)."""
    from pathlib import Path

    from .workspace import write_atomic

    path = Path(path)
    if path.suffix == ".json":
        write_atomic(path, json.dumps(result.to_json(), indent=1, default=str).encode())
    elif path.suffix == ".csv":
        write_atomic(path, result.to_csv().encode())
    else:
        raise PipelineError(f"{path}: write the curves to a .csv or a .json file")
