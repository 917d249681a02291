"""Read-only views of the catalog, joined for display and scripts (the app's tables and charts)."""
from __future__ import annotations

from serieslabeler.clustering.evaluate import ground_truth
from serieslabeler.clustering.runs import list_clusterings, load_clustering
from serieslabeler.errors import PipelineError
from serieslabeler.ingest.dates import readable_time
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


def image_record(workspace: Workspace, image_id: int) -> dict:
    """One image for the viewer, in plain words: file, subject, when (a readable date), days since
    its subject's first photo, stored size, and its attributes."""
    frame = image_details(workspace, [image_id])
    if frame.empty or frame["file"].isna().iloc[0]:
        raise PipelineError(f"no image {image_id} in this workspace")
    row = frame.iloc[0]
    size = workspace.db.execute("SELECT width, height FROM images WHERE id=?", (int(image_id),)).fetchone()
    attributes = workspace.db.execute(
        "SELECT a.name, v.value FROM image_attributes v JOIN attributes a ON a.id = v.attribute_id WHERE v.image_id=? ORDER BY a.name",
        (int(image_id),),
    ).fetchall()
    record = {
        "file": row["file"],
        "subject": row["subject"],
        "taken": readable_time(row["taken_at"]),
        "days since the subject's first photo": round(float(row["days"]), 1),
        "size": f"{size['width']} x {size['height']} px",
    }
    for name in ("label", "truth"):
        if name in frame.columns and isinstance(row[name], str):
            record["ground truth" if name == "truth" else "label"] = row[name]
    return {**record, **{name: value for name, value in attributes}}


STATUS_COLUMNS = ["cluster", "size", "labeled", "top_label", "top_count", "state"]


def cluster_table(workspace: Workspace, clustering_id: int):
    """``serieslabeler.labels.log.cluster_status`` as a DataFrame (one row per cluster)."""
    import pandas as pd


    return pd.DataFrame(cluster_status(workspace, clustering_id), columns=STATUS_COLUMNS)
