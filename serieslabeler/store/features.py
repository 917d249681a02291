"""The feature store: vectors per (backbone, weights identity), never computed twice.

A feature set is a name such as ``efficientnet_lite0@imagenet`` or ``model-3`` registered in
the catalog, and a list of *shards*: each shard is a pair of ``.npy`` files (the vectors and
the image ids they belong to) written atomically and recorded in the catalog in one
transaction. Adding 10 images to 100,000 writes one small shard; nothing is rewritten.
Reading concatenates the shards (memory-mapped), so a million rows never pass through a
Python list.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.store.paths import relative_inside
from serieslabeler.store.workspace import Workspace, atomic_path

DTYPES = ("float32", "float16")


SAFE_NAME = re.compile(r"[^A-Za-z0-9_.@+-]")


@dataclass(frozen=True)
class FeatureSet:
    """A registered feature set and how many images it covers."""

    name: str
    backbone: str
    weights: str
    dim: int
    dtype: str
    count: int
    params: dict


class FeatureStore:
    def __init__(self, workspace: Workspace):
        self.workspace = workspace

    # --- catalog of feature sets ----------------------------------------------------------
    def names(self, newest_first: bool = False) -> list[str]:
        order = "id DESC" if newest_first else "name"
        return [r[0] for r in self.workspace.db.execute(f"SELECT name FROM feature_sets ORDER BY {order}")]

    def info(self, name: str) -> FeatureSet:
        row = self.workspace.db.execute(
            "SELECT fs.*, COALESCE((SELECT SUM(n) FROM feature_shards WHERE feature_set_id = fs.id), 0) AS count "
            "FROM feature_sets fs WHERE fs.name = ?",
            (name,),
        ).fetchone()
        if row is None:
            known = ", ".join(self.names()) or "none yet; run 'serieslabeler embed'"
            raise PipelineError(f"no feature set '{name}' in {self.workspace.root} (known: {known})")
        return FeatureSet(row["name"], row["backbone"], row["weights"], row["dim"], row["dtype"], row["count"], json.loads(row["params"]))

    def resolve(self, name_or_backbone: str) -> str:
        """A full feature-set name from itself or from a backbone name that has exactly one set."""
        names = self.names()
        if name_or_backbone in names:
            return name_or_backbone
        matches = [n for n in names if n.split("@")[0] == name_or_backbone]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise PipelineError(f"'{name_or_backbone}' has several feature sets ({', '.join(matches)}); name one")
        return self.info(name_or_backbone).name

    def register(self, name: str, backbone: str, weights: str, dim: int, dtype: str = "float32", params: dict | None = None) -> FeatureSet:
        """Create a feature set if new; an existing one must have the same width and dtype."""
        if dtype not in DTYPES:
            raise PipelineError(f"feature dtype must be one of {DTYPES}, not '{dtype}'")
        with self.workspace.transaction() as db:
            row = db.execute("SELECT dim, dtype FROM feature_sets WHERE name=?", (name,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO feature_sets(name, backbone, weights, dim, dtype, params) VALUES (?,?,?,?,?,?)",
                    (name, backbone, weights, dim, dtype, json.dumps(params or {})),
                )
            elif (row["dim"], row["dtype"]) != (dim, dtype):
                raise PipelineError(
                    f"feature set '{name}' holds {row['dim']}-dim {row['dtype']} vectors, not {dim}-dim {dtype}"
                )
        return self.info(name)

    # --- shards ---------------------------------------------------------------------------
    def append(self, name: str, image_ids: np.ndarray, vectors: np.ndarray) -> int:
        """Write one shard (atomically) and record it; returns the number of rows written."""
        info = self.info(name)
        image_ids = np.asarray(image_ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=info.dtype)
        if vectors.ndim != 2 or vectors.shape != (len(image_ids), info.dim):
            raise PipelineError(f"feature set '{name}': expected ({len(image_ids)}, {info.dim}) vectors, got {vectors.shape}")
        if len(image_ids) == 0:
            return 0
        folder = self.workspace.features_dir / SAFE_NAME.sub("_", name)
        shard = uuid.uuid4().hex[:12]
        vectors_path, ids_path = folder / f"{shard}.npy", folder / f"{shard}.ids.npy"
        with atomic_path(vectors_path) as tmp:
            np.save(tmp, vectors)
        with atomic_path(ids_path) as tmp:
            np.save(tmp, image_ids)
        with self.workspace.transaction() as db:
            set_id = db.execute("SELECT id FROM feature_sets WHERE name=?", (name,)).fetchone()[0]
            db.execute(
                "INSERT INTO feature_shards(feature_set_id, path, n) VALUES (?,?,?)",
                (set_id, str(vectors_path.relative_to(self.workspace.root)), len(image_ids)),
            )
        return len(image_ids)

    def _shards(self, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
        rows = self.workspace.db.execute(
            "SELECT sh.path FROM feature_shards sh JOIN feature_sets fs ON fs.id = sh.feature_set_id "
            "WHERE fs.name=? ORDER BY sh.id",
            (name,),
        ).fetchall()
        shards = []
        for row in rows:
            vectors_path = relative_inside(self.workspace.root, row["path"], "feature shard")
            ids_path = vectors_path.with_name(vectors_path.name[: -len(".npy")] + ".ids.npy")
            shards.append((np.load(ids_path, allow_pickle=False), np.load(vectors_path, mmap_mode="r", allow_pickle=False)))
        return shards

    def ids(self, name: str) -> np.ndarray:
        """Every image id the feature set covers (later shards win for repeated ids)."""
        self.info(name)
        parts = [ids for ids, _ in self._shards(name)]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def missing(self, name: str, image_ids) -> np.ndarray:
        """The ids among ``image_ids`` that have no vector yet (all of them for an unknown set)."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        if name not in self.names():
            return image_ids
        return image_ids[~np.isin(image_ids, self.ids(name))]

    def load(self, name: str, image_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, X)``: every vector of the set, or those of ``image_ids`` in that order (float32)."""
        info = self.info(name)
        shards = self._shards(name)
        all_ids = np.concatenate([ids for ids, _ in shards]) if shards else np.empty(0, np.int64)
        # keep the last occurrence of each id (a re-embedded image's newest vector)
        reversed_ids = all_ids[::-1]
        unique_ids, first_in_reversed = np.unique(reversed_ids, return_index=True)
        latest = len(all_ids) - 1 - first_in_reversed
        if image_ids is None:
            return unique_ids, _gather(shards, latest, info.dim)
        wanted = np.asarray(image_ids, dtype=np.int64)
        position = np.searchsorted(unique_ids, wanted)
        position = np.clip(position, 0, max(len(unique_ids) - 1, 0))
        found = (len(unique_ids) > 0) & (unique_ids[position] == wanted) if len(unique_ids) else np.zeros(len(wanted), bool)
        if not np.all(found):
            absent = wanted[~found]
            raise PipelineError(
                f"feature set '{name}' has no vectors for {len(absent)} image(s) (e.g. id {absent[0]}); "
                f"run 'serieslabeler embed' first"
            )
        return wanted, _gather(shards, latest[position], info.dim)


def _gather(shards: list[tuple[np.ndarray, np.ndarray]], positions: np.ndarray, dim: int) -> np.ndarray:
    """Rows ``positions`` of the shards' concatenation as one float32 array, read straight from
    the memory-mapped shards (no concatenated copy: a million rows need their own size only)."""
    out = np.empty((len(positions), dim), np.float32)
    offsets = np.cumsum([0] + [len(ids) for ids, _ in shards])
    shard_of = np.searchsorted(offsets, positions, side="right") - 1
    for index, (_, vectors) in enumerate(shards):
        rows = np.flatnonzero(shard_of == index)
        if len(rows):
            out[rows] = vectors[positions[rows] - offsets[index]]
    return out
