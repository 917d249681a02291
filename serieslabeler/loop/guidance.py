"""What the app and the command line tell a labeler, computed in one place so they agree: the
model's suggestion for a cluster (never applied by itself), the step after the last cluster,
and which stages a sample covers."""
from __future__ import annotations

import json
from dataclasses import dataclass

from serieslabeler.errors import PipelineError
from serieslabeler.labels.clusters import cluster_members, cluster_status
from serieslabeler.models.files import model_classes
from serieslabeler.sampling import latest_predicting_model
from serieslabeler.store.workspace import Workspace


@dataclass(frozen=True)
class Suggestion:
    """The latest model's most common prediction for a cluster's members.

    ``confidence``: the mean probability the model gave that label over the members predicted so;
    ``share``: the fraction of the cluster's predicted members that got it."""

    label: str
    confidence: float
    share: float
    model_id: int

    def describe(self) -> str:
        return f"{self.label} (model {self.model_id}: {self.share:.0%} of the images, mean confidence {self.confidence:.2f})"


def suggested_label(workspace: Workspace, clustering_id: int, cluster: int) -> Suggestion | None:
    """The label the latest model suggests for a cluster, or None without predictions for it.

    Counts the members' stored top labels (the top-1 of each stored top-k, so no probabilities
    are decoded); ties go to the class that comes first in the model's classes."""
    try:
        model_id = latest_predicting_model(workspace)
    except PipelineError:
        return None
    counts = _predicted_counts(workspace, model_id, clustering_id, cluster)
    if not counts:
        cluster_members(workspace, clustering_id, cluster)  # an unknown clustering or cluster is an error
        return None
    order = {label: j for j, label in enumerate(model_classes(workspace, model_id))}
    winner, (count, confidence_sum) = min(counts.items(), key=lambda item: (-item[1][0], order[item[0]]))
    return Suggestion(str(winner), confidence_sum / count, count / sum(n for n, _ in counts.values()), model_id)


def _predicted_counts(workspace: Workspace, model_id: int, clustering_id: int, cluster: int) -> dict[str, tuple[int, float]]:
    """``{label: (members the model predicted so, their summed confidence)}`` for one cluster:
    stored with the predictions or the clustering (``cluster_predictions``), else counted from
    the members' predictions (a model and clustering stored before both were)."""
    db = workspace.db
    stored = db.execute("SELECT 1 FROM cluster_predictions WHERE model_id = ? AND clustering_id = ? LIMIT 1", (model_id, clustering_id)).fetchone()
    if stored:
        sql = "SELECT label, n, confidence_sum FROM cluster_predictions WHERE model_id = ? AND clustering_id = ? AND cluster = ?"
    else:
        sql = (
            "SELECT p.label, COUNT(*), SUM(p.confidence) FROM cluster_members m JOIN predictions p ON p.model_id = ?1 AND p.image_id = m.image_id "
            "WHERE m.clustering_id = ?2 AND m.cluster = ?3 GROUP BY p.label"
        )
    return {label: (n, total) for label, n, total in db.execute(sql, (model_id, clustering_id, cluster))}


@dataclass(frozen=True)
class NextStep:
    """What to do once every cluster of a clustering is labeled or skipped."""

    action: str  # "train" or "cluster"
    message: str


def next_step(workspace: Workspace, clustering_id: int) -> NextStep | None:
    """None while a cluster is still open; then train when labels were made since the latest
    model, else cluster what is left unlabeled."""
    status = cluster_status(workspace, clustering_id)
    if not status or any(row["state"] == "open" for row in status):
        return None
    db = workspace.db
    last_label = db.execute("SELECT MAX(at) FROM label_events WHERE action IN ('label_cluster', 'label_images')").fetchone()[0]
    last_model = db.execute("SELECT MAX(created_at) FROM models").fetchone()[0]
    skipped = sum(row["state"] == "skipped" for row in status)
    if last_label and (last_model is None or last_label > last_model):
        return NextStep("train", f"Every cluster is done ({len(status) - skipped} labeled, {skipped} skipped): train a classifier on these labels.")
    return NextStep("cluster", "Every cluster is done and the latest model knows these labels: cluster the images still unlabeled.")


def model_for_current_labels(workspace: Workspace, mode: str, feature_set: str | None, seed: int, params: dict | None = None) -> int | None:
    """A model already trained with these settings since the label log last changed (training
    again would repeat its work), or None."""
    last_change = workspace.db.execute("SELECT MAX(at) FROM label_events").fetchone()[0] or ""
    rows = workspace.db.execute(
        "SELECT id, feature_set, params FROM models WHERE mode=? AND created_at >= ? ORDER BY id DESC", (mode, last_change)
    ).fetchall()
    wanted = {**(params or {}), "seed": seed}
    for row in rows:
        stored = json.loads(row["params"])
        if (feature_set is None or row["feature_set"] == feature_set) and all(stored.get(k) == v for k, v in wanted.items()):
            return int(row["id"])
    return None
