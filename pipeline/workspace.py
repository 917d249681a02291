"""The on-disk project: a folder with a SQLite catalog, an image store and a feature store.

Layout of a workspace folder::

    catalog.sqlite          the single source of truth (WAL mode, foreign keys on)
    images/ab/abcdef...jpg  content-addressed copies of the originals (SHA-256)
    thumbs/ab/abcdef...jpg  256 px thumbnails made once at ingest
    features/<set>/*.npy    feature shards (vectors + the image ids they belong to)
    maps/, models/          t-SNE maps and trained models

Every file is written to a temporary name and renamed into place, so a crash never
leaves a half-written file; every catalog change happens in one transaction.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import PipelineError

CATALOG = "catalog.sqlite"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subjects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    file_name TEXT NOT NULL,
    ext TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    subject_id INTEGER NOT NULL REFERENCES subjects(id),
    taken_at TEXT NOT NULL,
    ingested_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS images_subject_time ON images(subject_id, taken_at);
CREATE INDEX IF NOT EXISTS images_file_name ON images(file_name);
CREATE TABLE IF NOT EXISTS attributes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('numeric', 'categorical'))
);
CREATE TABLE IF NOT EXISTS image_attributes (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    attribute_id INTEGER NOT NULL REFERENCES attributes(id) ON DELETE CASCADE,
    value TEXT,
    PRIMARY KEY (image_id, attribute_id)
) WITHOUT ROWID;
-- attribute summaries (info) group one attribute's values without scanning every image's
CREATE INDEX IF NOT EXISTS image_attributes_value ON image_attributes(attribute_id, value);
-- Ground truth lives apart from labels made in the tool: evaluation never leaks into training.
CREATE TABLE IF NOT EXISTS ground_truth (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    label TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    strategy TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS sample_images (
    sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (sample_id, image_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS feature_sets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    backbone TEXT NOT NULL,
    weights TEXT NOT NULL,
    dim INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS feature_shards (
    id INTEGER PRIMARY KEY,
    feature_set_id INTEGER NOT NULL REFERENCES feature_sets(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    n INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS maps (
    id INTEGER PRIMARY KEY,
    feature_set TEXT NOT NULL,
    params TEXT NOT NULL,
    path TEXT NOT NULL,
    n INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS clusterings (
    id INTEGER PRIMARY KEY,
    feature_set TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    k INTEGER NOT NULL,
    space TEXT NOT NULL,
    sample_id INTEGER REFERENCES samples(id),
    params TEXT NOT NULL,
    parent_id INTEGER REFERENCES clusterings(id),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS cluster_members (
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    cluster INTEGER NOT NULL,
    distance REAL NOT NULL,
    PRIMARY KEY (clustering_id, image_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cluster_members_cluster ON cluster_members(clustering_id, cluster);

CREATE TABLE IF NOT EXISTS vocabulary (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- Append-only log of every labeling action; current_labels is maintained from it in the
-- same transaction.
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    author TEXT NOT NULL,
    action TEXT NOT NULL,
    label TEXT,
    source TEXT,
    iteration INTEGER,
    clustering_id INTEGER,
    cluster INTEGER,
    interactions INTEGER NOT NULL DEFAULT 0,
    reverses INTEGER REFERENCES label_events(id),
    session_id INTEGER,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS label_event_images (
    event_id INTEGER NOT NULL REFERENCES label_events(id),
    image_id INTEGER NOT NULL REFERENCES images(id),
    label TEXT,
    source TEXT,
    confidence REAL,
    status TEXT,
    prev_label TEXT,
    prev_source TEXT,
    prev_confidence REAL,
    prev_status TEXT,
    prev_event_id INTEGER,
    PRIMARY KEY (event_id, image_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS label_event_images_image ON label_event_images(image_id);
CREATE INDEX IF NOT EXISTS label_events_reverses ON label_events(reverses);
CREATE TABLE IF NOT EXISTS current_labels (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('manual', 'cluster', 'pseudo', 'import')),
    confidence REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'accepted' CHECK (status IN ('accepted', 'pending')),
    event_id INTEGER NOT NULL REFERENCES label_events(id)
);
CREATE INDEX IF NOT EXISTS current_labels_label ON current_labels(label);
CREATE TABLE IF NOT EXISTS labeling_sessions (
    id INTEGER PRIMARY KEY,
    author TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ended_at TEXT
);

CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    mode TEXT NOT NULL,
    feature_set TEXT,
    path TEXT NOT NULL,
    classes TEXT NOT NULL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    training_set TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS predictions (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    margin REAL NOT NULL,
    entropy REAL NOT NULL,
    topk TEXT NOT NULL,
    PRIMARY KEY (model_id, image_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS iterations (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    sample_id INTEGER REFERENCES samples(id),
    clustering_id INTEGER REFERENCES clusterings(id),
    model_id INTEGER REFERENCES models(id),
    record TEXT NOT NULL DEFAULT '{}'
);
"""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write to; it is renamed to ``path`` only if the block succeeds.

    The temporary name keeps the final suffix, so writers such as ``numpy.save`` that
    append an extension to unknown names write exactly where they are told.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Workspace:
    """A workspace folder and its catalog connection.

    Open with :meth:`open` (must exist) or :meth:`create` (made if missing). The connection
    has WAL journaling, foreign keys on and a busy timeout, so several processes (two
    browser tabs, a command line) can write to one workspace.
    """

    def __init__(self, root: Path, connection: sqlite3.Connection):
        self.root = root
        self.db = connection

    @classmethod
    def create(cls, root: str | os.PathLike) -> "Workspace":
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        return cls._connect(root)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Workspace":
        root = Path(root)
        if not (root / CATALOG).is_file():
            raise PipelineError(
                f"{root}: not a workspace (no {CATALOG}); create one with "
                f"'python -m pipeline ingest --workspace {root} ...'"
            )
        return cls._connect(root)

    @classmethod
    def _connect(cls, root: Path) -> "Workspace":
        connection = sqlite3.connect(
            root / CATALOG, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=60000")
        connection.execute("PRAGMA synchronous=NORMAL")
        workspace = cls(root, connection)
        workspace._migrate()
        return workspace

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise PipelineError(
                f"{self.root}: workspace schema version {version} is newer than this "
                f"tool's ({SCHEMA_VERSION}); update the tool"
            )
        with self.transaction():
            for statement in _statements(SCHEMA):
                self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all of it is committed, or none."""
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- folders -------------------------------------------------------------------------
    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def thumbs_dir(self) -> Path:
        return self.root / "thumbs"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def maps_dir(self) -> Path:
        return self.root / "maps"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    # --- image store ---------------------------------------------------------------------
    def stored_image_path(self, sha256: str, ext: str) -> Path:
        return self.images_dir / sha256[:2] / f"{sha256}{ext}"

    def thumbnail_path(self, sha256: str) -> Path:
        return self.thumbs_dir / sha256[:2] / f"{sha256}.jpg"

    def image_path(self, image_id: int) -> Path:
        row = self.db.execute("SELECT sha256, ext FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise PipelineError(f"no image with id {image_id} in {self.root}")
        return self.stored_image_path(row["sha256"], row["ext"])

    def image_paths(self, image_ids) -> list[Path]:
        """Stored-file paths for many image ids, in the order given."""
        by_id = {
            row["id"]: self.stored_image_path(row["sha256"], row["ext"])
            for row in self.query_in("SELECT id, sha256, ext FROM images WHERE id IN ({})", image_ids)
        }
        missing = [i for i in image_ids if int(i) not in by_id]
        if missing:
            raise PipelineError(f"no image with id {missing[0]} in {self.root}")
        return [by_id[int(i)] for i in image_ids]

    def thumbnail_paths(self, image_ids) -> list[Path]:
        rows = self.query_in("SELECT id, sha256 FROM images WHERE id IN ({})", image_ids)
        by_id = {row["id"]: self.thumbnail_path(row["sha256"]) for row in rows}
        return [by_id[int(i)] for i in image_ids]

    def query_in(self, sql: str, values, chunk: int = 900) -> list[sqlite3.Row]:
        """Run ``sql`` whose ``{}`` is an IN-list, in chunks below SQLite's variable limit."""
        values = [int(v) if hasattr(v, "__index__") else v for v in values]
        rows: list[sqlite3.Row] = []
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            rows += self.db.execute(sql.format(",".join("?" * len(part))), part).fetchall()
        return rows

    # --- small key/value settings ---------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row["value"]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def copy_to(self, target: str | os.PathLike) -> "Workspace":
        """A consistent copy of this workspace (SQLite's online backup plus the stored files)."""
        target = Path(target)
        shutil.copytree(self.root, target, ignore=shutil.ignore_patterns(f"{CATALOG}*", ".staging-*"))
        copy = Workspace.create(target)
        self.db.backup(copy.db)
        return copy

    def image_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements (no statement here contains a semicolon inside)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
