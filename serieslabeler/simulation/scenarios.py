"""simulation.scenarios"""
from __future__ import annotations

import copy
import math

import numpy as np

from serieslabeler.clustering.algorithms import (
    centre_distances,
    fit_clusters,
    number_by_size,
)
from serieslabeler.errors import PipelineError
from serieslabeler.labels.clusters import cluster_confidences
from serieslabeler.labels.rejections import Rejections
from serieslabeler.labels.series import series_confidences
from serieslabeler.loop.oracle import Oracle
from serieslabeler.loop.routing import route_mask
from serieslabeler.loop.support import LabelSupport
from serieslabeler.loop.threshold import classes_below_minimum, tune_thresholds
from serieslabeler.metrics.classification import classification_report
from serieslabeler.models.base import CV_FOLDS, Predictions
from serieslabeler.models.foc import FuzzyOvercluster
from serieslabeler.models.head import HeadClassifier, grouped_oof_proba
from serieslabeler.models.monotone import decode_series
from serieslabeler.models.time_prior import StageTimePrior
from serieslabeler.models.vae import (
    CentreDecision,
    LatentVAE,
    centre_training_labels,
    cluster_latents,
    split_latent_cluster,
)
from serieslabeler.sampling import Pool, pick_subjects
from serieslabeler.simulation.proposals import labeled_time_prior, propose_boundaries
from serieslabeler.simulation.records import Collection, CurvePoint, SimulationConfig
from serieslabeler.space.metadata import MetadataAppender


# --- one run ----------------------------------------------------------------------------------
class _Run:
    """State of one simulated labeling run: what is labeled, what it cost, the curve so far."""

    def __init__(self, collection: Collection, pool: np.ndarray, test: np.ndarray, config: SimulationConfig, seed: int):
        self.c, self.config, self.seed = collection, config, seed
        self.pool, self.test = pool, test
        self.oracle = Oracle(pool, collection.truth[pool], config.purity, config.boundary_tolerance)
        self.rng = np.random.default_rng(seed)
        self.classes = np.unique(collection.truth)
        self.labels: dict[int, tuple[str, float, str]] = {}
        self.pending: set[int] = set()
        self.rejected: dict[int, set[str]] = {}  # per image, the labels the oracle took away (clicked out, rejected)
        self.interactions = 0
        self.evaluated_at = -1
        self.curve: list[CurvePoint] = []
        self.budget = config.budget * len(pool)
        self.pseudo_routed = self.pseudo_routed_correct = self.pseudo_rejected = 0
        self.proposal_corrections: list[int] = []  # boundaries the oracle placed, moved or removed per proposal
        self.proposal_excess = 0  # interactions spent on proposed series beyond 1 each (an exact proposal's cost)
        self.proposal_offsets: list[int | None] = []  # per proposed or true boundary: photos off (None: missed or invented)
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
        if not self.labels:
            return None
        index, labels, weights = self.labeled()
        if self.learner is not None and len(np.unique(labels)) >= 2:
            return self.learner()
        return HeadClassifier(C=self.config.C, random_state=self.seed).fit(self.c.X[index], labels, sample_weight=weights)

    def predictions(self, model, index: np.ndarray):
        return Predictions(None, index, model.classes_, model.predict_proba(self.c.X[index]))

    # tasks
    def _maybe_evaluate(self) -> None:
        if self.interactions - max(self.evaluated_at, 0) >= self.config.chunk or self.interactions >= self.budget:
            self.evaluate()

    def evaluate(self) -> None:
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
            sum(label != self.c.truth[i] for i, (label, _, _) in self.labels.items()),
            self.decoded_f1(model, truth),
        ))

    def decoded_f1(self, model, truth: np.ndarray) -> float | None:
        """Macro F1 of the test predictions decoded monotone along each test subject (ordered stages)."""
        if self.c.order is None or model is None:
            return None
        proba = self.predictions(model, self.test)
        decoded, _ = decode_series(proba.proba, proba.classes, self.c.order, self.c.subjects[self.test], self.c.series_times()[self.test])
        return classification_report(truth, decoded.astype(str), self.classes).macro.F

    def series_rows(self, subject) -> np.ndarray:
        """The pool rows of one subject, in time order (its series)."""
        rows = self.pool[self.c.subjects[self.pool] == subject]
        return rows[np.argsort(self.c.series_times()[rows], kind="stable")]

    def label_series(self, rows: np.ndarray, proposal=None) -> int:
        """The oracle labels a series by its boundaries (or accepts and corrects ``proposal``); the
        kept images get their stage with the library's series confidences. Returns labels added."""
        answer = self.oracle.answer_series(rows, self.c.order, proposal)
        self.interactions += answer.interactions
        if answer.proposal_changes is not None:
            self.proposal_corrections.append(answer.proposal_changes)
            self.proposal_offsets.extend(answer.proposal_offsets)
            self.proposal_excess += answer.interactions - len(answer.excluded) - 1
        added = 0
        if len(answer.kept):
            starts = np.flatnonzero(np.r_[True, answer.stages[1:] != answer.stages[:-1]])
            weights = series_confidences(len(answer.kept), starts, np.ones(len(answer.kept), bool), 1.0, self.config.a)
            added = self.add_labels(answer.kept, None, weights, "series", answer.stages)
        self._maybe_evaluate()
        return added

    def proposal(self, model, rows: np.ndarray) -> list[tuple[str, int]] | None:
        """The model's monotone boundaries along ``rows`` (None without a model of two classes)."""
        if model is None or len(model.classes_) < 2:
            return None
        return propose_boundaries(model, self.c, rows, self.time_prior())

    def time_prior(self) -> StageTimePrior:
        """When each stage occurs, from the labels so far (:func:`labeled_time_prior`)."""
        return labeled_time_prior(self.c, *self.labeled(), self.config, self.seed)

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
        named = answer.label is not None and (proposed is None or answer.label == proposed)
        # the misfits it took this label from before are shown clicked out already (label_cluster)
        already = self.rejects(answer.excluded, np.full(len(answer.excluded), answer.label)) if named else np.zeros(0, bool)
        self.interactions += answer.interactions - int(already.sum())
        added = 0
        if named:
            keep = ~np.isin(members, answer.excluded)
            added = self.add_labels(members[keep], answer.label, weights[keep], source)
            self.reject(answer.excluded, answer.label)
        elif proposed is not None:
            self.reject(members, proposed)
        self._maybe_evaluate()
        return added

    def reject(self, members, label: str) -> None:
        """The oracle said ``members`` are not ``label`` (:mod:`serieslabeler.labels.rejections`)."""
        for image in members:
            self.rejected.setdefault(int(image), set()).add(str(label))

    def rejects(self, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """True where giving ``labels[i]`` to ``rows[i]`` contradicts what the oracle said."""
        return Rejections(self.rejected).mask(rows, labels)

    def add_labels(self, members: np.ndarray, label: str | None, weights, source: str, labels=None) -> int:
        """Give ``members`` ``label`` (or each its own of ``labels``) with their weights."""
        for k, (image, weight) in enumerate(zip(members, weights)):
            self.labels[int(image)] = (str(label if labels is None else labels[k]), float(weight), source)
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
    """Cluster the ``uncertain_batch`` most uncertain images; after 3 batches in a row that yield
    no label (never ``purity`` pure), go on with the most uncertain single images."""
    stalled = 0
    while not run.exhausted() and stalled < 3:
        batch = _most_uncertain(run, run.config.uncertain_batch)
        stalled = stalled + 1 if run.cluster_and_label(batch, run.c.X[batch]) == 0 else 0
    _scenario_uncertain(run)


def _scenario_cluster_uncertain(run: _Run) -> None:
    _cluster_pass(run)
    _scenario_uncertain(run)


def _metadata_space(run: _Run, index: np.ndarray) -> np.ndarray:
    if run.c.days is None or run.config.metadata_weight <= 0:
        return run.c.X[index]
    appender = MetadataAppender({"days": run.config.metadata_weight}, {"days": "numeric"})
    return appender.fit_transform(run.c.X[index], {"days": run.c.days[index]})


def _subject_sample(run: _Run, candidates: np.ndarray) -> np.ndarray:
    """Whole subjects (their candidate images), about ``cluster_batch`` images in all."""

    subjects = run.c.subjects[candidates]
    per_subject = len(candidates) / len(np.unique(subjects))
    count = int(np.clip(round(run.config.cluster_batch / per_subject), 1, len(np.unique(subjects))))
    days = np.zeros(len(candidates)) if run.c.days is None else run.c.days[candidates]
    codes = np.unique(subjects, return_inverse=True)[1]
    return pick_subjects(None, Pool(candidates, codes, days), run.rng, subjects=count)


def _route(run: _Run) -> np.ndarray:
    """Predict the unlabeled pool; confident predictions of images inside the labels' support
    (:mod:`serieslabeler.loop.support`), in a label the oracle has not taken away from them, go
    to review, the rest are returned.
    With ordered stages each series is decoded monotone, and only the series confident in
    every unlabeled image go to review: the rest are labeled by their boundaries, which
    labels the whole series (reviewing part of it first would be paid twice)."""

    unlabeled = run.unlabeled()
    index, labels, weights = run.labeled()
    if classes_below_minimum(run.classes, dict(zip(*np.unique(labels, return_counts=True)))):
        return unlabeled  # as the tool: no threshold while a class has fewer than MIN_CLASS_LABELS labels
    model = run.fit()
    if model is None or len(np.unique(labels)) < 2 or len(np.unique(run.c.subjects[index])) < 2:
        return unlabeled
    proba, classes = grouped_oof_proba(
        run.c.X[index], labels, run.c.subjects[index], weights,
        lambda: HeadClassifier(C=run.config.C, random_state=run.seed), CV_FOLDS, run.seed,
    )
    tuning = tune_thresholds(labels, classes[np.argmax(proba, axis=1)], proba.max(axis=1), run.config.target_precision)
    predictions = run.predictions(model, unlabeled)
    labels, confidence = predictions.labels, predictions.confidence
    if run.c.order is not None:
        labels, confidence = decode_series(predictions.proba, predictions.classes, run.c.order, run.c.subjects[unlabeled],
                                           run.c.series_times()[unlabeled])
        labels = labels.astype(str)
    threshold = tuning.choice.threshold
    confident = np.zeros(len(unlabeled), bool) if threshold is None else route_mask(labels, confidence, threshold)
    if run.config.support is not None:
        support = LabelSupport(run.config.support, random_state=run.seed).fit(run.c.X[index], run.c.subjects[index])
        confident &= support.inside(run.c.X[unlabeled])
    contradicted = confident & run.rejects(unlabeled, labels)
    run.pseudo_rejected += int(contradicted.sum())
    confident &= ~contradicted
    if run.c.order is not None:
        subjects = run.c.subjects[unlabeled]
        confident &= ~np.isin(subjects, subjects[~confident])
    run.pseudo_routed += int(confident.sum())
    run.pseudo_routed_correct += int((labels[confident] == run.c.truth[unlabeled[confident]]).sum())
    if confident.any() and run.config.review_pseudo:
        run.review_pseudo(unlabeled[confident], labels[confident], confidence[confident])
    elif confident.any():
        run.pending.update(int(i) for i in unlabeled[confident])
    return unlabeled[~confident]


def _scenario_full(run: _Run) -> None:
    """A structure-aware first sample, then each pass clusters what routing sent back; a pass
    that yields under 2 labels per interaction halves the cluster size of the next (finer
    overclustering, down to single images). With ordered stages nothing is clustered (clusters
    cut across the stages): the first sample's series are labeled by their boundaries, each
    later one by accepting or correcting the model's proposal, and each pass routes the series
    whose monotone decoding is confident throughout to review first."""
    batch = _subject_sample(run, run.unlabeled())
    cluster_size = run.config.cluster_size
    if run.c.order is not None:
        _label_subjects(run, batch, with_proposals=True)
        while not run.exhausted():
            batch = _route(run)
            _label_subjects(run, batch if len(batch) else run.unlabeled(), with_proposals=True)
        return
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


def _label_subjects(run: _Run, rows: np.ndarray, with_proposals: bool = False) -> None:
    """Label the series of the subjects of ``rows`` by their boundaries (or by accepting and
    correcting the model's proposal for each, refitted after every series)."""
    for subject in dict.fromkeys(run.c.subjects[rows].tolist()):
        if run.exhausted():
            return
        series = run.series_rows(subject)
        proposal = run.proposal(run.fit(), series) if with_proposals else None
        run.label_series(series, proposal)


def _scenario_series(run: _Run) -> None:
    """A structure-aware sample of subjects first, then every further subject in random order.
    The first series' boundaries are placed by hand; every later one (as soon as the labels hold
    two stages) comes with the model's monotone proposal, which the expert accepts or corrects
    (1 interaction + one per boundary moved), or ignores when placing by hand is cheaper. Images
    of stages outside the order are clicked out."""
    if run.c.order is None:
        raise PipelineError("the 'series' scenario needs ordered stages: pass --order U,R,V,O or declare the vocabulary ordered")
    subjects = np.unique(run.c.subjects[run.pool])
    if run.config.series_subjects > 0:
        first = run.rng.choice(subjects, size=min(run.config.series_subjects, len(subjects)), replace=False)
        first_rows = run.pool[np.isin(run.c.subjects[run.pool], first)]
    else:
        first_rows = _subject_sample(run, run.unlabeled())
    _label_subjects(run, first_rows, with_proposals=True)
    later = run.rng.permutation(np.unique(run.c.subjects[run.unlabeled()]))
    if len(later):
        _label_subjects(run, np.concatenate([run.series_rows(s) for s in later]), with_proposals=True)


def _scenario_overcluster(run: _Run) -> None:
    """Clustered random batches until two classes are labeled, then passes of FOC overclusters.

    A pass has ``overcluster_factor`` x the labeled classes overclusters, but at least one per
    ``cluster_size`` unlabeled images, so its groups are no larger than the other scenarios' clusters
    (the head uses fewer of its outputs, though). Stops after 3 passes in a row that label nothing.
    """

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
    "series": _scenario_series,
}
