"""Oracle-driven runs that measure labeling effort honestly.

An :class:`Oracle` plays the expert with the ground truth of the images it may see (never the
held-out test images: asking it about one raises). Shown a cluster, it names the cluster's modal
class if that class holds at least ``purity`` of it and clicks out the other images (1
interaction for the cluster + 1 per image clicked out, none for one it had already taken that
label from, which ``label_cluster`` leaves out by itself), or skips the cluster (1 interaction);
shown single images, it labels each (1 interaction each). These are the costs the labeling log
(:mod:`serieslabeler.labels.log`) records for the same actions.

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
  classes are labeled; then each pass fits :class:`serieslabeler.models.foc.FuzzyOvercluster` (the
  training mode ``overcluster``: ``overcluster_factor`` x classes overclusters) on the labels so
  far plus the unlabeled pool and shows the overclusters of the unlabeled images like clusters;
- ``vae``: :class:`serieslabeler.models.vae_rounds.LatentVAE` pretrained on the pool, its latents clustered
  (k = pool / ``cluster_size``); the oracle names each centre from the centre alone (1
  interaction, nothing clicked out; confidence p_c = the modal share), or, below ``purity``,
  asks for a split (1 interaction; :func:`serieslabeler.models.vae_rounds.split_latent_cluster`, both halves shown
  next); members get ``p_c exp(-a d)``; the classifier evaluated is the VAE's own head
  (:meth:`~serieslabeler.models.vae_rounds.LatentVAE.fit_labeled` on those labels), not the head classifier;
- ``full``: structure-aware samples (whole subjects, :func:`serieslabeler.sampling.pick_subjects`),
  clustered with the ``days`` metadata appended at ``metadata_weight``
  (:class:`serieslabeler.space.metadata.MetadataAppender`); after each pass the model predicts the
  unlabeled pool and :func:`serieslabeler.loop.iterate.route_mask` sends predictions at or above the
  threshold that reaches ``target_precision`` (tuned on the labels so far,
  :mod:`serieslabeler.loop.threshold`) to pseudo-labels, which the oracle reviews one class at a time like
  a cluster (accept, clicking out the wrong ones; or reject), and the rest to the next
  structure-aware sample to cluster. As in ``route``, a prediction of a label the oracle took
  away from that image (clicked out of a cluster of it, or rejected in review) is not shown
  again: it goes to clustering (:mod:`serieslabeler.labels.rejections`).

Everything runs in memory on arrays (features, subjects, days, truth), with the library's own
clustering (:func:`serieslabeler.clustering.runs.fit_clusters`), label confidences
(:func:`serieslabeler.labels.log.cluster_confidences`), metadata weighting, classifier and routing.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from serieslabeler.errors import PipelineError
from serieslabeler.metrics.classification import classification_report
from serieslabeler.models.head import HeadClassifier
from serieslabeler.models.splits import grouped_split
from serieslabeler.progress import Progress
from serieslabeler.sampling import Pool, pick_random, pick_subjects
from serieslabeler.simulation.records import (
    NETWORK_SCENARIOS,
    SCENARIOS,
    Collection,
    ScenarioRun,
    SimulationConfig,
    SimulationResult,
)
from serieslabeler.simulation.scenarios import SCENARIO_RUNNERS, _Run


def supervised_f1(collection: Collection, pool: np.ndarray, test: np.ndarray, config: SimulationConfig, seed: int) -> float:
    """Macro F1 on the test set of the same classifier trained on every pool image's true label."""

    model = HeadClassifier(C=config.C, random_state=seed).fit(collection.X[pool], collection.truth[pool])
    return classification_report(collection.truth[test], model.predict(collection.X[test]), np.unique(collection.truth)).macro.F


def split_collection(collection: Collection, config: SimulationConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool and test rows: a subject-grouped split, so no test subject is ever in the pool."""

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
        run.proposal_corrections, run.proposal_excess, run.pseudo_rejected, run.proposal_offsets,
    )


@contextlib.contextmanager
def _one_thread(torch: bool = False) -> Iterator[None]:
    """Many fits on small arrays (and, with ``torch``, small networks): one BLAS (and torch)
    thread is faster, and immune to a busy machine (2 torch threads made a fit 7x slower)."""

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
