"""Shared fixtures: the real bananas collection, real workspaces on disk, the real CLI."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from serieslabeler.cli.main import main
from serieslabeler.store import Workspace

ROOT = Path(__file__).resolve().parent.parent
BANANAS = ROOT / "tests" / "data" / "bananas"
SAMPLE = ROOT / "data_samples" / "bananas"

BANANAS_MAPPING = [
    "--subject", "fruit", "--date", "date", "--time", "time", "--label", "ripeness",
    "--attributes", "group,day,hour", "--file", "file",
]


def cli(*argv: str | os.PathLike) -> tuple[int, dict]:
    """Run ``serieslabeler ... --json`` in-process; return the exit code and the JSON line."""
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
        pytest.fail(f"the bananas collection is missing at {BANANAS}")
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
    return private_copy(bananas_workspace_template, tmp_path / "ws")


@pytest.fixture(scope="session")
def bananas_embedded_template(bananas_workspace_template, tmp_path_factory) -> Path:
    """The ingested bananas workspace with ``efficientnet_lite0@imagenet`` vectors for all 220
    images, made once per session; copy it (``bananas_embedded``) before changing it."""
    from serieslabeler.embed import embed_workspace

    def embed(workspace):
        report = embed_workspace(workspace, "efficientnet_lite0")
        assert report.computed == 220, report

    return derived_template(tmp_path_factory, "bananas_embedded", bananas_workspace_template, embed)


def derived_template(tmp_path_factory, name: str, template: Path, build) -> Path:
    """A session-scoped template: a copy of ``template`` to which ``build(workspace)`` adds one step."""
    target = tmp_path_factory.mktemp(name) / "ws"
    with Workspace.open(template) as source, source.copy_to(target) as workspace:
        build(workspace)
    return target


def private_copy(template: Path, target: Path) -> Path:
    """Copy a template workspace to ``target`` (for function-scoped fixtures)."""
    with Workspace.open(template) as workspace:
        workspace.copy_to(target).close()
    return target


@pytest.fixture
def bananas_embedded(bananas_embedded_template, tmp_path) -> Path:
    """A private copy of the embedded bananas workspace that a test may change."""
    return private_copy(bananas_embedded_template, tmp_path / "ws")


@pytest.fixture(scope="session")
def bananas_clustered_template(bananas_embedded_template, tmp_path_factory) -> Path:
    """The embedded bananas workspace with one saved k-means clustering (id 1, k=8, seed 0, on
    ``efficientnet_lite0@imagenet``), made once per session; copy it (``bananas_clustered``)."""
    from serieslabeler.clustering import run_clustering

    def cluster(workspace):
        assert run_clustering(workspace, "efficientnet_lite0@imagenet", "kmeans", 8, seed=0).id == 1

    return derived_template(tmp_path_factory, "bananas_clustered", bananas_embedded_template, cluster)


@pytest.fixture
def bananas_clustered(bananas_clustered_template, tmp_path) -> Path:
    """A private copy of the clustered bananas workspace that a test may change."""
    return private_copy(bananas_clustered_template, tmp_path / "ws")


@pytest.fixture(scope="session")
def sample_workspace_template(tmp_path_factory) -> Path:
    """The app's bundled sample workspace as ``serieslabeler demo`` prepares it (80 images,
    embedded, a t-SNE map, a k=4 clustering), made once per session; copy it (``sample_workspace``)."""
    from serieslabeler.demo import prepare_sample

    target = tmp_path_factory.mktemp("sample") / "ws"
    prepare_sample(target).close()
    return target


@pytest.fixture
def sample_workspace(sample_workspace_template, tmp_path) -> Path:
    """A private copy of the prepared sample workspace that a test may change."""
    return private_copy(sample_workspace_template, tmp_path / "sample")


@contextlib.contextmanager
def served_on(address: str | None):
    """Streamlit's ``server.address`` as the app sees it (``st.get_option``), for AppTest runs."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", address)
    try:
        yield
    finally:
        config.set_option("server.address", before)
