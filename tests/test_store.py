"""The feature store on a real workspace: shards, incremental appends, ordering, errors."""
from __future__ import annotations

import time

import numpy as np
import pytest

from serieslabeler.errors import PipelineError
from serieslabeler.store import CATALOG, FeatureStore, Workspace, checkpoints
from serieslabeler.store.workspace import PAGE_CACHE_KIB


def test_append_load_and_missing(bananas_workspace):
    workspace = Workspace.open(bananas_workspace)
    store = FeatureStore(workspace)
    store.register("toy@random", "toy", "random", dim=4)
    ids = np.array([r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id")])
    rng = np.random.default_rng(0)
    first = rng.normal(size=(200, 4))
    store.append("toy@random", ids[:200], first)
    assert len(store.missing("toy@random", ids)) == 20
    rest = rng.normal(size=(20, 4))
    store.append("toy@random", ids[200:], rest)
    assert len(store.missing("toy@random", ids)) == 0
    loaded_ids, vectors = store.load("toy@random")
    assert np.array_equal(loaded_ids, ids)
    np.testing.assert_allclose(vectors, np.vstack([first, rest]).astype(np.float32))
    picked = ids[[5, 210, 3]]
    _, some = store.load("toy@random", picked)
    np.testing.assert_allclose(some, np.vstack([first[5], rest[10], first[3]]).astype(np.float32))
    assert store.info("toy@random").count == 220
    assert store.resolve("toy") == "toy@random"


def test_newest_vector_wins_and_errors_are_clear(bananas_workspace):
    workspace = Workspace.open(bananas_workspace)
    store = FeatureStore(workspace)
    store.register("toy@random", "toy", "random", dim=2, dtype="float16")
    store.append("toy@random", [1, 2], np.zeros((2, 2)))
    store.append("toy@random", [2], np.ones((1, 2)))
    _, vectors = store.load("toy@random", [2, 1])
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, [[1, 1], [0, 0]])
    with pytest.raises(PipelineError, match="no vectors for 1 image"):
        store.load("toy@random", [3])
    with pytest.raises(PipelineError, match="expected"):
        store.append("toy@random", [3], np.zeros((1, 5)))
    with pytest.raises(PipelineError, match="no feature set 'nope'"):
        store.info("nope")
    assert not list(workspace.features_dir.rglob(".tmp-*")), "temporary files left behind"


@pytest.mark.parametrize("read_only", [False, True])
def test_connections_get_a_page_cache_sized_for_bulk_label_writes(bananas_workspace, read_only):
    with Workspace.open(bananas_workspace, read_only=read_only) as workspace:
        assert workspace.db.execute("PRAGMA cache_size").fetchone()[0] == -PAGE_CACHE_KIB


def catalog_bytes(root) -> bytes:
    return (root / CATALOG).read_bytes()


def test_commits_with_background_checkpoints_leave_the_catalog_file_to_the_keeper(bananas_workspace, monkeypatch):
    """A commit only appends to the log, closing a connection does not checkpoint (the keeper's
    is still open), and the keeper's checkpoint then writes the labels into the catalog file."""
    from serieslabeler.labels import current_labels, label_images

    monkeypatch.setattr(checkpoints, "DELAY_S", 60.0)  # the keeper's own checkpoint waits: this test takes it
    with Workspace.open(bananas_workspace) as workspace:  # a first checkpoint, the ordinary way
        workspace.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = catalog_bytes(bananas_workspace)
    with Workspace.open(bananas_workspace, background_checkpoints=True) as workspace:
        assert workspace.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for image_id in range(1, 31):
            label_images(workspace, [image_id], "R")
    assert catalog_bytes(bananas_workspace) == before, "the commits and the close wrote only the log"
    with Workspace.open(bananas_workspace, read_only=True) as reader:
        assert len(current_labels(reader)) == 30, "committed labels are read from the log"
    keeper = checkpoints.keeper_for(bananas_workspace / CATALOG)
    busy, frames, copied = keeper.checkpoint()
    assert busy == 0 and frames == copied > 0
    assert catalog_bytes(bananas_workspace) != before


def test_the_keeper_checkpoints_soon_after_a_write_and_retires_when_idle(bananas_workspace, monkeypatch):
    from serieslabeler.labels import label_images

    monkeypatch.setattr(checkpoints, "IDLE_S", 0.5)
    with Workspace.open(bananas_workspace, background_checkpoints=True) as workspace:
        keeper = checkpoints.keeper_for(bananas_workspace / CATALOG)
        label_images(workspace, [1], "R")
    deadline = time.monotonic() + 10
    while keeper.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert keeper.checkpoints == 1
    keeper._thread.join(timeout=10)
    assert not keeper._thread.is_alive() and checkpoints.keeper_for(bananas_workspace / CATALOG) is not keeper


def test_a_catalog_made_again_at_the_same_path_gets_its_own_keeper(bananas_workspace, tmp_path):
    """A keeper checkpoints the file it opened: a workspace removed and made again at the same
    path (a new file) gets a new keeper, so its log is not left to one holding the old file."""
    import shutil

    with Workspace.open(bananas_workspace, background_checkpoints=True):
        first = checkpoints.keeper_for(bananas_workspace / CATALOG)
    moved = tmp_path / "moved"
    shutil.copytree(bananas_workspace, moved)
    shutil.rmtree(bananas_workspace)
    shutil.copytree(moved, bananas_workspace)
    with Workspace.open(bananas_workspace, background_checkpoints=True):
        second = checkpoints.keeper_for(bananas_workspace / CATALOG)
    assert second is not first and second.file_id != first.file_id
    assert checkpoints.keeper_for(bananas_workspace / CATALOG) is second
