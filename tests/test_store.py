"""The feature store on a real workspace: shards, incremental appends, ordering, errors."""
from __future__ import annotations

import numpy as np
import pytest

from serieslabeler.errors import PipelineError
from serieslabeler.store import FeatureStore, Workspace
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
