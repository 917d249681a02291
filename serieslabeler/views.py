"""Read-only views of the catalog, joined for display and scripts (the app's tables and charts)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from serieslabeler.clustering.evaluate import ClusteringEvaluation, ground_truth
from serieslabeler.clustering.runs import list_clusterings, load_clustering
from serieslabeler.errors import PipelineError
from serieslabeler.labels.clusters import cluster_status
from serieslabeler.labels.log import current_labels
from serieslabeler.models.predictions import load_predictions
from serieslabeler.sampling import latest_predicting_model
from serieslabeler.space.metadata import metadata_frame
from serieslabeler.store.queries import image_table
from serieslabeler.store.summary import summarize
from serieslabeler.store.workspace import Workspace


def latest_clustering_id(workspace: Workspace) -> int | None:
    clusterings = list_clusterings(workspace)
    return int(clusterings[0]["id"]) if clusterings else None


def latest_predicting_model_id(workspace: Workspace) -> int | None:
    try:
        return latest_predicting_model(workspace)
    except PipelineError:
        return None


def image_details(workspace: Workspace, image_ids, clustering_id: int | None = None):
    """For display: each image's file, subject, date, days since its subject's first image, current
    label (source, confidence, status), cluster in ``clustering_id`` (default: the latest), the
    latest model's prediction and its confidence, and the ground truth when there is one."""
    ids = [int(i) for i in image_ids]
    frame = image_table(workspace, ids).set_index("image_id")
    frame["days"] = metadata_frame(workspace, ids, ["days"])["days"].round(2)
    labels = current_labels(workspace).set_index("image_id")
    frame = frame.join(labels[["label", "source", "confidence", "status"]], how="left")
    clustering_id = clustering_id or latest_clustering_id(workspace)
    if clustering_id is not None:
        clustering = load_clustering(workspace, clustering_id)
        frame["cluster"] = pd.Series(clustering.clusters, index=clustering.image_ids).reindex(frame.index).astype("Int64")
    model_id = latest_predicting_model_id(workspace)
    if model_id is not None:
        predictions = load_predictions(workspace, model_id, ids)
        frame["predicted"] = pd.Series(predictions.labels, index=predictions.image_ids).reindex(frame.index)
        frame["prediction_confidence"] = pd.Series(predictions.confidence, index=predictions.image_ids).reindex(frame.index)
    truth = ground_truth(workspace, ids)
    if truth:
        frame["truth"] = pd.Series(truth).reindex(frame.index)
    return frame.reset_index()


STATUS_COLUMNS = ["cluster", "size", "labeled", "top_label", "top_count", "state"]


def cluster_table(workspace: Workspace, clustering_id: int):
    """``serieslabeler.labels.log.cluster_status`` as a DataFrame (one row per cluster)."""
    return pd.DataFrame(cluster_status(workspace, clustering_id), columns=STATUS_COLUMNS)


def clustering_table(workspace: Workspace, clustering_id: int, evaluation: ClusteringEvaluation) -> pd.DataFrame:
    """One row per cluster: its labeling state (:func:`cluster_table`) and, with ground truth,
    its majority true class, how many members have one, and its purity."""
    table = cluster_table(workspace, clustering_id).rename(columns={"top_label": "top label", "top_count": "top label count"})
    if not evaluation.per_cluster:
        return table
    purity = pd.DataFrame([asdict(p) for p in evaluation.per_cluster]).rename(columns={"majority": "majority (truth)", "size": "with truth"})
    return table.merge(purity, on="cluster", how="left")


@dataclass(frozen=True)
class StageCoverage:
    """One ground-truth stage: its images in a selection and in the whole collection."""

    stage: str
    images: int
    in_collection: int


@dataclass(frozen=True)
class SampleCoverage:
    """What a selection of images covers: subjects, time since each subject's first photo, stages."""

    images: int
    subjects: int
    days_covered: float | None
    per_subject: dict[str, int]
    days: list[float]
    stages: list[StageCoverage]

    def to_dict(self) -> dict:
        return asdict(self)


def sample_coverage(workspace: Workspace, image_ids) -> SampleCoverage:
    """Subjects, days and ground-truth stages covered by ``image_ids`` (a sample or a preview).

    ``days_covered``: the most days since a subject's first photo among them; ``stages``:
    most frequent first (ties by name), each with its count in the collection.
    """
    table = image_table(workspace, image_ids)
    days = metadata_frame(workspace, image_ids, ["days"])["days"].to_numpy(dtype=float)
    truth = pd.Series(list(ground_truth(workspace, image_ids).values()), dtype=object)
    in_collection = summarize(workspace)["ground_truth"]
    counts = truth.value_counts()
    stages = sorted(((str(stage), int(n)) for stage, n in counts.items()), key=lambda item: (-item[1], item[0]))
    return SampleCoverage(
        images=len(table),
        subjects=int(table["subject"].nunique()),
        days_covered=float(days.max()) if len(days) else None,
        per_subject={str(k): int(v) for k, v in table.groupby("subject").size().items()},
        days=days.tolist(),
        stages=[StageCoverage(stage, n, int(in_collection.get(stage, 0))) for stage, n in stages],
    )
