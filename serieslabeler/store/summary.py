"""What a workspace holds: the numbers behind ``serieslabeler info`` and the app's home page.

The collection's part (images, subjects and their date ranges, attributes, ground truth) changes
only when images are ingested, yet counting it takes seconds at a million images; ingest stores
it (:func:`store_collection_summary`, in the ingest's transaction) and pages read it back. A
workspace made before it was stored gets it computed on first read (and stored when writable).
"""
from __future__ import annotations

import json

from serieslabeler.store.workspace import Workspace

TOP_VALUES = 20
SUMMARY_META = "collection_summary"
TRUTH_VERSION_META = "ground_truth_version"
COLLECTION_VERSION_META = "collection_version"


def summarize(workspace: Workspace) -> dict:
    db = workspace.db
    return {
        "workspace": str(workspace.root),
        **collection_summary(workspace),
        **label_counts(workspace),
        "feature_sets": [
            dict(r)
            for r in db.execute(
                "SELECT fs.name, fs.dim, COALESCE(SUM(sh.n), 0) AS images FROM feature_sets fs "
                "LEFT JOIN feature_shards sh ON sh.feature_set_id = fs.id GROUP BY fs.id ORDER BY fs.name"
            )
        ],
        "samples": db.execute("SELECT COUNT(*) FROM samples").fetchone()[0],
        "clusterings": db.execute("SELECT COUNT(*) FROM clusterings").fetchone()[0],
        "models": db.execute("SELECT COUNT(*) FROM models").fetchone()[0],
    }


def label_counts(workspace: Workspace) -> dict:
    """``labels_by_source`` and ``labels``: the current labels counted per source and per label,
    from the counts the label writer keeps (``label_counts``, see the migration)."""
    by_source: dict[str, int] = {}
    by_label: dict[str, int] = {}
    for label, source, n in workspace.db.execute("SELECT label, source, n FROM label_counts"):
        by_source[source] = by_source.get(source, 0) + n
        by_label[label] = by_label.get(label, 0) + n
    pending = workspace.db.execute("SELECT COUNT(*) FROM current_labels WHERE status='pending'").fetchone()[0]
    return {"labels_by_source": dict(sorted(by_source.items())), "labels": dict(sorted(by_label.items())), "pending": pending}


def collection_summary(workspace: Workspace) -> dict:
    """The stored collection part of :func:`summarize` (computed when none is stored yet)."""
    stored = workspace.get_meta(SUMMARY_META)
    if stored is not None:
        return json.loads(stored)
    if workspace.read_only:
        return count_collection(workspace)
    return store_collection_summary(workspace)


def store_collection_summary(workspace: Workspace) -> dict:
    """Count the collection and store the result (ingest calls this inside its transaction)."""
    summary = count_collection(workspace)
    workspace.set_meta(SUMMARY_META, json.dumps(summary))
    return summary


def _version(workspace: Workspace, key: str) -> int:
    return int(workspace.get_meta(key, "0"))


def _bump_version(workspace: Workspace, key: str) -> None:
    workspace.set_meta(key, str(_version(workspace, key) + 1))


def collection_version(workspace: Workspace) -> int:
    """A number that grows whenever an ingest adds images or changes their subject or time: what
    is kept from the images' rows (:mod:`serieslabeler.store.collection`) is stale once it differs."""
    return _version(workspace, COLLECTION_VERSION_META)


def bump_collection_version(workspace: Workspace) -> None:
    _bump_version(workspace, COLLECTION_VERSION_META)


def ground_truth_version(workspace: Workspace) -> int:
    """A number that grows whenever an ingest changes the ground truth: scores stored against
    the ground truth (a clustering's purity) are stale once it differs from theirs."""
    return _version(workspace, TRUTH_VERSION_META)


def bump_ground_truth_version(workspace: Workspace) -> None:
    _bump_version(workspace, TRUTH_VERSION_META)


def count_collection(workspace: Workspace) -> dict:
    db = workspace.db
    return {
        "images": db.execute("SELECT COUNT(*) FROM images").fetchone()[0],
        "subjects": db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0],
        "date_range": list(db.execute("SELECT MIN(taken_at), MAX(taken_at) FROM images").fetchone()),
        "subjects_detail": subject_ranges(workspace),
        "attributes": attribute_summaries(workspace),
        "ground_truth": dict(
            db.execute("SELECT label, COUNT(*) FROM ground_truth GROUP BY label ORDER BY label").fetchall()
        ),
    }


def subject_ranges(workspace: Workspace) -> list[dict]:
    """Per subject: images, first and last photo, ``days`` (the span from the first photo to the
    last, the one meaning of "days" everywhere) and the number of calendar days with photos."""
    rows = workspace.db.execute(
        "SELECT s.name AS subject, COUNT(*) AS images, MIN(i.taken_at) AS first, MAX(i.taken_at) AS last, "
        "ROUND(julianday(MAX(i.taken_at)) - julianday(MIN(i.taken_at)), 1) AS days, "
        "COUNT(DISTINCT substr(i.taken_at, 1, 10)) AS days_with_photos "
        "FROM images i JOIN subjects s ON s.id = i.subject_id GROUP BY s.id ORDER BY s.name"
    )
    return [dict(r) for r in rows]


def attribute_summaries(workspace: Workspace) -> dict[str, dict]:
    out = {}
    db = workspace.db
    for attribute in db.execute("SELECT id, name, kind FROM attributes ORDER BY name").fetchall():
        summary: dict = {"type": attribute["kind"]}
        if attribute["kind"] == "numeric":
            row = db.execute(
                "SELECT COUNT(value), MIN(CAST(value AS REAL)), MAX(CAST(value AS REAL)), AVG(CAST(value AS REAL)) "
                "FROM image_attributes WHERE attribute_id=?",
                (attribute["id"],),
            ).fetchone()
            summary.update(count=row[0], min=row[1], max=row[2], mean=row[3])
        else:
            values = db.execute(
                "SELECT COALESCE(value, '(empty)'), COUNT(*) AS n FROM image_attributes WHERE attribute_id=? "
                "GROUP BY value ORDER BY n DESC, value LIMIT ?",
                (attribute["id"], TOP_VALUES),
            ).fetchall()
            summary["values"] = dict(values)
        out[attribute["name"]] = summary
    return out


def format_summary(info: dict) -> str:
    lines = [
        f"workspace {info['workspace']}",
        f"  {info['images']} images, {info['subjects']} subjects, "
        f"dates {info['date_range'][0]} .. {info['date_range'][1]}",
    ]
    for subject in info["subjects_detail"][:30]:
        lines.append(
            f"    {subject['subject']}: {subject['images']} images over {subject['days']} days "
            f"({subject['first']} .. {subject['last']})"
        )
    if len(info["subjects_detail"]) > 30:
        lines.append(f"    ... and {len(info['subjects_detail']) - 30} more subjects")
    for name, summary in info["attributes"].items():
        if summary["type"] == "numeric":
            lines.append(f"  attribute {name} (numeric): min {summary['min']}, max {summary['max']}, mean {summary['mean']:.3g}")
        else:
            values = ", ".join(f"{k}={v}" for k, v in summary["values"].items())
            lines.append(f"  attribute {name} (categorical): {values}")
    if info["ground_truth"]:
        lines.append("  ground truth: " + ", ".join(f"{k}={v}" for k, v in info["ground_truth"].items()))
    lines.append("  labels by source: " + (", ".join(f"{k}={v}" for k, v in info["labels_by_source"].items()) or "none yet"))
    for fs in info["feature_sets"]:
        lines.append(f"  features {fs['name']}: {fs['images']} images x {fs['dim']}")
    return "\n".join(lines)
