"""Ingest on the real bananas collection, and every kind of bad input."""
from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, cli, ingest_bananas
from PIL import Image

from serieslabeler.store import Workspace


def snapshot(workspace: Path) -> tuple[list[str], list[str]]:
    """Everything a workspace holds: every catalog row and every stored file."""
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        rows = list(db.iterdump())
    files = sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*") if p.is_file() and "catalog.sqlite" not in p.name)
    return rows, files


def test_bananas_counts(bananas_workspace_template):
    code, info = cli("info", "--workspace", bananas_workspace_template)
    assert code == 0
    assert info["images"] == 220
    assert info["subjects"] == 11
    assert all(s["images"] == 20 and s["days_with_photos"] == 20 and s["days"] == 20.0 for s in info["subjects_detail"])
    assert info["date_range"][0].startswith("2020-05-28") and info["date_range"][1].startswith("2020-06-17")
    assert info["attributes"]["group"] == {"type": "categorical", "values": {"B": 120, "F": 100}}
    assert info["attributes"]["day"]["type"] == "numeric"
    assert info["attributes"]["hour"]["type"] == "numeric"
    assert info["ground_truth"] == {"O": 95, "R": 55, "U": 18, "V": 52}
    assert info["labels_by_source"] == {}, "ground truth must not become tool labels"


def test_images_and_thumbnails_are_stored_content_addressed(bananas_workspace_template):
    workspace = Workspace.open(bananas_workspace_template)
    rows = workspace.db.execute("SELECT id, sha256, ext FROM images").fetchall()
    assert len(rows) == 220
    for row in rows[:20]:
        stored = workspace.stored_image_path(row["sha256"], row["ext"])
        import hashlib

        assert hashlib.sha256(stored.read_bytes()).hexdigest() == row["sha256"]
        with Image.open(workspace.thumbnail_path(row["sha256"])) as thumb:
            assert max(thumb.size) <= 256
    assert workspace.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert workspace.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_date_and_time_are_combined_as_iso(bananas_workspace_template):
    workspace = Workspace.open(bananas_workspace_template)
    taken = workspace.db.execute("SELECT taken_at FROM images WHERE file_name='11_F_2020-05-28_18-20_U.jpg'").fetchone()[0]
    assert taken == "2020-05-28T18:20:00"


def test_ingest_twice_adds_nothing(bananas_workspace):
    before = snapshot(bananas_workspace)
    code, report = ingest_bananas(bananas_workspace)
    assert code == 0
    assert (report["added"], report["updated"], report["unchanged"]) == (0, 0, 220)
    assert snapshot(bananas_workspace) == before


def test_changed_metadata_row_updates_that_image(bananas_workspace, bananas, tmp_path):
    rows = list(csv.DictReader(open(bananas / "metadata.csv")))
    rows[0]["group"] = "X"
    rows[1]["ripeness"] = "O"
    metadata = write_csv(tmp_path / "changed.csv", rows)
    code, report = ingest_bananas(bananas_workspace, bananas / "images", metadata)
    assert code == 0, report
    assert (report["added"], report["updated"], report["unchanged"]) == (0, 2, 218)
    workspace = Workspace.open(bananas_workspace)
    group = workspace.db.execute(
        "SELECT ia.value FROM image_attributes ia JOIN images i ON i.id=ia.image_id "
        "JOIN attributes a ON a.id=ia.attribute_id WHERE a.name='group' AND i.file_name=?",
        (rows[0]["file"],),
    ).fetchone()[0]
    assert group == "X"


def test_attribute_type_can_be_overridden(tmp_path, bananas):
    code, report = cli(
        "ingest", "--workspace", tmp_path / "ws", "--images", bananas / "images", "--metadata", bananas / "metadata.csv",
        "--subject", "fruit", "--date", "date", "--attributes", "day:categorical,hour", "--file", "file",
    )
    assert code == 0, report
    assert report["attributes"] == {"day": "categorical", "hour": "numeric"}


def test_file_column_is_found_when_not_named(tmp_path, bananas):
    code, report = cli(
        "ingest", "--workspace", tmp_path / "ws", "--images", bananas / "images", "--metadata", bananas / "metadata.csv",
        "--subject", "fruit", "--date", "date",
    )
    assert code == 0, report
    assert report["added"] == 220


def test_zip_collection(tmp_path, bananas):
    archive = tmp_path / "bananas.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((bananas / "images").iterdir())[:40]:
            zf.write(path, f"photos/{path.name}")
    rows = list(csv.DictReader(open(bananas / "metadata.csv")))[:40]
    code, report = ingest_bananas(tmp_path / "ws", archive, write_csv(tmp_path / "m.csv", rows))
    assert code == 0, report
    assert report["added"] == 40


def test_day_first_dates_are_understood(tmp_path, bananas):
    rows = list(csv.DictReader(open(bananas / "metadata.csv")))[:20]
    for row in rows:
        y, m, d = row["date"].split("-")
        row["date"] = f"{d}/{m}/{y}"
    files = small_collection(tmp_path, bananas, rows)
    code, report = ingest_bananas(tmp_path / "ws", *files)
    assert code == 0, report
    workspace = Workspace.open(tmp_path / "ws")
    assert workspace.db.execute("SELECT MIN(taken_at) FROM images").fetchone()[0] == "2020-05-28T18:20:00"


def test_cli_exit_code_and_message_in_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "serieslabeler", "info", "--workspace", str(tmp_path / "nothing")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "not a workspace" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_reader_that_stops_early_gets_no_traceback(bananas_workspace):
    """``serieslabeler series ... | head -1``: the pipe closes before the listing is printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "serieslabeler", "series", "--workspace", str(bananas_workspace)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


# --- bad input ------------------------------------------------------------------------------
def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def small_collection(tmp_path: Path, bananas: Path, rows: list[dict]) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for row in rows:
        source = bananas / "images" / row["file"]
        if source.exists():
            shutil.copy(source, images)
    return images, write_csv(tmp_path / "metadata.csv", rows)


@pytest.fixture
def base(tmp_path, bananas):
    """A workspace holding the first 6 banana rows, and the next 6 rows ready to be spoiled."""
    rows = list(csv.DictReader(open(bananas / "metadata.csv")))
    workspace = tmp_path / "ws"
    first = tmp_path / "first"
    first.mkdir()
    code, _ = ingest_bananas(workspace, *small_collection(first, bananas, rows[:6]))
    assert code == 0
    return workspace, rows[6:12]


def assert_rejected(workspace: Path, images: Path, metadata: Path, *expected: str):
    before = snapshot(workspace)
    code, report = ingest_bananas(workspace, images, metadata)
    assert code == 2
    text = report["error"]
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    assert snapshot(workspace) == before, "a rejected ingest changed the workspace"
    return report


def assert_skip_bad_keeps_good(workspace: Path, images: Path, metadata: Path, added: int, listed: str):
    code, report = ingest_bananas(workspace, images, metadata, "--skip-bad")
    assert code == 0, report
    assert report["added"] == added
    assert any(listed in p["where"] or listed in p["message"] for p in report["skipped"]), report["skipped"]


def test_corrupt_image(base, tmp_path, bananas):
    workspace, rows = base
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    victim = images / rows[2]["file"]
    victim.write_bytes(victim.read_bytes()[:300])
    assert_rejected(workspace, images, metadata, rows[2]["file"], "corrupt image")
    assert_skip_bad_keeps_good(workspace, images, metadata, 5, rows[2]["file"])


def test_non_image_file(base, tmp_path, bananas):
    workspace, rows = base
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    (images / rows[0]["file"]).write_text("these are field notes, not a photo")
    assert_rejected(workspace, images, metadata, rows[0]["file"], "not an image")


def test_zip_entry_escaping_the_target(base, tmp_path, bananas):
    workspace, rows = base
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for row in rows:
            zf.write(bananas / "images" / row["file"], row["file"])
        zf.writestr("../../etc/evil.jpg", b"x")
        zf.writestr("/abs/evil.jpg", b"x")
    metadata = write_csv(tmp_path / "m.csv", rows)
    assert_rejected(workspace, archive, metadata, "../../etc/evil.jpg", "/abs/evil.jpg", "escape")
    assert not (tmp_path.parent / "etc").exists()
    assert_skip_bad_keeps_good(workspace, archive, metadata, 6, "evil.jpg")


def test_decompression_bomb(base, tmp_path, bananas):
    workspace, rows = base
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    side = int((Image.MAX_IMAGE_PIXELS * 2) ** 0.5) + 10
    bomb = images / rows[1]["file"]
    Image.new("1", (side, side)).save(bomb.with_suffix(".png"))
    bomb.unlink()
    bomb.with_suffix(".png").rename(bomb)
    assert_rejected(workspace, images, metadata, rows[1]["file"], "decompression bomb")


def test_missing_mapped_column(base, tmp_path, bananas):
    workspace, rows = base
    for row in rows:
        del row["ripeness"]
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    assert_rejected(workspace, images, metadata, "metadata.csv", "no column named 'ripeness'")
    fresh = tmp_path / "fresh-ws"
    assert ingest_bananas(fresh, images, metadata)[0] == 2
    assert not fresh.exists(), "a first ingest that wrote nothing leaves no empty workspace behind"


def test_unparseable_date(base, tmp_path, bananas):
    workspace, rows = base
    rows[3]["date"] = "sometime in June"
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    report = assert_rejected(workspace, images, metadata, "metadata.csv line 5", "sometime in June")
    assert len(report["problems"]) == 1, "the row's image is not also reported as an image without a row"
    assert_skip_bad_keeps_good(workspace, images, metadata, 5, "line 5")


def test_ambiguous_dates_ask_for_an_order(base, tmp_path, bananas):
    workspace, rows = base
    for row in rows:
        row["date"] = "05/06/2020"
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    assert_rejected(workspace, images, metadata, "ambiguous", "--date-order")


def test_row_whose_file_is_missing(base, tmp_path, bananas):
    workspace, rows = base
    rows[4]["file"] = "no_such_photo.jpg"
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    assert_rejected(workspace, images, metadata, "line 6", "no_such_photo.jpg", "not among the images")


def test_image_without_a_row(base, tmp_path, bananas):
    workspace, rows = base
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    orphan = list(csv.DictReader(open(bananas / "metadata.csv")))[50]["file"]
    shutil.copy(bananas / "images" / orphan, images)
    assert_rejected(workspace, images, metadata, orphan, "no row in the metadata CSV")


def test_duplicate_rows_for_one_file(base, tmp_path, bananas):
    workspace, rows = base
    rows.append(dict(rows[0], group="B"))
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    assert_rejected(workspace, images, metadata, rows[0]["file"], "has 2 rows", "lines 2, 8")


def test_empty_csv(base, tmp_path, bananas):
    workspace, rows = base
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    metadata.write_text("")
    assert_rejected(workspace, images, metadata, "metadata.csv", "empty")


def test_non_utf8_csv(base, tmp_path, bananas):
    workspace, rows = base
    rows[2]["group"] = "Kühlschrank"
    (tmp_path / "new").mkdir()
    images = small_collection(tmp_path / "new", bananas, rows)[0]
    metadata = write_csv(tmp_path / "latin1.csv", rows, encoding="latin-1")
    assert_rejected(workspace, images, metadata, "latin1.csv line 4", "not UTF-8")


def test_labels_saved_before_survive_a_rejected_ingest(base, tmp_path, bananas):
    workspace, rows = base
    ws = Workspace.open(workspace)
    with ws.transaction() as db:
        event = db.execute("INSERT INTO label_events(author, action, label, source) VALUES ('t','label_images','U','manual')").lastrowid
        db.execute("INSERT INTO current_labels(image_id, label, source, confidence, event_id) VALUES (1,'U','manual',1.0,?)", (event,))
    ws.close()
    rows[0]["date"] = "not a date"
    (tmp_path / "new").mkdir()
    images, metadata = small_collection(tmp_path / "new", bananas, rows)
    assert_rejected(workspace, images, metadata, "not a date")
    ws = Workspace.open(workspace)
    assert ws.db.execute("SELECT label FROM current_labels WHERE image_id=1").fetchone()[0] == "U"


def test_plan_reports_rows_and_files_before_decoding_anything(tmp_path, bananas):
    """The preview phase names a row without its file and a file without its row, writing nothing."""
    from serieslabeler.ingest import ColumnMapping, plan_ingest

    rows = list(csv.DictReader(open(bananas / "metadata.csv")))[:6]
    images, metadata = small_collection(tmp_path, bananas, rows)
    orphan = list(csv.DictReader(open(bananas / "metadata.csv")))[50]["file"]
    shutil.copy(bananas / "images" / orphan, images)
    (images / rows[1]["file"]).unlink()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    plan = plan_ingest(images, metadata, ColumnMapping(subject="fruit", date="date", time="time"))
    assert plan.file_column == "file" and plan.files == 6
    assert len(plan.rows) == 6 and len(plan.pairs) == 5
    wheres = {p.where: p.message for p in plan.problems}
    assert wheres == {"line 3": f"file '{rows[1]['file']}' is not among the images", orphan: "image has no row in the metadata CSV"}
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
