"""One iteration end to end, confidence routing, and evaluation against the ground truth.

Routing: a model's predictions at or above the threshold (one for all classes, or one per
predicted class) become pending pseudo-labels, reviewable and rejectable; the rest form the
next batch to cluster, saved as a sample with strategy ``routed``. Each image lands in exactly
one of the two. A model trained on a single class routes everything to clustering. Optionally, before routing, predictions are smoothed along each subject's time
series (the Plud workflow's majority vote): an image takes the label most frequent among the
``window`` predictions centred on it in its subject's time order, with confidence the mean
probability of that label over the window.

An iteration (:func:`iterate`) is: sample -> embed -> cluster -> labels (by the expert, or by
the ground-truth oracle of :mod:`serieslabeler.simulation.engine` for demos) -> train -> predict -> route,
recorded in the ``iterations`` table.

Evaluation (:func:`evaluate_model`) is always on whole held-out subjects: among the subjects
with ground truth, a share (``test_size``, GroupShuffleSplit with ``seed``) is held out; the
score is the model's on every ground-truth image of those subjects. If the model was trained on
images of a held-out subject, a ``head`` model is refitted (same feature set and parameters,
same labels and weights) without them first; a fine-tuned model is scored as it is on the
held-out images outside its training set and the result is marked optimistic. :func:`iterate`
keeps the held-out subjects out of its samples and predictions, so its models never need that.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np

from serieslabeler.clustering.runs import load_clustering, run_clustering
from serieslabeler.clustering.suggest import overcluster_k
from serieslabeler.embed.local import embed_workspace
from serieslabeler.errors import PipelineError
from serieslabeler.labels.clusters import label_cluster, skip_cluster
from serieslabeler.labels.series import label_series
from serieslabeler.labels.vocabulary import vocabulary_order
from serieslabeler.loop.oracle import Oracle
from serieslabeler.loop.routing import route_predictions
from serieslabeler.loop.series import propose_series
from serieslabeler.loop.support import SUPPORT_QUANTILE
from serieslabeler.loop.threshold import validation_curves
from serieslabeler.models.evaluation import (
    evaluate_model,
    ground_truth,
    held_out_subjects,
)
from serieslabeler.models.features import ensure_features
from serieslabeler.models.files import network_path
from serieslabeler.models.predictions import predict, unlabeled_image_ids
from serieslabeler.models.training import train_model
from serieslabeler.progress import Progress
from serieslabeler.sampling import draw_sample, load_sample, save_sample
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.queries import has_ground_truth
from serieslabeler.store.series import get_series, parse_series_key, saved_split, series_groups
from serieslabeler.store.workspace import Workspace

IDLE_MINUTES = 5.0


# --- iteration records ------------------------------------------------------------------------
AWAITING = "awaiting-labels"


DONE = "done"


@dataclass
class IterationRecord:
    """One round of the loop (row of ``iterations``); ``record`` holds its figures (JSON)."""

    id: int
    started_at: str
    sample_id: int | None
    clustering_id: int | None
    model_id: int | None
    record: dict

    @property
    def status(self) -> str:
        return self.record.get("status", DONE)

    def to_dict(self) -> dict:
        return asdict(self)


def load_iteration(workspace: Workspace, iteration_id: int) -> IterationRecord:
    row = workspace.db.execute("SELECT * FROM iterations WHERE id=?", (iteration_id,)).fetchone()
    if row is None:
        raise PipelineError(f"no iteration {iteration_id} in {workspace.root}")
    return IterationRecord(row["id"], row["started_at"], row["sample_id"], row["clustering_id"], row["model_id"], json.loads(row["record"]))


def list_iterations(workspace: Workspace) -> list[IterationRecord]:
    return [load_iteration(workspace, r[0]) for r in workspace.db.execute("SELECT id FROM iterations ORDER BY id")]


def save_iteration(workspace: Workspace, existing: IterationRecord | None, **fields) -> IterationRecord:
    """Insert a new iteration (``existing`` None) or update one; ``fields`` are its columns and ``record``."""
    with workspace.transaction() as db:
        if existing is None:
            iteration_id = db.execute(
                "INSERT INTO iterations(sample_id, clustering_id, model_id, record) VALUES (?,?,?,?)",
                (fields.get("sample_id"), fields.get("clustering_id"), fields.get("model_id"), json.dumps(fields.get("record", {}))),
            ).lastrowid
        else:
            iteration_id = existing.id
            merged = {**asdict(existing), **fields}
            db.execute(
                "UPDATE iterations SET sample_id=?, clustering_id=?, model_id=?, record=? WHERE id=?",
                (merged["sample_id"], merged["clustering_id"], merged["model_id"], json.dumps(merged["record"], default=str), iteration_id),
            )
    return load_iteration(workspace, iteration_id)


def last_event_id(workspace: Workspace) -> int:
    return int(workspace.db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0])


def effort_since(workspace: Workspace, event_id: int) -> dict:
    """Labels added by source, interactions and minutes spent in the events after ``event_id``.

    Minutes: the sum of the gaps between consecutive events that cost interactions, each gap
    capped at :data:`IDLE_MINUTES` (a pause is not labeling time); the first event counts 0.
    """
    added = dict(workspace.db.execute(
        "SELECT source, COUNT(*) FROM current_labels WHERE event_id > ? GROUP BY source ORDER BY source", (event_id,)
    ).fetchall())
    rows = workspace.db.execute(
        "SELECT at, interactions FROM label_events WHERE id > ? ORDER BY id", (event_id,)
    ).fetchall()
    interactions = sum(r[1] for r in rows)
    times = [datetime.fromisoformat(r[0].replace("Z", "+00:00")) for r in rows if r[1] > 0]
    minutes = sum(min((b - a).total_seconds() / 60.0, IDLE_MINUTES) for a, b in zip(times, times[1:]))
    return {"labels_added": added, "interactions": int(interactions), "minutes": round(minutes, 2)}


# --- one iteration ----------------------------------------------------------------------------
@dataclass
class IterateConfig:
    """What one round does; see :func:`iterate`."""

    features: str = "efficientnet_lite0"
    weights: str = "default"
    strategy: str = "subjects"
    subjects: int | None = 3
    size: int | None = None
    algorithm: str = "kmeans"
    k: int | None = None
    overcluster: float = 2.0
    metadata: dict = field(default_factory=dict)
    mode: str = "head"
    train_params: dict = field(default_factory=dict)
    threshold: float | dict = 0.9
    target_precision: float | None = None
    smoothing_window: int = 0
    support: float | None = SUPPORT_QUANTILE
    purity: float = 0.8
    hold_out: bool = True
    seed: int = 0
    device: str = "cpu"


@dataclass
class IterationResult:
    """What :func:`iterate` did, and what the user should do next."""

    iteration: IterationRecord
    message: str

    def to_dict(self) -> dict:
        return {"iteration": self.iteration.to_dict(), "message": self.message}


def iterate(
    workspace: Workspace, config: IterateConfig, oracle: bool = False, progress: Progress | None = None, author: str = "oracle"
) -> IterationResult:
    """Run (or resume) one round of the loop.

    A new round draws a sample (the previous round's routed images if any are still unlabeled,
    else ``config.strategy``), embeds it (with the newest trained network's features when
    there is one), clusters it, and stops, saying which clustering to label. The next call
    resumes the round: it trains on the labels, predicts every unlabeled image, routes the
    predictions and records the round. With ``oracle`` the ground truth labels the clusters
    (as :class:`serieslabeler.simulation.engine.Oracle` does: modal class at ``purity``, misfits clicked out)
    and the round runs through in one call; with an ordered vocabulary it labels the series of the
    sample's subjects by their boundaries instead (:func:`label_series_with_oracle`), and routing
    decodes each series monotone.
    """
    latest = workspace.db.execute("SELECT MAX(id) FROM iterations").fetchone()[0]
    current = load_iteration(workspace, latest) if latest else None
    if current is None or current.status != AWAITING:
        current = _start_round(workspace, config, progress)
        if not oracle:
            return IterationResult(current, _what_to_label(current))
    if oracle and vocabulary_order(workspace) is not None:
        sampled = load_sample(workspace, current.sample_id).image_ids
        label_series_with_oracle(workspace, sampled, current.id, _excluded_ids(workspace, config), author)
    elif oracle:
        label_with_oracle(workspace, current.clustering_id, config.purity, current.id, _excluded_ids(workspace, config), author)
    elif last_event_id(workspace) <= current.record["start_event"]:
        return IterationResult(current, _what_to_label(current))
    return IterationResult(*_finish_round(workspace, current, config, progress))


def _excluded_ids(workspace: Workspace, config: IterateConfig) -> np.ndarray:
    """Images of the held-out evaluation subjects (none without ground truth or with hold_out off)."""
    if not config.hold_out or not has_ground_truth(workspace):
        return np.zeros(0, dtype=np.int64)
    held = held_out_subjects(workspace, seed=config.seed)
    rows = workspace.query_in("SELECT id FROM images WHERE subject_id IN ({})", held)
    return np.array([r[0] for r in rows], dtype=np.int64)


def _working_ids(workspace: Workspace, config: IterateConfig) -> np.ndarray:

    return np.setdiff1d(unlabeled_image_ids(workspace), _excluded_ids(workspace, config))


def _feature_set_for_round(workspace: Workspace, config: IterateConfig, image_ids, progress: Progress | None) -> str:
    """The newest trained network's features (a fine-tuned model's, or an overcluster or vae model's
    trained on images), else the configured backbone's (embedded as needed)."""

    ids = [r[0] for r in workspace.db.execute("SELECT id FROM models ORDER BY id DESC")]
    newest = next((i for i in ids if network_path(workspace, i).is_file()), None)
    if newest is not None:
        name = f"model-{newest}"
    elif config.features in FeatureStore(workspace).names():
        name = config.features
    else:
        backbone, _, weights = config.features.partition("@")
        return embed_workspace(workspace, backbone, weights or config.weights, device=config.device, image_ids=image_ids, progress=progress).feature_set
    ensure_features(workspace, name, image_ids, config.device, progress)
    return name


class NothingToIterate(PipelineError):
    """No image is left to sample: every one is labeled, pending review, or held out."""


def _start_round(workspace: Workspace, config: IterateConfig, progress: Progress | None) -> IterationRecord:

    working = _working_ids(workspace, config)
    if len(working) == 0:
        pending = workspace.db.execute("SELECT COUNT(*) FROM current_labels WHERE status='pending'").fetchone()[0]
        raise NothingToIterate(
            f"every image in {workspace.root} is labeled or held out for evaluation; nothing left to iterate on"
            + (f" (review the {pending} pending pseudo-labels: rejected ones return to the pool)" if pending else "")
        )
    previous = workspace.db.execute("SELECT id FROM samples WHERE strategy='routed' ORDER BY id DESC LIMIT 1").fetchone()
    routed = np.intersect1d(load_sample(workspace, previous[0]).image_ids, working) if previous else np.zeros(0)
    if len(routed):
        sample = load_sample(workspace, previous[0])
        if len(routed) < sample.size:
            sample = save_sample(workspace, "routed", {**sample.params, "still_unlabeled_of": sample.id}, routed)
    else:
        sample = draw_sample(workspace, config.strategy, size=config.size, subjects=config.subjects, seed=config.seed, image_ids=working)
    feature_set = _feature_set_for_round(workspace, config, sample.image_ids, progress)
    k = config.k or overcluster_k(workspace, config.overcluster)
    if len(routed):
        k = finer_after_a_poor_round(workspace, k)
    clustering = run_clustering(
        workspace, feature_set, config.algorithm, min(k, sample.size), metadata=config.metadata or None,
        sample_id=sample.id, seed=config.seed,
    )
    record = {"status": AWAITING, "start_event": last_event_id(workspace), "feature_set": feature_set,
              "sample": {"id": sample.id, "strategy": sample.strategy, "size": sample.size},
              "clustering": {"id": clustering.id, "k": clustering.k, "algorithm": clustering.algorithm}}
    return save_iteration(workspace, None, sample_id=sample.id, clustering_id=clustering.id, record=record)


def finer_after_a_poor_round(workspace: Workspace, k: int) -> int:
    """The k to cluster the images the last round sent back with: twice the last round's when it
    named fewer than 2 images per interaction (clustered alike, its impure clusters would come
    back as they were and be skipped again, round after round), else ``k``. Doubling reaches
    single images, which an expert can always name; the simulation's full loop does the same."""
    ids = [r[0] for r in workspace.db.execute("SELECT id FROM iterations ORDER BY id DESC")]
    last = next((it for it in (load_iteration(workspace, i) for i in ids) if it.status == DONE), None)
    if last is None:
        return k
    record = last.record
    named = sum(count for source, count in record.get("labels_added", {}).items() if source != "pseudo")
    interactions = record.get("interactions", 0)
    if interactions and named < 2 * interactions:
        return max(k, 2 * int(record["clustering"]["k"]))
    return k


def _what_to_label(record: IterationRecord) -> str:
    return (
        f"iteration {record.id}: label the clusters of clustering {record.clustering_id} "
        f"(sample {record.sample_id}, {record.record['sample']['size']} images) in the dashboard or with "
        f"'serieslabeler label ...', then run 'iterate' again to train, predict and route"
    )


def _finish_round(workspace: Workspace, current: IterationRecord, config: IterateConfig, progress: Progress | None) -> tuple[IterationRecord, str]:

    feature_set = current.record["feature_set"]
    model = train_model(workspace, config.mode, feature_set=feature_set, seed=config.seed, device=config.device,
                        progress=progress, **config.train_params)
    targets = _working_ids(workspace, config)
    record = dict(current.record)
    threshold = config.threshold
    if config.target_precision is not None:
        tuning = validation_curves(workspace, model.id, config.target_precision, seed=config.seed)
        threshold = tuning.choice.threshold if tuning.choice.threshold is not None else 1.0
        record["threshold_tuning"] = {"target": config.target_precision, **vars(tuning.choice)}
    routing = None
    if len(targets):
        predict(workspace, model.id, targets, device=config.device, progress=progress)
        routing = route_predictions(workspace, model.id, threshold, targets, config.smoothing_window, current.id,
                                    monotone=vocabulary_order(workspace) is not None, support=config.support)
    record.update(effort_since(workspace, record["start_event"]))
    record.update(status=DONE, model={"id": model.id, "mode": model.mode, "validation": model.metrics.get("validation")},
                  routing=routing.summary() if routing else None)
    if has_ground_truth(workspace):
        record["evaluation"] = evaluate_model(workspace, model.id, seed=config.seed, device=config.device).to_dict()
    saved = save_iteration(workspace, current, model_id=model.id, record=record)
    macro = record.get("evaluation", {}).get("report", {}).get("macro", {}).get("F")
    message = (
        f"iteration {saved.id}: model {model.id} trained on {model.metrics['train_size']} labels; "
        + (f"{len(routing.pseudo_ids)} pseudo-labeled, {len(routing.to_cluster_ids)} to cluster next (sample {routing.sample_id}); "
           if routing else "no unlabeled images left to predict; ")
        + f"{record['interactions']} interactions this round"
        + (f"; held-out macro F {macro:.3f}" if macro is not None else "")
        + (f"; no threshold suggested ({withheld})" if (withheld := record.get("threshold_tuning", {}).get("withheld")) else "")
    )
    return saved, message


def label_with_oracle(
    workspace: Workspace, clustering_id: int, purity: float = 0.8, iteration: int | None = None, hidden=(), author: str = "oracle"
) -> dict:
    """Let the ground truth play the expert on every cluster of a clustering (for demos).

    Uses :class:`serieslabeler.simulation.engine.Oracle` over the ground truth of the images not ``hidden``
    (the held-out evaluation images), and records real label events (by ``author``, default ``oracle``).
    """

    ids, truth, _ = ground_truth(workspace)
    visible = ~np.isin(ids, np.asarray(hidden, dtype=np.int64))
    oracle = Oracle(ids[visible], truth[visible], purity)
    clustering = load_clustering(workspace, clustering_id)
    counts = Counter()
    for cluster in sorted(clustering.sizes()):
        members = clustering.image_ids[clustering.clusters == cluster]
        answer = oracle.answer_cluster(members)
        if answer.label is None:
            skip_cluster(workspace, clustering_id, cluster, author=author, iteration=iteration, reason="no dominant class")
            counts["skipped"] += 1
        else:
            label_cluster(workspace, clustering_id, cluster, answer.label, answer.excluded, author=author, iteration=iteration)
            counts["labeled"] += 1
    return dict(counts)


def label_series_with_oracle(workspace: Workspace, image_ids, iteration: int | None = None, hidden=(), author: str = "oracle") -> dict:
    """Let the ground truth play the expert on the series of the subjects of ``image_ids`` (for
    demos on an ordered vocabulary; one series per subject, or per part under the saved split).
    Per series it places the true boundaries, or accepts and
    corrects the latest model's proposal when that takes fewer interactions, and clicks out the
    images whose stage is not in the order (:meth:`serieslabeler.loop.oracle.Oracle.answer_series`);
    each series is one ``label_series`` event. Returns how many series were labeled with and
    without a proposal."""

    order = vocabulary_order(workspace)
    ids, truth, _ = ground_truth(workspace)
    visible = ~np.isin(ids, np.asarray(hidden, dtype=np.int64))
    oracle, known = Oracle(ids[visible], truth[visible]), set(ids[visible].tolist())
    model_id = workspace.db.execute("SELECT MAX(id) FROM models").fetchone()[0]
    counts = Counter()
    keys = set(series_groups(workspace, image_ids))
    if saved_split(workspace) is not None:  # photos without a value of the split are in no series
        keys = {key for key in keys if parse_series_key(key)[1] is not None}
    for key in sorted(keys):
        series = get_series(workspace, key)
        seen = [i for i in series.image_ids if i in known]
        proposal = None if model_id is None else propose_series(workspace, series, model_id).boundaries
        answer = oracle.answer_series(seen, order, proposal)
        accepted = answer.proposal_changes is not None and 1 + answer.proposal_changes < len(answer.boundaries)
        if answer.boundaries:
            label_series(workspace, series, answer.boundaries, answer.excluded, author=author,
                         proposal=proposal if accepted else None, iteration=iteration)
            counts["with proposal" if accepted else "by hand"] += 1
    return dict(counts)
