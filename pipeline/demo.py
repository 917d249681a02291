"""The bundled sample workspace, prepared so the app has something real to show at first start."""
from __future__ import annotations

from pathlib import Path

from .ingest import ColumnMapping, ingest
from .progress import Progress
from .workspace import Workspace

SAMPLE = Path(__file__).resolve().parent.parent / "data_samples" / "bananas"
SAMPLE_MAPPING = ColumnMapping(
    subject="fruit",
    date="date",
    time="time",
    label="ripeness",
    attributes=("group", "day", "hour"),
    file="file",
)


def prepare_sample(root: str | Path, progress: Progress | None = None) -> Workspace:
    """Create (or bring up to date) the sample workspace from ``data_samples/bananas``."""
    workspace = Workspace.create(root)
    if workspace.image_count() == 0:
        ingest(workspace, SAMPLE / "images", SAMPLE / "metadata.csv", SAMPLE_MAPPING, progress=progress)
    return workspace
