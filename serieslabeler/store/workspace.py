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

from serieslabeler.errors import PipelineError
from serieslabeler.store.checkpoints import WAL_SIZE_LIMIT, keeper_for
from serieslabeler.store.migrations import (
    SCHEMA_VERSION,
    apply_migrations,
    check_version,
    schema_version,
)

CATALOG = "catalog.sqlite"
# Ingest stages decoded images in ``<root>/.staging-<pid>-<random>/`` (see serieslabeler.ingest.run).
STAGING_PREFIX = ".staging-"
PAGE_CACHE_KIB = 64 * 1024  # per connection, an upper bound: filled only as pages are read


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

    def __init__(self, root: Path, connection: sqlite3.Connection, read_only: bool = False, background_checkpoints: bool = False):
        self.root = root
        self.db = connection
        self.read_only = read_only
        self.background_checkpoints = background_checkpoints and not read_only
        if self.background_checkpoints:
            keeper_for(root / CATALOG)
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")

    @classmethod
    def create(cls, root: str | os.PathLike) -> "Workspace":
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise PipelineError(f"{root}: is a file, not a workspace folder")
        if (root / CATALOG).is_file():  # an existing workspace: read-only when it cannot be written
            return cls.open(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PipelineError(f"{root}: cannot create the workspace folder ({error.strerror})") from None
        return cls._connect(root, read_only=False)

    @classmethod
    def open(cls, root: str | os.PathLike, read_only: bool | None = None, background_checkpoints: bool = False) -> "Workspace":
        """Open an existing workspace; ``read_only`` None: read-only exactly when the folder or
        its catalog cannot be written (then every write is refused with one clear message).
        ``background_checkpoints``: commits leave the log's checkpoint to this process's keeper
        thread (:mod:`serieslabeler.store.checkpoints`; for long-running processes)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise PipelineError(f"{root}: is a file, not a workspace folder")
        if not (root / CATALOG).is_file():
            raise PipelineError(
                f"{root}: not a workspace (no {CATALOG}); create one with "
                f"'serieslabeler ingest --workspace {root} ...'"
            )
        if read_only is None:
            read_only = not (os.access(root, os.W_OK) and os.access(root / CATALOG, os.W_OK))
        if not read_only:
            remove_abandoned_staging(root)
        return cls._connect(root, read_only, background_checkpoints)

    @classmethod
    def _connect(cls, root: Path, read_only: bool, background_checkpoints: bool = False) -> "Workspace":
        try:
            connection = _connection(root / CATALOG, read_only)
            workspace = cls(root, connection, read_only, background_checkpoints)
            workspace._migrate()
        except sqlite3.DatabaseError as error:
            raise PipelineError(f"{root / CATALOG}: not a usable catalog ({error})") from None
        return workspace

    def _migrate(self) -> None:
        """Bring the catalog to the current schema; a current one is only read, never written."""
        if schema_version(self.db) == SCHEMA_VERSION:
            return
        check_version(self.db, self.root)
        if self.read_only:
            raise PipelineError(f"{self.root}: the workspace is read-only and was made by an older version; open it once where it can be written to upgrade it")
        with self.transaction():
            apply_migrations(self.db, self.root)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def require_writable(self) -> None:
        """Refuse, in one line, work that would write files before its transaction (ingest staging)."""
        if self.read_only:
            raise PipelineError(f"{self.root}: the workspace is read-only; nothing was changed")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all of it is committed, or none."""
        if self.db.in_transaction:
            yield self.db
            return
        self.require_writable()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as error:
            raise write_error(self.root, error) from None
        if self.background_checkpoints:
            keeper_for(self.root / CATALOG).wrote()

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

    def plain_rows(self, sql: str, params=()) -> list[tuple]:
        """All rows of a query as plain tuples: for bulk reads (a row per image of the
        collection), where building a ``sqlite3.Row`` per row would cost more than the query."""
        return self.plain_cursor(sql, params).fetchall()

    def plain_cursor(self, sql: str, params=()) -> sqlite3.Cursor:
        """A query's rows as plain tuples, one at a time (a million-row read streamed into an array)."""
        cursor = self.db.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params)

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


def remove_abandoned_staging(root: Path) -> list[Path]:
    """Remove staging folders a killed ingest left (its process is gone); returns them."""
    removed = []
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        owner = folder.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if folder.is_dir() and not (owner.isdigit() and _process_alive(int(owner))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _connection(path: Path, read_only: bool) -> sqlite3.Connection:
    """A connection with WAL journaling, foreign keys, a busy timeout and a page cache of
    :data:`PAGE_CACHE_KIB` (SQLite's default 2 MB rereads the label indexes of a million-image
    catalog on every bulk write); read-only ones open the file with ``mode=ro`` (or
    ``immutable=1`` when not even SQLite's shared-memory file can be made beside it) and change
    nothing, not even the journal mode."""
    if read_only:
        connection = None
        for flags in ("mode=ro", "immutable=1"):
            try:
                connection = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, timeout=60.0, isolation_level=None, check_same_thread=False)
                connection.execute("PRAGMA user_version").fetchone()
                break
            except sqlite3.OperationalError:
                connection = None
        if connection is None:
            raise PipelineError(f"{path}: cannot be read")
    else:
        connection = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    if not read_only:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=60000")
    connection.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    return connection


def write_error(root: Path, error: sqlite3.OperationalError) -> PipelineError:
    """One line for the write failures a user can act on (read-only folder, full disk)."""
    text = str(error).lower()
    if "readonly" in text or "read-only" in text:
        return PipelineError(f"{root}: the workspace is read-only; nothing was changed")
    if "full" in text:
        return PipelineError(f"{root}: the disk is full; nothing was changed (free some space and try again)")
    return PipelineError(f"{root}: the catalog could not be written ({error}); nothing was changed")
