"""Read-only views of the catalog, joined for display and scripts (the app's tables and charts)."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import pandas as pd

from serieslabeler.clustering.evaluate import ClusteringEvaluation
from serieslabeler.clustering.runs import (
    latest_clustering,
)
from serieslabeler.errors import PipelineError
from serieslabeler.ingest.dates import readable_time
from serieslabeler.labels.clusters import cluster_status
from serieslabeler.sampling import predicting_model
from serieslabeler.space.metadata import metadata_frame
from serieslabeler.store.queries import IMAGE_COLUMNS, id_array, image_table
from serieslabeler.store.workspace import Workspace


def latest_clustering_id(workspace: Workspace) -> int | None:
    return latest_clustering(workspace)


def latest_predicting_model_id(workspace: Workspace) -> int | None:
    return predicting_model(workspace)


LABEL_DETAILS = ["label", "source", "confidence", "status"]
DETAILS_SQL = (
    "SELECT i.id AS image_id, i.file_name AS file, s.name AS subject, i.taken_at, "
    "c.label, c.source, c.confidence, c.status, m.cluster, p.label AS predicted, "
    "p.confidence AS prediction_confidence, g.label AS truth "
    "FROM json_each(?) j CROSS JOIN images i ON i.id = j.value JOIN subjects s ON s.id = i.subject_id "
    "LEFT JOIN current_labels c ON c.image_id = i.id "
    "LEFT JOIN cluster_members m ON m.clustering_id = ? AND m.image_id = i.id "
    "LEFT JOIN predictions p ON p.model_id = ? AND p.image_id = i.id "
    "LEFT JOIN ground_truth g ON g.image_id = i.id ORDER BY j.key"
)


def image_details(workspace: Workspace, image_ids, clustering_id: int | None = None):
    """For display: each image's file, subject, date, days since its subject's first image, current
    label (source, confidence, status), cluster in ``clustering_id`` (default: the latest), the
    latest model's prediction and its confidence, and the ground truth when there is one.

    One query through the tables' keys for exactly these images (a page shows 200 or 5,000 of a
    million): its cost follows the number of images shown, not the collection's size."""

    ids = [int(i) for i in image_ids]
    clustering_id = clustering_id or latest_clustering_id(workspace)
    model_id = latest_predicting_model_id(workspace)
    rows = workspace.db.execute(DETAILS_SQL, (id_array(ids), clustering_id, model_id)).fetchall()
    found = pd.DataFrame([dict(r) for r in rows], columns=rows[0].keys() if rows else None).drop_duplicates("image_id")
    frame = found.set_index("image_id").reindex(pd.Index(ids, name="image_id")) if len(found) else pd.DataFrame(index=pd.Index(ids, name="image_id"))
    frame = frame.reindex(columns=[*IMAGE_COLUMNS[1:], *LABEL_DETAILS, "cluster", "predicted", "prediction_confidence", "truth"])
    frame.insert(3, "days", metadata_frame(workspace, ids, ["days"])["days"].round(2).to_numpy())
    for column in ("confidence", "prediction_confidence"):
        frame[column] = pd.to_numeric(frame[column])
    frame["cluster"] = frame["cluster"].astype("Int64")
    optional = [
        ("cluster", clustering_id is None),
        ("predicted", model_id is None),
        ("prediction_confidence", model_id is None),
        ("truth", frame["truth"].isna().all()),
    ]
    return frame.drop(columns=[column for column, absent in optional if absent]).reset_index()


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
    stages_source: str | None = None  # "ground truth", else "labels" (accepted ones); None: neither
    missing: list[str] = field(default_factory=list)  # stages of the collection with no image here

    def to_dict(self) -> dict:
        return asdict(self)

    def describe_stages(self) -> str | None:
        """The stages held, in words: what a caption may honestly promise about the sample."""
        if self.stages_source is None:
            return None
        parts = [f"{s.stage} {s.images} of {s.in_collection}" for s in self.stages]
        tail = f"; no image of {', '.join(self.missing)}" if self.missing else ""
        return f"By {self.stages_source}, the sample holds {', '.join(parts) or 'no staged image'}{tail}."


def stage_counts(workspace: Workspace, image_ids) -> tuple[str | None, Counter, dict[str, int]]:
    """``(source, counts among image_ids, counts in the collection)`` of the stages, by ground
    truth when there is some, else by accepted labels; ``(None, {}, {})`` when neither exists."""
    ids = [int(i) for i in image_ids]
    for source, table, condition in (("ground truth", "ground_truth", ""), ("labels", "current_labels", "AND status='accepted'")):
        totals = dict(workspace.db.execute(f"SELECT label, COUNT(*) FROM {table} WHERE 1=1 {condition} GROUP BY label ORDER BY label").fetchall())
        if totals:
            held = Counter(row[0] for row in workspace.query_in(f"SELECT label FROM {table} WHERE image_id IN ({{}}) {condition}", ids))
            return source, held, totals
    return None, Counter(), {}


def sample_coverage(workspace: Workspace, image_ids) -> SampleCoverage:
    """Subjects, days and stages covered by ``image_ids`` (a sample or a preview).

    ``days_covered``: the most days since a subject's first photo among them; ``stages``: by
    ground truth, else by accepted labels, most frequent first (ties by name), each with its
    count in the collection; ``missing``: the collection's stages with no image among them.
    """
    table = image_table(workspace, image_ids)
    days = metadata_frame(workspace, image_ids, ["days"])["days"].to_numpy(dtype=float)
    source, held, in_collection = stage_counts(workspace, image_ids)
    stages = sorted(((str(stage), int(n)) for stage, n in held.items()), key=lambda item: (-item[1], item[0]))
    return SampleCoverage(
        images=len(table),
        subjects=int(table["subject"].nunique()),
        days_covered=float(days.max()) if len(days) else None,
        per_subject={str(k): int(v) for k, v in table.groupby("subject").size().items()},
        days=days.tolist(),
        stages=[StageCoverage(stage, n, int(in_collection.get(stage, 0))) for stage, n in stages],
        stages_source=source,
        missing=[stage for stage in in_collection if not held.get(stage)],
    )
