"""Read-only views of the catalog, joined for display and scripts (the app's tables and charts)."""
from __future__ import annotations

from .errors import PipelineError
from .workspace import Workspace

IMAGE_COLUMNS = ["image_id", "file", "subject", "taken_at"]


def image_table(workspace: Workspace, image_ids=None, subject: str | None = None):
    """One row per image: image_id, file, subject, taken_at; all images (by subject and time),
    one subject's, or those of ``image_ids`` in that order."""
    import pandas as pd

    sql = (
        "SELECT i.id AS image_id, i.file_name AS file, s.name AS subject, i.taken_at FROM images i "
        "JOIN subjects s ON s.id = i.subject_id"
    )
    if image_ids is not None:
        rows = workspace.query_in(sql + " WHERE i.id IN ({})", image_ids)
        frame = pd.DataFrame([dict(r) for r in rows], columns=IMAGE_COLUMNS).set_index("image_id")
        return frame.reindex([int(i) for i in image_ids]).reset_index()
    where, params = (" WHERE s.name = ?", (subject,)) if subject is not None else ("", ())
    rows = workspace.db.execute(sql + where + " ORDER BY s.name, i.taken_at, i.id", params).fetchall()
    return pd.DataFrame([dict(r) for r in rows], columns=IMAGE_COLUMNS)


def subject_names(workspace: Workspace) -> list[str]:
    return [r[0] for r in workspace.db.execute("SELECT name FROM subjects ORDER BY name")]


def images_per_subject_day(workspace: Workspace):
    """How many images each subject has on each calendar day (the collection's timeline)."""
    import pandas as pd

    rows = workspace.db.execute(
        "SELECT s.name AS subject, substr(i.taken_at, 1, 10) AS day, COUNT(*) AS images FROM images i "
        "JOIN subjects s ON s.id = i.subject_id GROUP BY s.id, day ORDER BY s.name, day"
    ).fetchall()
    return pd.DataFrame([dict(r) for r in rows], columns=["subject", "day", "images"])


def latest_clustering_id(workspace: Workspace) -> int | None:
    from .cluster import list_clusterings

    clusterings = list_clusterings(workspace)
    return int(clusterings[0]["id"]) if clusterings else None


def latest_predicting_model_id(workspace: Workspace) -> int | None:
    from .sampling import latest_predicting_model

    try:
        return latest_predicting_model(workspace)
    except PipelineError:
        return None


def image_details(workspace: Workspace, image_ids, clustering_id: int | None = None):
    """For display: each image's file, subject, date, days since its subject's first image, current
    label (source, confidence, status), cluster in ``clustering_id`` (default: the latest), the
    latest model's prediction and its confidence, and the ground truth when there is one."""
    import pandas as pd

    from .cluster import load_clustering
    from .features import metadata_frame
    from .labels import current_labels
    from .metrics.clustering import ground_truth
    from .train import load_predictions

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


def interactions_until(workspace: Workspace, when: str) -> int:
    """Interactions spent in label events up to a moment (ISO time), e.g. a model's creation."""
    row = workspace.db.execute("SELECT COALESCE(SUM(interactions), 0) FROM label_events WHERE at <= ?", (when,)).fetchone()
    return int(row[0])


def session_ids(workspace: Workspace) -> list[int]:
    return [r[0] for r in workspace.db.execute("SELECT id FROM labeling_sessions ORDER BY id")]


STATUS_COLUMNS = ["cluster", "size", "labeled", "top_label", "top_count", "state"]


def cluster_table(workspace: Workspace, clustering_id: int):
    """``pipeline.labels.cluster_status`` as a DataFrame (one row per cluster)."""
    import pandas as pd

    from .labels import cluster_status

    return pd.DataFrame(cluster_status(workspace, clustering_id), columns=STATUS_COLUMNS)




def has_ground_truth(workspace: Workspace) -> bool:
    """Ground truth on at least 2 subjects: enough for a subject-grouped evaluation."""
    row = workspace.db.execute(
        "SELECT COUNT(DISTINCT i.subject_id) FROM ground_truth g JOIN images i ON i.id = g.image_id"
    ).fetchone()
    return row[0] >= 2
