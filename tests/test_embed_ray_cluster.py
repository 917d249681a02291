"""The Ray engine on a simulated two-node cluster whose workers cannot see the workspace.

The head node has no CPUs, so every decoding task and model actor runs on the second node.
The workers start in another working directory, and an audit hook installed in every worker
process (``worker_process_setup_hook``) refuses any open, listing or folder creation under the
folder that holds the workspaces: a worker that reads a stored image or writes a shard there
fails, as the engine did when it needed a shared disk.
"""
from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from conftest import cli, private_copy

from serieslabeler.embed import embed_with_ray, embed_workspace, worker_runtime_env
from serieslabeler.errors import PipelineError
from serieslabeler.store import FeatureStore, Workspace

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402 - only once Ray is known to be installed

IMAGES = 12
FORBIDDEN = "SERIESLABELER_TEST_FORBIDDEN"
STORE_BYTES = 128 << 20  # Ray's minimum object store is 75 MB


def forbid_the_workspaces() -> None:
    """Worker setup hook: any file access under ``$SERIESLABELER_TEST_FORBIDDEN`` raises."""
    root = os.environ[FORBIDDEN]

    def audit(event: str, args: tuple) -> None:
        if event in ("open", "os.listdir", "os.scandir", "os.mkdir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path == root or path.startswith(root + os.sep):
                raise PermissionError(f"a Ray worker touched the workspace folder: {path}")

    sys.addaudithook(audit)


@pytest.fixture(scope="module")
def two_nodes():
    """A head without CPUs and one worker node (2 CPUs), each with a 128 MB object store."""
    if ray.is_initialized():
        pytest.skip("another Ray is running in this process")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": STORE_BYTES})
    cluster.add_node(num_cpus=2, object_store_memory=STORE_BYTES)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture
def jailed_driver(two_nodes, tmp_path):
    """Connect to the cluster with workers started in an empty folder elsewhere and forbidden
    ``tmp_path / 'workspaces'``; yields that folder."""
    workspaces, elsewhere = tmp_path / "workspaces", tmp_path / "worker-cwd"
    workspaces.mkdir()
    elsewhere.mkdir()
    (elsewhere / "README").write_text("the Ray workers' working directory\n")
    runtime_env = {
        **worker_runtime_env(),
        "working_dir": str(elsewhere),
        "env_vars": {FORBIDDEN: str(workspaces.resolve())},
        "worker_process_setup_hook": forbid_the_workspaces,
    }
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    ray.init(address=two_nodes.address, runtime_env=runtime_env, log_to_driver=False)
    try:
        yield workspaces
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
def test_ray_on_two_nodes_without_the_workspace_gives_the_local_engines_features(bananas_workspace_template, jailed_driver, tmp_path):
    local, sent, uri = (private_copy(bananas_workspace_template, path) for path in (
        tmp_path / "local", jailed_driver / "bytes", jailed_driver / "uri"))
    with Workspace.open(local) as workspace:
        ids = [r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id LIMIT ?", (IMAGES,))]
        embed_workspace(workspace, "resnet18", weights="random", image_ids=ids)
        _, expected = FeatureStore(workspace).load("resnet18@random")

    # the image bytes through the object store: blocks of 8 (batch 1), one window per block
    with Workspace.open(sent) as workspace:
        report = embed_with_ray(workspace, "resnet18", weights="random", image_ids=ids, batch_size=1, window_bytes=1)
        assert (report.computed, report.cached) == (IMAGES, 0)
        got_ids, vectors = FeatureStore(workspace).load("resnet18@random")
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-5)
        again = embed_with_ray(workspace, "resnet18", weights="random", image_ids=ids)
        assert (again.computed, again.cached) == (0, IMAGES)

    # the workers read a copy of the images folder from a URI; one copy there is damaged
    mirror = tmp_path / "mirror"
    with Workspace.open(uri) as workspace:
        shutil.copytree(workspace.images_dir, mirror)
        broken = mirror / workspace.image_path(ids[3]).relative_to(workspace.images_dir)
        broken.chmod(0o644)
        broken.write_bytes(b"not a jpeg")
        with pytest.raises(PipelineError, match=rf"1 image\(s\) could not be read, e.g. image {ids[3]} \({broken}\)"):
            embed_with_ray(workspace, "resnet18", weights="random", image_ids=ids, images_uri=str(mirror))
        got_ids, vectors = FeatureStore(workspace).load("resnet18@random")
    keep = np.arange(IMAGES) != 3
    np.testing.assert_array_equal(got_ids, np.asarray(ids)[keep])
    np.testing.assert_allclose(vectors, expected[keep], rtol=1e-5, atol=1e-5)


def test_an_unusable_images_uri_is_refused_before_anything_is_written(bananas_workspace):
    code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "resnet18", "--weights", "random",
                     "--engine", "ray", "--images-uri", "nosuch://x")
    assert code == 2 and data["error"].startswith("--images-uri 'nosuch://x'"), data
    with Workspace.open(bananas_workspace) as workspace:
        assert FeatureStore(workspace).names() == []
    code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "resnet18", "--images-uri", "/tmp")
    assert code == 2 and "--images-uri go with --engine ray" in data["error"], data
