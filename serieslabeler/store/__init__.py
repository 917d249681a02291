"""The on-disk workspace: SQLite catalog and its migrations, the feature store, read-only queries."""

from .features import DTYPES, SAFE_NAME, FeatureSet, FeatureStore
from .migrations import (
    INITIAL_SCHEMA,
    MIGRATIONS,
    PER_IMAGE_LOOKUPS,
    SCHEMA_VERSION,
    Migration,
    apply_migrations,
    check_version,
    schema_version,
)
from .queries import (
    IMAGE_COLUMNS,
    has_ground_truth,
    image_table,
    images_per_subject_day,
    interactions_until,
    sample_ids,
    session_ids,
    subject_names,
)
from .summary import (
    TOP_VALUES,
    attribute_summaries,
    format_summary,
    subject_ranges,
    summarize,
)
from .workspace import (
    CATALOG,
    Workspace,
    atomic_path,
    sha256_hex,
    write_atomic,
    write_error,
)

__all__ = [
    "DTYPES",
    "SAFE_NAME",
    "FeatureSet",
    "FeatureStore",
    "Migration",
    "INITIAL_SCHEMA",
    "PER_IMAGE_LOOKUPS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "schema_version",
    "check_version",
    "apply_migrations",
    "IMAGE_COLUMNS",
    "image_table",
    "subject_names",
    "images_per_subject_day",
    "interactions_until",
    "session_ids",
    "has_ground_truth",
    "sample_ids",
    "TOP_VALUES",
    "summarize",
    "subject_ranges",
    "attribute_summaries",
    "format_summary",
    "CATALOG",
    "sha256_hex",
    "write_atomic",
    "atomic_path",
    "Workspace",
    "write_error",
]
