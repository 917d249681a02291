"""The bundled sample workspace, prepared so the app has something real to show at first start.

``prepare_sample`` brings a workspace up to the state a demo starts from: the 80 sample photos
ingested, embedded with the packaged ImageNet EfficientNet-Lite0 (offline), a structure-aware
sample of all four bananas, a t-SNE map and a first k-means clustering (k=4, with the days since
each banana's first photo appended). It prepares only a workspace that is new or holds nothing
but the sample's photos: pointed at a collection of a user's own, it refuses, rather than embed a
million photos and add a map and a clustering nobody asked for. The label vocabulary starts empty: the expert names the
stages (copying the ground truth's names would preselect answers the demo is meant to ask for). Each step runs only when its output is missing, so calling
it again is quick and never changes what the user has done since.
"""
from __future__ import annotations

import csv
from pathlib import Path

from serieslabeler.clustering.runs import run_clustering
from serieslabeler.embed.local import embed_workspace
from serieslabeler.errors import PipelineError
from serieslabeler.ingest.run import ingest
from serieslabeler.ingest.tables import ColumnMapping
from serieslabeler.progress import Progress
from serieslabeler.sampling import draw_sample
from serieslabeler.space.reduce import create_map
from serieslabeler.store.workspace import CATALOG, Workspace

SAMPLE = Path(__file__).resolve().parent.parent / "data_samples" / "bananas"


SAMPLE_MAPPING = ColumnMapping(
    subject="fruit",
    date="date",
    time="time",
    label="ripeness",
    attributes=("group", "day", "hour"),
    file="file",
)


SAMPLE_BACKBONE = "efficientnet_lite0"


SAMPLE_SUBJECTS = 4


SAMPLE_K = 4


# Share of the variance given to "days since the subject's first photo": on the sample this
# raises k-means purity against ripeness from 0.70 (features alone) to 0.75.
SAMPLE_METADATA = {"days": 0.5}


def prepare_sample(root: str | Path, progress: Progress | None = None) -> Workspace:
    """Create (or bring up to date) the sample workspace from ``data_samples/bananas``."""

    if not is_sample_workspace(root):
        raise PipelineError(f"{root} holds a collection of its own, not only the bundled sample's photos: "
                            "the sample is prepared only in a new workspace or in the sample's own")
    workspace = Workspace.create(root)
    db = workspace.db
    if workspace.image_count() == 0:
        ingest(workspace, SAMPLE / "images", SAMPLE / "metadata.csv", SAMPLE_MAPPING, progress=progress)
    feature_set = embed_workspace(workspace, SAMPLE_BACKBONE, progress=progress).feature_set
    if not db.execute("SELECT 1 FROM samples LIMIT 1").fetchone():
        draw_sample(workspace, "subjects", subjects=SAMPLE_SUBJECTS, include_labeled=True)
    sample_id = db.execute("SELECT MIN(id) FROM samples").fetchone()[0]
    if not db.execute("SELECT 1 FROM maps LIMIT 1").fetchone():
        create_map(workspace, feature_set, metadata=SAMPLE_METADATA, sample_id=sample_id)
    if not db.execute("SELECT 1 FROM clusterings LIMIT 1").fetchone():
        run_clustering(workspace, feature_set, "kmeans", SAMPLE_K, metadata=SAMPLE_METADATA, sample_id=sample_id)
    return workspace


def sample_file_names() -> set[str]:
    """The file names of the bundled sample's photos (its metadata table's ``file`` column)."""
    with open(SAMPLE / "metadata.csv", newline="") as handle:
        return {row[SAMPLE_MAPPING.file] for row in csv.DictReader(handle)}


def is_sample_workspace(root: str | Path) -> bool:
    """True for a folder with no workspace yet, or a workspace whose photos are all the sample's."""
    if not (Path(root) / CATALOG).exists():
        return True
    names = sample_file_names()
    with Workspace.open(root, read_only=True) as workspace:
        if workspace.image_count() > len(names):
            return False
        return all(name in names for (name,) in workspace.db.execute("SELECT file_name FROM images"))
