"""Shared fixtures: the real bananas collection, real workspaces on disk, the real CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
BANANAS = Path(os.environ.get("BANANAS_DIR", ROOT.parent / "shared" / "datasets" / "bananas"))
SAMPLE = ROOT / "data_samples" / "bananas"

BANANAS_MAPPING = [
    "--subject", "fruit", "--date", "date", "--time", "time", "--label", "ripeness",
    "--attributes", "group,day,hour", "--file", "file",
]


def cli(*argv: str | os.PathLike) -> tuple[int, dict]:
    """Run ``python -m pipeline ... --json`` in-process; return the exit code and the JSON line."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv] + ["--json"])
    lines = out.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {})


def ingest_bananas(workspace: Path, images: Path = BANANAS / "images", metadata: Path = BANANAS / "metadata.csv", *extra):
    return cli("ingest", "--workspace", workspace, "--images", images, "--metadata", metadata, *BANANAS_MAPPING, *extra)


@pytest.fixture(scope="session")
def bananas() -> Path:
    if not (BANANAS / "metadata.csv").is_file():
        pytest.fail(f"the bananas collection is missing at {BANANAS} (set BANANAS_DIR)")
    return BANANAS


@pytest.fixture(scope="session")
def bananas_workspace_template(tmp_path_factory, bananas) -> Path:
    """One ingested bananas workspace per test session; copy it before changing it."""
    workspace = tmp_path_factory.mktemp("bananas") / "ws"
    code, data = ingest_bananas(workspace)
    assert code == 0, data
    return workspace


@pytest.fixture
def bananas_workspace(bananas_workspace_template, tmp_path) -> Path:
    """A private copy of the ingested bananas workspace that a test may change."""
    target = tmp_path / "ws"
    with Workspace.open(bananas_workspace_template) as template:
        template.copy_to(target).close()
    return target
