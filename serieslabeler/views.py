"""Read-only views of the catalog, joined for display and scripts (the app's tables and charts)."""
from __future__ import annotations

from serieslabeler.clustering.evaluate import ground_truth
from serieslabeler.clustering.runs import list_clusterings, load_clustering
from serieslabeler.errors import PipelineError
from serieslabeler.labels.clusters import cluster_status
from serieslabeler.labels.log import current_labels
from serieslabeler.models.predictions import load_predictions
from serieslabeler.sampling import latest_predicting_model
from serieslabeler.space.metadata import metadata_frame
from serieslabeler.store.queries import image_table
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
    import pandas as pd


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
    import pandas as pd


    return pd.DataFrame(cluster_status(workspace, clustering_id), columns=STATUS_COLUMNS)
