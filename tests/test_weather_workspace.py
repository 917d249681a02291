"""Degree-days through the workspace: the weather command, the 'add' metadata field, bad tables."""
from __future__ import annotations

import contextlib
import datetime as dt

import numpy as np

from serieslabeler.space import metadata_fields, metadata_frame
from serieslabeler.store import Workspace, get_series
from tests.conftest import cli

# fruit 11's first four photos are on 05-28, 05-29, 05-30 and 06-01; every other day is 10 °C
HAND = {"2020-05-28": 12.0, "2020-05-29": -3.0, "2020-05-30": 8.0, "2020-05-31": 4.0, "2020-06-01": 6.0}


def weather_csv(tmp_path, skip=(), name="weather.csv", last=dt.date(2020, 6, 17)):
    day, rows = dt.date(2020, 5, 28), ["date,mean"]
    while day <= last:
        if day.isoformat() not in skip:
            rows.append(f"{day.isoformat()},{HAND.get(day.isoformat(), 10.0)}")
        day += dt.timedelta(days=1)
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def first_four_add(workspace) -> list[float]:
    ids = list(get_series(workspace, "11").image_ids[:4])
    return metadata_frame(workspace, ids, ["add"])["add"].tolist()


def test_add_from_a_hand_computed_table_is_a_metadata_field(bananas_workspace, tmp_path):
    with Workspace.open(bananas_workspace) as workspace:
        assert "add" not in metadata_fields(workspace)
    code, data = cli("weather", "--workspace", bananas_workspace, "--table", weather_csv(tmp_path))
    assert code == 0 and data["days"] == 21 and data["gaps"] == [], data
    with Workspace.open(bananas_workspace) as workspace:
        assert metadata_fields(workspace)["add"] == "numeric"
        assert first_four_add(workspace) == [12.0, 12.0, 20.0, 30.0]
    assert cli("weather", "--workspace", bananas_workspace, "--table", weather_csv(tmp_path), "--base", "5")[0] == 0
    with Workspace.open(bananas_workspace) as workspace:
        assert first_four_add(workspace) == [7.0, 7.0, 10.0, 11.0]
        frame = metadata_frame(workspace, list(get_series(workspace, "11").image_ids), ["add", "days"])
        assert np.all(np.diff(frame["add"].to_numpy()) >= 0)


def test_a_gap_after_the_last_photo_is_reported_not_filled(bananas_workspace, tmp_path):
    table = weather_csv(tmp_path, skip={"2020-06-19"}, last=dt.date(2020, 6, 21))
    code, data = cli("weather", "--workspace", bananas_workspace, "--table", table)
    assert code == 0 and data["gaps"] == [{"key": "", "first": "2020-06-19", "last": "2020-06-19"}], data
    with Workspace.open(bananas_workspace) as workspace:
        assert workspace.db.execute("SELECT COUNT(*) FROM weather WHERE day='2020-06-19'").fetchone()[0] == 0


def test_bad_weather_tables_are_refused_by_name_and_nothing_is_stored(bananas_workspace, tmp_path):
    gap = weather_csv(tmp_path, skip={"2020-06-03"}, name="gap.csv")
    code, data = cli("weather", "--workspace", bananas_workspace, "--table", gap)
    assert code == 2 and "no temperature for 2020-06-03" in data["error"] and "not filled" in data["error"], data
    bad = tmp_path / "bad.csv"
    bad.write_text("date,mean\n2020-05-28,twelve\n", encoding="utf-8")
    code, data = cli("weather", "--workspace", bananas_workspace, "--table", bad)
    assert code == 2 and "bad.csv" in data["error"] and "line 2" in data["error"], data
    code, data = cli("weather", "--workspace", bananas_workspace, "--table", weather_csv(tmp_path), "--key", "site")
    assert code == 2 and "site" in data["error"], data
    with Workspace.open(bananas_workspace) as workspace:
        assert "add" not in metadata_fields(workspace)
        assert workspace.db.execute("SELECT COUNT(*) FROM weather").fetchone()[0] == 0


def test_cluster_with_degree_days_weight(bananas_embedded, tmp_path):
    assert cli("weather", "--workspace", bananas_embedded, "--table", weather_csv(tmp_path))[0] == 0
    code, data = cli("cluster", "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--metadata", "add=0.3",
                     "--algorithm", "kmeans", "--k", "4")
    assert code == 0, data


def test_time_stratified_sampling_in_degree_day_bins(bananas_workspace, tmp_path):
    code, data = cli("sample", "--workspace", bananas_workspace, "--strategy", "time-stratified", "--size", "20", "--time", "add")
    assert code == 2 and "no weather table" in data["error"], data
    assert cli("weather", "--workspace", bananas_workspace, "--table", weather_csv(tmp_path))[0] == 0
    code, data = cli("sample", "--workspace", bananas_workspace, "--strategy", "time-stratified", "--size", "20", "--time", "add",
                     "--bins", "4")
    assert code == 0 and data["size"] == 20 and data["params"]["time"] == "add", data


@contextlib.contextmanager
def collection_page(workspace, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT, served_on

    monkeypatch.setenv("LABELER_ROOT", str(workspace.parent))
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    app = AppTest.from_file(str(ROOT / "dashboard" / "app_pages" / "collection.py"), default_timeout=120)
    app.query_params["ws"] = str(workspace)
    with served_on("127.0.0.1"):
        yield app.run()


def upload_weather(app, path) -> None:
    app.file_uploader(key="weather_csv").set_value((path.name, path.read_bytes(), "text/csv")).run()
    app.button(key="weather_import").click().run()


def test_the_collection_page_imports_a_weather_table(bananas_workspace, tmp_path, monkeypatch):
    with collection_page(bananas_workspace, monkeypatch) as app:
        upload_weather(app, weather_csv(tmp_path))
        assert not app.exception and not app.error, [e.value for e in app.error]
        assert "21 days of weather for 1 site(s)" in app.success[0].value
    with Workspace.open(bananas_workspace) as workspace:
        assert first_four_add(workspace) == [12.0, 12.0, 20.0, 30.0]
    assert not any((bananas_workspace.parent / ".uploads").glob("*/*.csv")), "the upload is removed once imported"


def test_the_collection_page_refuses_a_table_with_a_gap_and_stores_nothing(bananas_workspace, tmp_path, monkeypatch):
    with collection_page(bananas_workspace, monkeypatch) as app:
        upload_weather(app, weather_csv(tmp_path, skip={"2020-05-30"}))
        assert not app.exception
        assert "2020-05-30" in app.error[0].value
    with Workspace.open(bananas_workspace) as workspace:
        assert "add" not in metadata_fields(workspace)
