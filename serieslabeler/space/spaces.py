"""space.spaces"""
from __future__ import annotations

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.space.metadata import build_matrix
from serieslabeler.space.reduce import PCA_COMPONENTS, fit_pca, latest_map, load_map
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.queries import sample_ids
from serieslabeler.store.workspace import Workspace

SPACES = ("full", "pca", "tsne")


# --- spaces -----------------------------------------------------------------------------------
SPACE_OPTIONS = ("metadata", "absolute_dates", "n_components", "map_id")


def space_options(space: str, metadata=None, absolute_dates=False, n_components=PCA_COMPONENTS, map_id=None) -> dict:
    """The options that define a space, as they are saved with a clustering."""
    if space not in SPACES:
        raise PipelineError(f"unknown space '{space}'; choose one of {', '.join(SPACES)}")
    if space == "tsne":
        if metadata:
            raise PipelineError(
                "clustering on t-SNE coordinates uses the map as it was made; put the metadata into the map "
                "('serieslabeler map --metadata ...') instead of --metadata here"
            )
        return {"map_id": map_id}
    options = {"metadata": dict(metadata or {}), "absolute_dates": bool(absolute_dates)}
    if space == "pca":
        options["n_components"] = int(n_components)
    return options


def prepare_space(
    workspace: Workspace, feature_set: str, space: str, metadata, sample_id, image_ids, seed: int, params: dict
) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """``(feature set name, ids, X, space options)`` for a clustering request.

    Takes the space options (``absolute_dates``, ``n_components``, ``map_id``) out of ``params``,
    leaving the algorithm's own options there.
    """

    name = FeatureStore(workspace).resolve(feature_set)
    if image_ids is None and sample_id is not None:
        image_ids = sample_ids(workspace, sample_id)
    extra = {key: params.pop(key) for key in SPACE_OPTIONS[1:] if key in params}
    options = space_options(space, metadata, **extra)
    ids, X, options = build_space(workspace, name, space, image_ids, seed, **options)
    return name, ids, X, options


def build_space(workspace: Workspace, feature_set: str, space: str, image_ids, seed: int, **options) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(ids, X, options)``: the images (sorted ids) as rows of the space; ``options`` completed (map id)."""
    if space == "tsne":
        return _tsne_space(workspace, feature_set, image_ids, options.get("map_id"))

    ids = None if image_ids is None else np.unique(np.asarray(image_ids, dtype=np.int64))
    matrix = build_matrix(
        workspace, feature_set, image_ids=ids, metadata=options.get("metadata") or None,
        absolute_dates=options.get("absolute_dates", False),
    )
    X = matrix.X
    if space == "pca":

        X = fit_pca(X, options["n_components"], seed).transform(X).astype(np.float32)
    return np.asarray(matrix.ids, dtype=np.int64), X, options


def _tsne_space(workspace: Workspace, feature_set: str, image_ids, map_id: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Coordinates of a saved t-SNE map of ``feature_set`` (the latest one unless ``map_id``)."""

    saved = load_map(workspace, map_id) if map_id is not None else latest_map(workspace, feature_set)
    if saved is None:
        raise PipelineError(
            f"no t-SNE map of '{feature_set}' yet; make one with 'serieslabeler map --features {feature_set}'"
        )
    if saved.feature_set != feature_set:
        raise PipelineError(f"map {saved.id} is a map of '{saved.feature_set}', not of '{feature_set}'")
    order = np.argsort(saved.ids)
    ids, coords = saved.ids[order], saved.coords[order]
    if image_ids is not None:
        wanted = np.unique(np.asarray(image_ids, dtype=np.int64))
        absent = wanted[~np.isin(wanted, ids)]
        if len(absent):
            raise PipelineError(
                f"map {saved.id} does not hold {len(absent)} of the {len(wanted)} images to cluster (e.g. id {absent[0]}); "
                f"make a map of them ('serieslabeler map --features {feature_set} --sample ID')"
            )
        keep = np.isin(ids, wanted)
        ids, coords = ids[keep], coords[keep]
    return ids, np.asarray(coords, dtype=np.float32), {"map_id": int(saved.id)}
