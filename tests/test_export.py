"""Export of labels made on the real bananas clustering: CSV and JSON round trips, ImageFolder trees."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter

import pytest
from conftest import cli

from serieslabeler import labels
from serieslabeler.errors import PipelineError
from serieslabeler.export import (
    EXPORT_COLUMNS,
    export_labels,
    export_rows,
    export_summary,
    folder_names,
    neutralise_formula,
    safe_row,
    table_csv,
)
from serieslabeler.store import Workspace


@pytest.fixture
def labeled(bananas_clustered):
    """Cluster 0 labeled 'Full Body' (iteration 2, 2 excluded), 3 images 'Hand' by hand, and
    pending pseudo-labels on 4 images of cluster 1."""
    with Workspace.open(bananas_clustered) as ws:
        cluster_0 = labels.cluster_members(ws, 1, 0)[0].tolist()
        cluster_1 = labels.cluster_members(ws, 1, 1)[0].tolist()
        labels.label_cluster(ws, 1, 0, "Full Body", excluded=cluster_0[:2], iteration=2)
        labels.label_images(ws, cluster_0[:1] + cluster_1[:2], "Hand", iteration=3)
        labels.add_pseudo_labels(ws, cluster_1[2:6], ["Hand", "Head/Neck", "Head/Neck", "Hand"], [0.9, 0.8, 0.7, 0.6], model_id=1)
        yield ws


def expected_rows(ws: Workspace, include_pending: bool) -> list[dict]:
    """The rows an export must hold, read straight from the catalog tables."""
    out = []
    for row in labels.current_labels(ws, include_pending).itertuples():
        image = ws.db.execute(
            "SELECT i.file_name, s.name, i.taken_at FROM images i JOIN subjects s ON s.id = i.subject_id WHERE i.id=?",
            (int(row.image_id),),
        ).fetchone()
        iteration = ws.db.execute("SELECT iteration FROM label_events WHERE id=?", (int(row.event_id),)).fetchone()[0]
        out.append({
            "image_id": int(row.image_id), "file_name": image[0], "subject": image[1], "date": image[2],
            "label": row.label, "source": row.source, "confidence": row.confidence, "status": row.status,
            "iteration": 1 if iteration is None else iteration,  # no model yet: the first iteration
        })
    return out


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {**r, "image_id": int(r["image_id"]), "confidence": float(r["confidence"]), "iteration": int(r["iteration"]) if r["iteration"] else None}
        for r in rows
    ]


@pytest.mark.parametrize("include_pending", [False, True])
def test_the_summary_and_preview_count_what_the_export_holds(labeled, include_pending):
    expected = expected_rows(labeled, include_pending)
    summary = export_summary(labeled, include_pending)
    counts = Counter((r["label"], r["source"]) for r in expected)
    assert summary.by_label_source == [(label, source, n) for (label, source), n in sorted(counts.items())]
    assert summary.images == len(expected) and summary.labels == len({r["label"] for r in expected})
    assert summary.subjects == len({r["subject"] for r in expected})
    assert export_rows(labeled, include_pending, limit=3) == expected[:3]


@pytest.mark.parametrize("include_pending", [False, True])
def test_csv_and_json_round_trip(labeled, tmp_path, include_pending):
    expected = expected_rows(labeled, include_pending)
    assert len(expected) == (len(labels.cluster_members(labeled, 1, 0)[0]) - 1 + 2) + (4 if include_pending else 0)

    report = export_labels(labeled, "csv", tmp_path / "labels.csv", include_pending=include_pending)
    rows = read_csv(tmp_path / "labels.csv")
    assert rows == expected and report.rows == len(expected)
    with open(tmp_path / "labels.csv", encoding="utf-8") as handle:
        assert handle.readline().strip() == ",".join(EXPORT_COLUMNS)

    export_labels(labeled, "json", tmp_path / "labels.json", include_pending=include_pending)
    data = json.loads((tmp_path / "labels.json").read_text(encoding="utf-8"))
    assert data["labels"] == expected and data["include_pending"] is include_pending

    by_id = {r["image_id"]: r for r in rows}
    cluster_0 = labels.cluster_members(labeled, 1, 0)[0].tolist()
    assert by_id[cluster_0[0]]["label"] == "Hand" and by_id[cluster_0[0]]["iteration"] == 3
    assert cluster_0[1] not in by_id  # excluded and never labeled
    assert {by_id[i]["iteration"] for i in cluster_0[2:]} == {2}
    assert {r["status"] for r in rows} == ({"accepted", "pending"} if include_pending else {"accepted"})


def test_iteration_follows_the_labels_origin_through_rename(labeled, tmp_path):
    labels.rename_label(labeled, "Full Body", "Whole body")
    export_labels(labeled, "csv", tmp_path / "labels.csv")
    renamed = [r for r in read_csv(tmp_path / "labels.csv") if r["label"] == "Whole body"]
    assert renamed and {r["iteration"] for r in renamed} == {2}


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
def test_imagefolder_tree(labeled, tmp_path, link):
    out = tmp_path / "tree"
    report = export_labels(labeled, "imagefolder", out, include_pending=True, link=link)
    folders = {p.name: sorted(f.name for f in p.iterdir()) for p in out.iterdir() if p.is_dir()}
    assert {name: len(files) for name, files in folders.items()} == {"Full_Body": report.labels["Full Body"], "Hand": 5, "Head_Neck": 2}
    assert sum(report.labels.values()) == report.rows == sum(len(f) for f in folders.values())

    manifest = {int(r["image_id"]): r for r in csv.DictReader(open(out / "labels.csv", encoding="utf-8"))}
    assert len(manifest) == report.rows
    for image_id, row in manifest.items():
        path = out / row["path"]
        sha = labeled.db.execute("SELECT sha256 FROM images WHERE id=?", (image_id,)).fetchone()[0]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
        assert path.name == row["file_name"]
        assert path.is_symlink() == (link == "symlink")
        if link == "hardlink":
            assert os.path.samefile(path, labeled.image_path(image_id))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]

    with pytest.raises(PipelineError, match="not an empty folder"):
        export_labels(labeled, "imagefolder", out)


def test_folder_names_are_safe_and_distinct():
    names = folder_names(["Full Body", "a/b", "a?b", "..", "CON", "Fuß", " .hidden"])
    assert names == {"Full Body": "Full_Body", "a/b": "a_b", "a?b": "a_b-2", "..": "label", "CON": "CON_", "Fuß": "Fuß", " .hidden": "hidden"}


def test_cli_export(labeled, tmp_path):
    workspace = labeled.root
    code, data = cli("export", "--workspace", workspace, "--format", "json", "--out", tmp_path / "out.json")
    assert code == 0 and data["rows"] == len(expected_rows(labeled, False))
    code, data = cli("export", "--workspace", workspace, "--format", "imagefolder", "--out", tmp_path / "tree", "--include-pending")
    assert code == 0 and data["labels"]["Head/Neck"] == 2
    code, data = cli("export", "--workspace", workspace, "--format", "imagefolder", "--out", tmp_path / "tree")
    assert code == 2 and "not an empty folder" in data["error"]


@pytest.mark.parametrize("format", ["csv", "json", "imagefolder"])
def test_an_export_into_a_workspace_folder_is_refused_and_its_catalog_kept(labeled, format):
    workspace = labeled.root
    catalog = workspace / "catalog.sqlite"
    before = catalog.read_bytes()
    for target in (catalog, workspace / "exports" / f"labels.{format}", workspace):
        code, data = cli("export", "--workspace", workspace, "--format", format, "--out", target)
        assert code == 2 and "inside the workspace folder" in data["error"], target
    assert catalog.read_bytes() == before and not (workspace / "exports").exists()
    assert labeled.db.execute("SELECT COUNT(*) FROM images").fetchone()[0] > 0


# --- CSV cells a spreadsheet cannot run as formulas (moved from test_export_safety.py) -----------

@pytest.mark.parametrize(
    "cell",
    ["=1+1", "=HYPERLINK(\"http://evil\",\"click\")", "+41 22 000", "-2+3", "@SUM(A1:A2)", "\tcmd", "\rcmd", "=", "-"],
)
def test_formula_starts_are_prefixed_with_a_quote(cell):
    assert neutralise_formula(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["cat", "", "1=1", " =1", "'=already", "a-b", "2024-01-01", "é=", "\n=1"])
def test_other_strings_are_unchanged(cell):
    assert neutralise_formula(cell) == cell


@pytest.mark.parametrize("value", [-3, -2.5, 0, None, True, b"=bytes"])
def test_non_strings_are_unchanged(value):
    assert neutralise_formula(value) is value


def test_safe_row_neutralises_every_string_cell_and_keeps_keys():
    row = {"file": "=cmd|' /C calc'!A0", "score": -0.5, "label": "cat", "=key": "@x", "note": None}
    assert safe_row(row) == {"file": "'=cmd|' /C calc'!A0", "score": -0.5, "label": "cat", "=key": "'@x", "note": None}
    assert row["file"] == "=cmd|' /C calc'!A0"  # the caller's row is not modified


def test_csv_output_of_a_safe_row_starts_cells_with_a_quote():
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["file", "score"])
    writer.writerow(safe_row({"file": "=1+1", "score": -1}))
    assert out.getvalue() == "'=1+1,-1\r\n"


def test_the_table_neutralises_formula_cells_and_headers():
    text = table_csv([{"=head": "=cmd|' /C calc'!A0", "n": -1}], ["=head", "n"])
    assert text.splitlines() == ["'=head,n", "'=cmd|' /C calc'!A0,-1"]
