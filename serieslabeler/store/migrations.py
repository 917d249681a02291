"""The catalog's schema as numbered migrations, applied only while ``PRAGMA user_version`` is behind.

Migration *n* takes a catalog from version *n - 1* to *n*; a new catalog runs them all. Opening
a catalog that is already current writes nothing, so read-only commands work on a read-only
folder. A migration is never edited once released: a change is a new migration appended here.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from serieslabeler.errors import PipelineError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    script: str

    def statements(self) -> list[str]:
        """The script's statements (no statement here holds a semicolon inside a literal)."""
        lines = [line for line in self.script.splitlines() if not line.strip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# The states a row of the log keeps: the one its event gave the image and the one before.
LOGGED_STATES = """    label TEXT,
    source TEXT,
    confidence REAL,
    status TEXT,
    prev_label TEXT,
    prev_source TEXT,
    prev_confidence REAL,
    prev_status TEXT,
    prev_event_id INTEGER,
"""

INITIAL_SCHEMA = """
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
""" + LOGGED_STATES + """    PRIMARY KEY (event_id, image_id)
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

# Lookups by image (the app shows 200 images out of a million), undo by author, and the
# 'series' label source (a series labeled by its stage transitions) in the CHECK constraint,
# which SQLite can only change by rebuilding the table.
PER_IMAGE_LOOKUPS = """
CREATE INDEX IF NOT EXISTS cluster_members_image ON cluster_members(image_id);
CREATE INDEX IF NOT EXISTS predictions_image ON predictions(image_id);
CREATE INDEX IF NOT EXISTS label_events_author ON label_events(author, id);
CREATE TABLE current_labels_v2 (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('manual', 'cluster', 'pseudo', 'import', 'series')),
    confidence REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'accepted' CHECK (status IN ('accepted', 'pending')),
    event_id INTEGER NOT NULL REFERENCES label_events(id)
);
INSERT INTO current_labels_v2(image_id, label, source, confidence, status, event_id)
    SELECT image_id, label, source, confidence, status, event_id FROM current_labels;
DROP TABLE current_labels;
ALTER TABLE current_labels_v2 RENAME TO current_labels;
CREATE INDEX current_labels_label ON current_labels(label);
"""

# A daily weather table (one mean temperature per key and day) for accumulated degree-days;
# its settings (the attribute that names an image's key, the base temperature) live in meta.
WEATHER_TABLE = """
CREATE TABLE IF NOT EXISTS weather (
    key TEXT NOT NULL,
    day TEXT NOT NULL,
    mean REAL NOT NULL,
    PRIMARY KEY (key, day)
) WITHOUT ROWID;
"""

# Work done once and stored with what it belongs to: a clustering's image count, cluster sizes
# and evaluation (silhouette) are written when it is saved, so listing clusterings counts no
# members; a model's evaluations (held-out scores, JSON) are written when it is trained (its
# out-of-fold probabilities go to an .npz beside its file). ``evaluation`` NULL: not computed yet.
STORED_EVALUATIONS = """
ALTER TABLE clusterings ADD COLUMN images INTEGER;
ALTER TABLE clusterings ADD COLUMN sizes TEXT;
ALTER TABLE clusterings ADD COLUMN evaluation TEXT;
UPDATE clusterings SET
    images = (SELECT COUNT(*) FROM cluster_members m WHERE m.clustering_id = clusterings.id),
    sizes = (SELECT json_group_object(cluster, n) FROM
             (SELECT cluster, COUNT(*) AS n FROM cluster_members m WHERE m.clustering_id = clusterings.id GROUP BY cluster));
CREATE TABLE model_evaluations (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, name)
) WITHOUT ROWID;
"""

# Audits of routed pseudo-labels (issue 17): a seeded, class-stratified random sample of the
# pending pseudo-labels with what each predicted, and the expert's answer once given.
AUDITS = """
CREATE TABLE IF NOT EXISTS audits (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    author TEXT NOT NULL,
    model_id INTEGER REFERENCES models(id),
    size INTEGER NOT NULL,
    seed INTEGER,
    population TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS audit_items (
    audit_id INTEGER NOT NULL REFERENCES audits(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    predicted TEXT NOT NULL,
    confidence REAL NOT NULL,
    answer TEXT,
    event_id INTEGER REFERENCES label_events(id),
    PRIMARY KEY (audit_id, image_id)
) WITHOUT ROWID;
"""

# Cluster status at any size: per cluster of a clustering and label, how many members carry that
# accepted label. The one writer of current_labels (labels.log._record) moves these counts in the
# same transaction as every label change (from the event's per-image rows); a new clustering's
# counts are written when it is saved (clustering.runs.save_clustering). Rows whose count fell to
# 0 stay (readers skip them). Indexes: label events by cluster (a cluster's state, the latest
# event on it) and by session (its counters), the pending pseudo-labels (the Train page's
# review), the ground truth by label (the stages a sample covers, against the collection's).
# Run again (a catalog set back to an older version), it counts everything afresh.
CLUSTER_LABEL_COUNTS = """
DROP TABLE IF EXISTS cluster_label_counts;
CREATE TABLE cluster_label_counts (
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id) ON DELETE CASCADE,
    cluster INTEGER NOT NULL,
    label TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (clustering_id, cluster, label)
) WITHOUT ROWID;
INSERT INTO cluster_label_counts(clustering_id, cluster, label, n)
    SELECT m.clustering_id, m.cluster, c.label, COUNT(*) FROM cluster_members m
    JOIN current_labels c ON c.image_id = m.image_id AND c.status = 'accepted'
    GROUP BY m.clustering_id, m.cluster, c.label;
CREATE INDEX IF NOT EXISTS label_events_cluster ON label_events(clustering_id, cluster, id);
CREATE INDEX IF NOT EXISTS current_labels_pending ON current_labels(image_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS label_events_session ON label_events(session_id);
CREATE INDEX IF NOT EXISTS ground_truth_label ON ground_truth(label);
"""

# Covering indexes for a cluster's members (ids ascending with their distances: a range read,
# not the clustering's whole key range or one table lookup per member) and for the clusters of an
# image (which the label writer joins every changed image with to move the counts above).
COVERING_MEMBER_INDEXES = """
DROP INDEX IF EXISTS cluster_members_cluster;
CREATE INDEX cluster_members_cluster ON cluster_members(clustering_id, cluster, image_id, distance);
DROP INDEX IF EXISTS cluster_members_image;
CREATE INDEX cluster_members_image ON cluster_members(image_id, cluster);
"""

# What a label event did, kept on its row: ``labeled``, the images it gave a label (a session's
# throughput adds these up over its live events instead of counting its images in the log).
# The log's index by image goes: nothing reads the log by image any more (a stale page is found
# from the events after the one it showed, by their key range), and each label click wrote
# one random page of it per image.
EVENT_COUNTS = """
ALTER TABLE label_events ADD COLUMN labeled INTEGER NOT NULL DEFAULT 0;
UPDATE label_events SET labeled = (
    SELECT COUNT(*) FROM label_event_images i WHERE i.event_id = label_events.id AND i.label IS NOT NULL
);
DROP INDEX IF EXISTS label_event_images_image;
"""

# The log's per-image rows without their own check that the image exists: each one is written
# with the image's current label in the same transaction, and ``current_labels`` holds that
# check (a label for an unknown image still fails, and rolls the whole event back). Checking it
# twice cost a random lookup in ``images`` per image: 0.03 s of a 5,000-image click at 1M.
LOG_WITHOUT_IMAGE_CHECK = """
CREATE TABLE label_event_images_v9 (
    event_id INTEGER NOT NULL REFERENCES label_events(id),
    image_id INTEGER NOT NULL,
""" + LOGGED_STATES + """    PRIMARY KEY (event_id, image_id)
) WITHOUT ROWID;
INSERT INTO label_event_images_v9 SELECT event_id, image_id, label, source, confidence, status,
    prev_label, prev_source, prev_confidence, prev_status, prev_event_id FROM label_event_images;
DROP TABLE label_event_images;
ALTER TABLE label_event_images_v9 RENAME TO label_event_images;
"""

# What a model predicts per cluster: members predicted each label and their summed confidence,
# stored when a model's predictions or a clustering are saved, so the Label page's suggestion
# reads a few rows instead of a prediction per member (a random lookup each, 5,000 per cluster
# at 1M). Filled here for the latest predicting model.
CLUSTER_PREDICTIONS = """
CREATE TABLE cluster_predictions (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id) ON DELETE CASCADE,
    cluster INTEGER NOT NULL,
    label TEXT NOT NULL,
    n INTEGER NOT NULL,
    confidence_sum REAL NOT NULL,
    PRIMARY KEY (model_id, clustering_id, cluster, label)
) WITHOUT ROWID;
INSERT INTO cluster_predictions(model_id, clustering_id, cluster, label, n, confidence_sum)
    SELECT p.model_id, m.clustering_id, m.cluster, p.label, COUNT(*), SUM(p.confidence)
    FROM predictions p JOIN cluster_members m ON m.image_id = p.image_id
    WHERE p.model_id = (SELECT MAX(model_id) FROM predictions)
    GROUP BY p.model_id, m.clustering_id, m.cluster, p.label;
"""

# The current labels counted per label and source, moved by the one label writer in the same
# transaction (a workspace's summary, on the Home and Collection pages, read the whole table for
# them: 0.2 s at 1M), and no index of current labels by label any more: a cluster label changing
# 5,000 images' label moved 10,000 entries of it, a random page each (a fifth of a click at 1M).
LABEL_COUNTS = """
CREATE TABLE label_counts (
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (label, source)
) WITHOUT ROWID;
INSERT INTO label_counts(label, source, n) SELECT label, source, COUNT(*) FROM current_labels GROUP BY label, source;
DROP INDEX IF EXISTS current_labels_label;
"""

MIGRATIONS = (
    Migration(1, "initial catalog", INITIAL_SCHEMA),
    Migration(2, "per-image lookups, undo by author, series labels", PER_IMAGE_LOOKUPS),
    Migration(3, "daily weather for accumulated degree-days", WEATHER_TABLE),
    Migration(4, "stored clustering sizes and evaluations, model evaluations", STORED_EVALUATIONS),
    Migration(5, "audits of routed pseudo-labels", AUDITS),
    Migration(6, "label counts per cluster; lookups of label events by cluster and session, pending labels, ground truth by label", CLUSTER_LABEL_COUNTS),
    Migration(7, "covering indexes for a cluster's members and an image's clusters", COVERING_MEMBER_INDEXES),
    Migration(8, "images labeled per label event; no index of the log by image", EVENT_COUNTS),
    Migration(9, "the log's per-image rows leave the image check to current_labels", LOG_WITHOUT_IMAGE_CHECK),
    Migration(10, "what a model predicts per cluster", CLUSTER_PREDICTIONS),
    Migration(11, "current labels counted per label and source, not indexed by label", LABEL_COUNTS),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def check_version(db: sqlite3.Connection, root: Path) -> None:
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        raise PipelineError(
            f"{root}: workspace schema version {version} is newer than this tool's ({SCHEMA_VERSION}); update the tool"
        )


def apply_migrations(db: sqlite3.Connection, root: Path, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the migrations after the catalog's version, up to ``target``, inside the caller's
    write transaction (the version is read again there: another process may have just done it)."""
    check_version(db, root)
    version = schema_version(db)
    applied = []
    for migration in MIGRATIONS:
        if version < migration.version <= target:
            for statement in migration.statements():
                db.execute(statement)
            db.execute(f"PRAGMA user_version={migration.version}")
            applied.append(migration.version)
    return applied
